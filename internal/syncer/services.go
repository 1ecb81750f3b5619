package syncer

import (
	"context"
	"fmt"

	"github.com/sublet-dev/sublet/internal/translate/pod"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// serviceSyncer gives every virtual service a host service that selects the
// host copies of its pods, with the same ClusterIP on both sides: the host's
// allocation wins, and a virtual service created with another IP is
// recreated with the host's.
type serviceSyncer struct{}

func serviceInformer(f informers.SharedInformerFactory) cache.SharedIndexInformer {
	return f.Core().V1().Services().Informer()
}

func (serviceSyncer) VirtualOnly(ctx context.Context, c *Context, v *corev1.Service) error {
	if pod.IsAPIServerService(v) || v.DeletionTimestamp != nil {
		return nil
	}
	h, r, ok := hostService(c, v)
	if !ok {
		c.tell(v, r, false)
		return nil
	}
	_, err := c.Host.CoreV1().Services(h.Namespace).Create(ctx, h, metav1.CreateOptions{})
	if apierrors.IsInvalid(err) && h.Spec.ClusterIP != "" && h.Spec.ClusterIP != corev1.ClusterIPNone {
		// The virtual ClusterIP is taken on the host: let the host pick one;
		// Both then gives the virtual service the same.
		h.Spec.ClusterIP, h.Spec.ClusterIPs = "", nil
		_, err = c.Host.CoreV1().Services(h.Namespace).Create(ctx, h, metav1.CreateOptions{})
	}
	if err == nil {
		c.tell(v, r, true)
	}
	return c.created(err, v, "service", h.Name)
}

func (serviceSyncer) Both(ctx context.Context, c *Context, v, h *corev1.Service) error {
	if pod.IsAPIServerService(v) {
		return nil
	}
	if h.Spec.ClusterIP != "" && v.Spec.ClusterIP != h.Spec.ClusterIP {
		return adoptHostClusterIP(ctx, c, v, h)
	}
	want, r, ok := hostService(c, v)
	if !ok {
		c.tell(v, r, false)
		return deleteHostCopy(ctx, c.Host.CoreV1().Services(h.Namespace), h)
	}
	if (h.Spec.Type == corev1.ServiceTypeExternalName) != (want.Spec.Type == corev1.ServiceTypeExternalName) ||
		!apiequality.Semantic.DeepEqual(h.Spec.LoadBalancerClass, want.Spec.LoadBalancerClass) {
		// Not changed in place (ClusterIPs come and go with ExternalName;
		// a load-balancer class is immutable): the next sync recreates it.
		return deleteHostCopy(ctx, c.Host.CoreV1().Services(h.Namespace), h)
	}
	if !apiequality.Semantic.DeepEqual(h.Labels, want.Labels) || !apiequality.Semantic.DeepEqual(h.Annotations, want.Annotations) ||
		!apiequality.Semantic.DeepEqual(h.Spec.Selector, want.Spec.Selector) || !portsEqualIgnoringNodePort(h.Spec.Ports, want.Spec.Ports) ||
		h.Spec.Type != want.Spec.Type || h.Spec.SessionAffinity != want.Spec.SessionAffinity ||
		h.Spec.PublishNotReadyAddresses != want.Spec.PublishNotReadyAddresses || h.Spec.ExternalName != want.Spec.ExternalName ||
		len(h.Spec.ExternalIPs) > 0 || !loadBalancerEqual(h, want) {
		nh := h.DeepCopy()
		nh.Labels, nh.Annotations = want.Labels, want.Annotations
		nh.Spec.Selector, nh.Spec.Type = want.Spec.Selector, want.Spec.Type
		nh.Spec.SessionAffinity, nh.Spec.PublishNotReadyAddresses = want.Spec.SessionAffinity, want.Spec.PublishNotReadyAddresses
		nh.Spec.ExternalName, nh.Spec.ExternalIPs = want.Spec.ExternalName, nil
		nh.Spec.LoadBalancerClass, nh.Spec.LoadBalancerIP = want.Spec.LoadBalancerClass, want.Spec.LoadBalancerIP
		nh.Spec.LoadBalancerSourceRanges, nh.Spec.AllocateLoadBalancerNodePorts = want.Spec.LoadBalancerSourceRanges, want.Spec.AllocateLoadBalancerNodePorts
		nh.Spec.ExternalTrafficPolicy = want.Spec.ExternalTrafficPolicy
		nh.Spec.Ports = want.Spec.Ports
		if hasNodePorts(want) {
			nh.Spec.Ports = mergeNodePorts(want.Spec.Ports, h.Spec.Ports)
		}
		if _, err := c.Host.CoreV1().Services(h.Namespace).Update(ctx, nh, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update host service: %w", err)
		}
		c.tell(v, r, true)
		return nil
	}
	// Node ports and load-balancer status are the host's, where the host
	// copy has them; a service the host serves as ClusterIP keeps the
	// virtual API server's own node ports.
	if ports := mergeNodePorts(v.Spec.Ports, h.Spec.Ports); hasNodePorts(h) && !apiequality.Semantic.DeepEqual(ports, v.Spec.Ports) {
		nv := v.DeepCopy()
		nv.Spec.Ports = ports
		if _, err := c.Virtual.CoreV1().Services(v.Namespace).Update(ctx, nv, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("copy node ports to the virtual service: %w", err)
		}
		return nil
	}
	if !apiequality.Semantic.DeepEqual(v.Status.LoadBalancer, h.Status.LoadBalancer) {
		nv := v.DeepCopy()
		nv.Status.LoadBalancer = *h.Status.LoadBalancer.DeepCopy()
		if _, err := c.Virtual.CoreV1().Services(v.Namespace).UpdateStatus(ctx, nv, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("copy load-balancer status: %w", err)
		}
	}
	return nil
}

func (serviceSyncer) HostOnly(ctx context.Context, c *Context, h *corev1.Service) error {
	return deleteHostCopy(ctx, c.Host.CoreV1().Services(h.Namespace), h)
}

// adoptHostClusterIP recreates the virtual service with the host's
// ClusterIP, which cannot be changed in place.
func adoptHostClusterIP(ctx context.Context, c *Context, v, h *corev1.Service) error {
	nv := v.DeepCopy()
	nv.ResourceVersion, nv.UID, nv.CreationTimestamp = "", "", metav1.Time{}
	nv.Spec.ClusterIP, nv.Spec.ClusterIPs = h.Spec.ClusterIP, append([]string(nil), h.Spec.ClusterIPs...)
	nv.Spec.Ports = mergeNodePorts(v.Spec.Ports, h.Spec.Ports)
	err := c.Virtual.CoreV1().Services(v.Namespace).Delete(ctx, v.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &v.UID}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("replace virtual service to adopt host ClusterIP %s: %w", h.Spec.ClusterIP, err)
	}
	if _, err := c.Virtual.CoreV1().Services(v.Namespace).Create(ctx, nv, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("recreate virtual service with host ClusterIP %s: %w", h.Spec.ClusterIP, err)
	}
	c.Log.Info("virtual service adopted the host's ClusterIP", "virtual", cache.MetaObjectToName(v), "clusterIP", h.Spec.ClusterIP)
	return nil
}

