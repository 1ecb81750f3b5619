package syncer

import (
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/sublet-dev/sublet/internal/isolation"
	"github.com/sublet-dev/sublet/internal/translate"
)

// newIngressSyncer gives every virtual ingress a host copy the host's
// ingress controller serves: backend services and TLS secrets named as
// their host copies, host names and annotations as the isolation policy
// allows (ingresses_policy.go); the controller's load-balancer status
// comes back.
func newIngressSyncer(f factories) (Syncer[*networkingv1.Ingress], []trigger) {
	claims, claimTrigger := newHostClaims(f)
	return mirror[*networkingv1.Ingress]{
		restrict: claims.restrict,
		kind:     "ingress",
		client: func(cs kubernetes.Interface, ns string) writer[*networkingv1.Ingress] {
			return cs.NetworkingV1().Ingresses(ns)
		},
		translate: hostIngress,
		specInto:  func(dst, src *networkingv1.Ingress) { dst.Spec = src.Spec },
		status: &mirrorStatus[*networkingv1.Ingress]{
			client: func(cs kubernetes.Interface, ns string) statusWriter[*networkingv1.Ingress] {
				return cs.NetworkingV1().Ingresses(ns)
			},
			into: func(dst, src *networkingv1.Ingress) { dst.Status = *src.Status.DeepCopy() },
		},
	}, []trigger{claimTrigger}
}

func ingressInformer(f informers.SharedInformerFactory) cache.SharedIndexInformer {
	return f.Networking().V1().Ingresses().Informer()
}

// hostIngress translates a virtual ingress. The ingress class is the
// host's choice of controller and stays as written; resource backends name
// virtual objects the host does not have, so their paths are dropped.
func hostIngress(t translate.Translator, v *networkingv1.Ingress) *networkingv1.Ingress {
	meta, _ := hostMetaAllowing(t, v, isolation.DefaultIngressAnnotations)
	h := &networkingv1.Ingress{ObjectMeta: meta, Spec: *v.Spec.DeepCopy()}
	if b := h.Spec.DefaultBackend; b != nil {
		if b.Service == nil {
			h.Spec.DefaultBackend = nil
		} else {
			b.Service.Name = t.HostName(v.Namespace, b.Service.Name)
		}
	}
	for i := range h.Spec.Rules {
		if http := h.Spec.Rules[i].HTTP; http != nil {
			var paths []networkingv1.HTTPIngressPath
			for _, p := range http.Paths {
				if p.Backend.Service != nil {
					p.Backend.Service.Name = t.HostName(v.Namespace, p.Backend.Service.Name)
					paths = append(paths, p)
				}
			}
			http.Paths = paths
		}
	}
	for i := range h.Spec.TLS {
		if h.Spec.TLS[i].SecretName != "" {
			h.Spec.TLS[i].SecretName = t.HostName(v.Namespace, h.Spec.TLS[i].SecretName)
		}
	}
	return h
}
