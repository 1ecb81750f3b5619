// Package pod translates a virtual pod into the pod that runs it on the host:
// names of the objects it uses, labels, selectors of its affinity terms, its
// identity (service-account tokens, downward API), environment and DNS, and
// what of its spec would reach past the tenant's own objects. Every function
// is pure: the syncer passes in the virtual cluster's names, policy and
// runtime, and makes the API calls.
package pod

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/sublet-dev/sublet/internal/isolation"
	"github.com/sublet-dev/sublet/internal/translate"
)

// Runtime is what a host pod needs to act as a pod of its virtual cluster:
// where the virtual API server is and which DNS server resolves virtual
// service names.
type Runtime struct {
	// APIHost and APIPort become KUBERNETES_SERVICE_HOST/PORT.
	APIHost string
	APIPort int32
	// DNSServer is the nameserver of ClusterFirst pods; empty keeps the
	// host's DNS policy.
	DNSServer string
	// ClusterDomain is the virtual cluster's DNS domain (cluster.local).
	ClusterDomain string
}

// Translator translates the pods of one virtual cluster.
type Translator struct {
	// Names maps virtual names, labels and selectors into the host
	// namespace.
	Names translate.Translator
	// Policy is the admin's isolation.pods.
	Policy isolation.PodPolicy
	// Runtime is how host pods reach their virtual cluster.
	Runtime Runtime
}

// HostPod translates virtual pod v, given the virtual services of its
// namespace, into the pod that runs it on the host. It reports whether the
// host pod needs its identity secret (IdentitySecretName) and the keys of
// v's annotations the policy kept off the host. v is not modified.
//
// Two steps are the caller's, after HostPod: the claim templates of
// ephemeral volumes, translated as the tenant's PersistentVolumeClaims are,
// and the admin's limits on tolerations and node selectors.
func (t Translator) HostPod(v *corev1.Pod, services []*corev1.Service) (h *corev1.Pod, needsIdentity bool, droppedAnnotations []string) {
	names := t.Names
	meta, dropped := names.HostMeta(v, t.Policy.AllowedAnnotations)
	h = &corev1.Pod{ObjectMeta: meta, Spec: *v.Spec.DeepCopy()}
	s := &h.Spec
	// The host schedules; the virtual cluster's service accounts, priority
	// classes and scheduler mean nothing there.
	s.NodeName = ""
	s.SchedulerName = ""
	s.SchedulingGates = nil
	s.PriorityClassName = ""
	s.Priority = nil
	s.ServiceAccountName = ""
	s.DeprecatedServiceAccount = ""
	s.AutomountServiceAccountToken = ptr.To(false)
	if s.Hostname == "" {
		s.Hostname = truncateLabel(v.Name)
	}
	s.Subdomain = ""

	// References to virtual objects translated to their host copies.
	for i := range s.Volumes {
		translateVolume(names, v.Namespace, &s.Volumes[i])
	}
	for _, list := range [][]corev1.Container{s.InitContainers, s.Containers} {
		for i := range list {
			translateContainer(names, v.Namespace, &list[i])
		}
	}
	for i := range s.EphemeralContainers {
		translateContainer(names, v.Namespace, (*corev1.Container)(&s.EphemeralContainers[i].EphemeralContainerCommon))
	}
	// Tokens, downward API, environment and DNS of the virtual pod.
	needsIdentity = translateIdentity(h)
	translateEnv(t.Runtime, v, h, services)
	translateDNS(t.Runtime, v, h)
	for i := range s.ImagePullSecrets {
		s.ImagePullSecrets[i].Name = names.HostName(v.Namespace, s.ImagePullSecrets[i].Name)
	}
	for i := range s.TopologySpreadConstraints {
		s.TopologySpreadConstraints[i].LabelSelector = names.HostLabelSelector(v.Namespace, s.TopologySpreadConstraints[i].LabelSelector)
	}
	if a := s.Affinity; a != nil {
		if a.PodAffinity != nil {
			translateAffinityTerms(names, v.Namespace, a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution, a.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution)
		}
		if a.PodAntiAffinity != nil {
			translateAffinityTerms(names, v.Namespace, a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution, a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution)
		}
	}
	return h, needsIdentity, dropped
}

