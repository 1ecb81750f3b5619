package pod

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sublet-dev/sublet/internal/isolation"
	"github.com/sublet-dev/sublet/internal/translate"
)

// RestrictScheduling limits where host pod spec s may run to what the
// admin allows: tolerations only of node condition taints and of keys in
// isolation.pods.allowedTolerations (a toleration of every taint would put
// tenant pods on the host's control plane or dedicated nodes), and the
// admin's isolation.pods.nodeSelector over the tenant's own. It returns
// what it left out or replaced, for the tenant to be told.
func RestrictScheduling(p isolation.PodPolicy, s *corev1.PodSpec) (told []string) {
	var kept []corev1.Toleration
	var dropped []string
	for _, tol := range s.Tolerations {
		if isolation.TolerationAllowed(tol.Key, p.AllowedTolerations) {
			kept = append(kept, tol)
			continue
		}
		what := tol.Key
		if what == "" {
			what = "every taint (an empty key)"
		}
		dropped = append(dropped, what)
	}
	s.Tolerations = kept
	if len(dropped) > 0 {
		sort.Strings(dropped)
		told = append(told, fmt.Sprintf("tolerations of %s (only node condition taints; an admin may allow keys with isolation.pods.allowedTolerations)", strings.Join(dropped, ", ")))
	}
	if len(p.NodeSelector) == 0 {
		return told
	}
	if s.NodeSelector == nil {
		s.NodeSelector = map[string]string{}
	}
	var replaced []string
	for k, v := range p.NodeSelector {
		if own, set := s.NodeSelector[k]; set && own != v {
			replaced = append(replaced, k+"="+own)
		}
		s.NodeSelector[k] = v
	}
	if len(replaced) > 0 {
		sort.Strings(replaced)
		told = append(told, fmt.Sprintf("nodeSelector %s (the admin's isolation.pods.nodeSelector decides these keys)", strings.Join(replaced, ", ")))
	}
	return told
}

// ClaimTemplate translates the claim template of an ephemeral
// volume exactly as a PersistentVolumeClaim of the tenant is translated
// (translate.Translator.HostPVC): no host PV by name or selector, data sources only the
// tenant's own claims, labels under the translated keys (no forged
// ownership), host-affecting annotations dropped. The host's ephemeral
// volume controller makes the claim, owned by the host pod, so it carries
// no owner annotations of a virtual object.
func ClaimTemplate(t translate.Translator, vNamespace, volume string, tmpl *corev1.PersistentVolumeClaimTemplate) {
	claim := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: volume, Namespace: vNamespace, Labels: tmpl.Labels, Annotations: tmpl.Annotations},
		Spec:       tmpl.Spec,
	}
	h := t.HostPVC(claim)
	for k := range translate.OwnerAnnotations(claim) {
		delete(h.Annotations, k)
	}
	tmpl.ObjectMeta = metav1.ObjectMeta{Labels: h.Labels, Annotations: h.Annotations}
	tmpl.Spec = h.Spec
}