// hostService translates a virtual service into its host copy under the
// cluster's service policy (services_policy.go). It asks for the virtual
// ClusterIP; node ports are left to the host.
func hostService(c *Context, v *corev1.Service) (*corev1.Service, restrictions, bool) {
	t := c.Translator
	meta, dropped := hostMetaAllowing(t, v, c.Policy.Services.AllowedAnnotations)
	h := &corev1.Service{ObjectMeta: meta, Spec: *v.Spec.DeepCopy()}
	h.Spec.Selector = t.HostSelector(v.Namespace, v.Spec.Selector)
	for i := range h.Spec.Ports {
		h.Spec.Ports[i].NodePort = 0
	}
	h.Spec.HealthCheckNodePort = 0
	var r restrictions
	r.annotations(dropped, "isolation.services.allowedAnnotations")
	ok := restrictService(c, h, &r)
	return h, r, ok
}

// hasNodePorts reports whether service s opens node ports.
func hasNodePorts(s *corev1.Service) bool {
	switch s.Spec.Type {
	case corev1.ServiceTypeNodePort:
		return true
	case corev1.ServiceTypeLoadBalancer:
		return s.Spec.AllocateLoadBalancerNodePorts == nil || *s.Spec.AllocateLoadBalancerNodePorts
	}
	return false
}

// loadBalancerEqual compares what the service policy decides of a load
// balancer.
func loadBalancerEqual(h, want *corev1.Service) bool {
	return apiequality.Semantic.DeepEqual(h.Spec.LoadBalancerClass, want.Spec.LoadBalancerClass) &&
		h.Spec.LoadBalancerIP == want.Spec.LoadBalancerIP &&
		apiequality.Semantic.DeepEqual(h.Spec.LoadBalancerSourceRanges, want.Spec.LoadBalancerSourceRanges) &&
		(want.Spec.AllocateLoadBalancerNodePorts == nil || apiequality.Semantic.DeepEqual(h.Spec.AllocateLoadBalancerNodePorts, want.Spec.AllocateLoadBalancerNodePorts))
}

func portsEqualIgnoringNodePort(a, b []corev1.ServicePort) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		x.NodePort, y.NodePort = 0, 0
		if !apiequality.Semantic.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

// mergeNodePorts returns ports with the node ports of the same-named (or
// same-numbered) ports in from.
func mergeNodePorts(ports, from []corev1.ServicePort) []corev1.ServicePort {
	out := make([]corev1.ServicePort, len(ports))
	copy(out, ports)
	for i := range out {
		out[i].NodePort = 0
		for _, f := range from {
			if f.Name == out[i].Name && f.Port == out[i].Port && f.Protocol == out[i].Protocol {
				out[i].NodePort = f.NodePort
			}
		}
	}
	return out
}
