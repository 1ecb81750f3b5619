package pod

import (
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/kubernetes/pkg/kubelet/envvars"
	"k8s.io/utils/ptr"
)

// translateEnv sets what a kubelet of the virtual cluster would put in the
// environment of host pod h: service links of the virtual namespace's
// services and the virtual API server's address, and downward-API values of
// virtual pod v.
func translateEnv(rt Runtime, v *corev1.Pod, h *corev1.Pod, services []*corev1.Service) {
	var svcEnv []corev1.EnvVar
	if rt.APIHost != "" {
		api := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"},
			Spec: corev1.ServiceSpec{ClusterIP: rt.APIHost, Ports: []corev1.ServicePort{
				{Name: "https", Port: rt.APIPort, Protocol: corev1.ProtocolTCP},
			}},
		}
		var list []*corev1.Service
		if v.Spec.EnableServiceLinks == nil || *v.Spec.EnableServiceLinks {
			for _, s := range services {
				if s.Namespace == v.Namespace && !IsAPIServerService(s) && len(s.Spec.Ports) > 0 {
					list = append(list, s)
				}
			}
			sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
		}
		svcEnv = envvars.FromServices(append(list, api))
	}
	// The host's own service links name other tenants' services.
	h.Spec.EnableServiceLinks = ptr.To(false)
	fix := func(ct *corev1.Container) {
		env := append([]corev1.EnvVar(nil), svcEnv...)
		for _, e := range ct.Env {
			if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
				if val, ok := virtualFieldValue(v, e.ValueFrom.FieldRef.FieldPath); ok {
					e = corev1.EnvVar{Name: e.Name, Value: val}
				}
			}
			env = append(env, e)
		}
		ct.Env = env
	}
	for i := range h.Spec.InitContainers {
		fix(&h.Spec.InitContainers[i])
	}
	for i := range h.Spec.Containers {
		fix(&h.Spec.Containers[i])
	}
	for i := range h.Spec.EphemeralContainers {
		fix((*corev1.Container)(&h.Spec.EphemeralContainers[i].EphemeralContainerCommon))
	}
}

// virtualFieldValue resolves a downward-API field path whose host value
// would differ from the virtual one.
func virtualFieldValue(v *corev1.Pod, path string) (string, bool) {
	switch path {
	case "metadata.name":
		return v.Name, true
	case "metadata.namespace":
		return v.Namespace, true
	case "metadata.uid":
		return string(v.UID), true
	case "spec.serviceAccountName":
		return v.Spec.ServiceAccountName, true
	}
	for prefix, m := range map[string]map[string]string{"metadata.labels": v.Labels, "metadata.annotations": v.Annotations} {
		if strings.HasPrefix(path, prefix+"['") && strings.HasSuffix(path, "']") {
			return m[strings.TrimSuffix(strings.TrimPrefix(path, prefix+"['"), "']")], true
		}
	}
	return "", false
}

// translateDNS points ClusterFirst pods at the virtual cluster's DNS, with
// the search path of their virtual namespace.
func translateDNS(rt Runtime, v *corev1.Pod, h *corev1.Pod) {
	if rt.DNSServer == "" {
		return
	}
	switch v.Spec.DNSPolicy {
	case "", corev1.DNSClusterFirst:
	case corev1.DNSClusterFirstWithHostNet:
	default:
		return
	}
	if v.Spec.HostNetwork && v.Spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		return
	}
	domain := rt.ClusterDomain
	if domain == "" {
		domain = "cluster.local"
	}
	cfg := &corev1.PodDNSConfig{
		Nameservers: []string{rt.DNSServer},
		Searches:    []string{v.Namespace + ".svc." + domain, "svc." + domain, domain},
		Options:     []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr.To("5")}},
	}
	if u := v.Spec.DNSConfig; u != nil {
		cfg.Nameservers = append(cfg.Nameservers, u.Nameservers...)
		cfg.Searches = append(cfg.Searches, u.Searches...)
		cfg.Options = append(cfg.Options, u.Options...)
	}
	h.Spec.DNSPolicy = corev1.DNSNone
	h.Spec.DNSConfig = cfg
}

// IsAPIServerService reports whether s is the virtual cluster's own
// default/kubernetes Service: the API server, never copied to the host.
func IsAPIServerService(s *corev1.Service) bool {
	return s.Namespace == metav1.NamespaceDefault && s.Name == "kubernetes"
}