// translateAffinityTerms makes pod (anti-)affinity terms select the host
// copies of the virtual pods they select, in the host namespace only.
func translateAffinityTerms(t translate.Translator, vNamespace string, required []corev1.PodAffinityTerm, preferred []corev1.WeightedPodAffinityTerm) {
	fix := func(term *corev1.PodAffinityTerm) {
		term.LabelSelector = t.HostLabelSelector(vNamespace, term.LabelSelector)
		term.Namespaces = nil
		term.NamespaceSelector = nil
	}
	for i := range required {
		fix(&required[i])
	}
	for i := range preferred {
		fix(&preferred[i].PodAffinityTerm)
	}
}

// translateVolume points a volume at the host copies of the configmaps,
// secrets and claims it names.
func translateVolume(t translate.Translator, vNamespace string, vol *corev1.Volume) {
	switch {
	case vol.ConfigMap != nil:
		vol.ConfigMap.Name = t.HostName(vNamespace, vol.ConfigMap.Name)
	case vol.Secret != nil:
		vol.Secret.SecretName = t.HostName(vNamespace, vol.Secret.SecretName)
	case vol.PersistentVolumeClaim != nil:
		vol.PersistentVolumeClaim.ClaimName = t.HostName(vNamespace, vol.PersistentVolumeClaim.ClaimName)
	case vol.Ephemeral != nil && vol.Ephemeral.VolumeClaimTemplate != nil:
		// The caller's: translated as the tenant's claims are.
	case vol.Projected != nil:
		for i := range vol.Projected.Sources {
			src := &vol.Projected.Sources[i]
			if src.ConfigMap != nil {
				src.ConfigMap.Name = t.HostName(vNamespace, src.ConfigMap.Name)
			}
			if src.Secret != nil {
				src.Secret.Name = t.HostName(vNamespace, src.Secret.Name)
			}
		}
	}
}

// translateContainer points a container's environment at the host copies of
// the configmaps and secrets it names.
func translateContainer(t translate.Translator, vNamespace string, c *corev1.Container) {
	for i := range c.Env {
		if from := c.Env[i].ValueFrom; from != nil {
			if from.ConfigMapKeyRef != nil {
				from.ConfigMapKeyRef.Name = t.HostName(vNamespace, from.ConfigMapKeyRef.Name)
			}
			if from.SecretKeyRef != nil {
				from.SecretKeyRef.Name = t.HostName(vNamespace, from.SecretKeyRef.Name)
			}
		}
	}
	for i := range c.EnvFrom {
		if c.EnvFrom[i].ConfigMapRef != nil {
			c.EnvFrom[i].ConfigMapRef.Name = t.HostName(vNamespace, c.EnvFrom[i].ConfigMapRef.Name)
		}
		if c.EnvFrom[i].SecretRef != nil {
			c.EnvFrom[i].SecretRef.Name = t.HostName(vNamespace, c.EnvFrom[i].SecretRef.Name)
		}
	}
}

// truncateLabel makes a pod name (a DNS-1123 subdomain) a hostname (a
// DNS-1123 label), as a kubelet does.
func truncateLabel(s string) string {
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "-.")
	}
	return strings.ReplaceAll(s, ".", "-")
}

// ImagesDiffer reports whether pods a and b, with the same containers, run
// a different image in any of them. Images are the one part of a running
// pod's containers a tenant may change.
func ImagesDiffer(a, b *corev1.Pod) bool {
	if len(a.Spec.Containers) != len(b.Spec.Containers) {
		return false
	}
	for i := range a.Spec.Containers {
		if a.Spec.Containers[i].Image != b.Spec.Containers[i].Image {
			return true
		}
	}
	return false
}
