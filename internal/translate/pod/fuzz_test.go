package pod

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sublet-dev/sublet/internal/translate"
)

// FuzzHostPod: whatever names, labels and volume names a virtual pod has
// (within what the API server accepts), its host pod has valid names and
// labels, names the host copies of what it uses, is the same every time,
// and leaves the virtual pod as it was.
func FuzzHostPod(f *testing.F) {
	f.Add("demo", "default", "web-1", "app", "web", "config", "settings", "db", "data")
	f.Add("team-a", "kube-system", "coredns-5d78c9869d-abcde", "k8s-app", "kube-dns", "config-volume", "coredns", "coredns-token", "x")
	f.Add("a-x", "x-b", "c.d-x-e", "example.com/tier", "", "kube-api-access-abcde", "kube-root-ca.crt", "a-x-b", "b.c")
	f.Add(strings.Repeat("v", 40), strings.Repeat("n", 63), strings.Repeat("p.", 126)+"p", strings.Repeat("k", 253)+"/"+strings.Repeat("k", 63),
		strings.Repeat("l", 63), strings.Repeat("o", 63), strings.Repeat("c", 253), strings.Repeat("s", 253), strings.Repeat("d", 253))
	f.Fuzz(func(t *testing.T, vcluster, ns, name, labelKey, labelValue, volume, configMap, secret, claim string) {
		// Realistic inputs: what the virtual API server accepts, and a
		// virtual cluster name translate.ValidateVClusterName allows.
		for _, bad := range [][]string{
			translate.ValidateVClusterName(vcluster), validation.IsDNS1123Label(ns), validation.IsDNS1123Subdomain(name),
			validation.IsQualifiedName(labelKey), validation.IsValidLabelValue(labelValue), validation.IsDNS1123Label(volume),
			validation.IsDNS1123Subdomain(configMap), validation.IsDNS1123Subdomain(secret), validation.IsDNS1123Subdomain(claim),
		} {
			if len(bad) > 0 {
				return
			}
		}
		v := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: "uid", Labels: map[string]string{labelKey: labelValue}},
			Spec: corev1.PodSpec{
				Volumes: []corev1.Volume{
					cmVolume(volume, configMap),
					{Name: volume + "-s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secret}}},
					{Name: volume + "-c", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}},
					{Name: volume + "-t", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
						{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}},
					}}}},
				},
				Containers: []corev1.Container{{Name: "c", Image: "i", Env: []corev1.EnvVar{
					{Name: "S", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: "k"}}},
				}}},
				Affinity: &corev1.Affinity{PodAffinity: &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
					LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{labelKey: labelValue}}, TopologyKey: "zone",
				}}}},
			},
		}
		before := v.DeepCopy()
		names := translate.Translator{VCluster: vcluster, HostNamespace: "host-ns"}
		tr := Translator{Names: names, Runtime: Runtime{APIHost: "10.0.0.1", APIPort: 443, DNSServer: "10.0.0.10"}}
		h, identity, _ := tr.HostPod(v, nil)

		label := func(what, s string) {
			if errs := validation.IsDNS1123Label(s); len(errs) > 0 {
				t.Errorf("%s %q is not a DNS-1123 label: %v", what, s, errs)
			}
		}
		label("host pod name", h.Name)
		label("hostname", h.Spec.Hostname)
		if h.Namespace != "host-ns" {
			t.Errorf("host namespace %q", h.Namespace)
		}
		if h.Name != names.HostName(ns, name) {
			t.Errorf("host pod name %q, want HostName = %q", h.Name, names.HostName(ns, name))
		}
		for k, val := range h.Labels {
			if errs := append(validation.IsQualifiedName(k), validation.IsValidLabelValue(val)...); len(errs) > 0 {
				t.Errorf("host label %q=%q: %v", k, val, errs)
			}
		}
		if h.Labels[translate.LabelKey(labelKey)] != labelValue || h.Labels[translate.LabelCopyOf] != vcluster || h.Labels[translate.LabelVirtualNS] != ns {
			t.Errorf("host labels %v", h.Labels)
		}
		if got := h.Spec.Affinity.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0].LabelSelector.MatchLabels; !reflect.DeepEqual(got, h.Labels) {
			t.Errorf("affinity selects %v, not the host pod's labels %v", got, h.Labels)
		}
		for what, got := range map[string][2]string{
			"configmap volume": {h.Spec.Volumes[0].ConfigMap.Name, configMap},
			"secret volume":    {h.Spec.Volumes[1].Secret.SecretName, secret},
			"claim volume":     {h.Spec.Volumes[2].PersistentVolumeClaim.ClaimName, claim},
			"secret env":       {h.Spec.Containers[0].Env[len(h.Spec.Containers[0].Env)-1].ValueFrom.SecretKeyRef.Name, secret},
		} {
			label(what, got[0])
			if want := names.HostName(ns, got[1]); got[0] != want {
				t.Errorf("%s names %q, want the host copy %q", what, got[0], want)
			}
		}
		if !identity {
			t.Error("a token volume needs the identity secret")
		}
		token := h.Spec.Volumes[3].Projected.Sources[0].Secret
		if errs := validation.IsDNS1123Subdomain(token.Name); len(errs) > 0 || token.Name != IdentitySecretName(h.Name) {
			t.Errorf("identity secret name %q: %v", token.Name, errs)
		}
		if errs := validation.IsConfigMapKey(token.Items[0].Key); len(errs) > 0 {
			t.Errorf("token key %q: %v", token.Items[0].Key, errs)
		}
		if !reflect.DeepEqual(v, before) {
			t.Error("HostPod modified the virtual pod")
		}
		again, _, _ := tr.HostPod(v, nil)
		if !reflect.DeepEqual(h, again) {
			t.Errorf("not deterministic:\n%+v\n%+v", h, again)
		}
		if refs := HostReferences(&v.Spec, tr.Policy); len(refs) > 0 {
			t.Errorf("a pod of tenant objects refused: %v", refs)
		}
	})
}
