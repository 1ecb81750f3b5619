package syncer

import (
	"context"
	"fmt"

	networkingv1 "k8s.io/api/networking/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/sublet-dev/sublet/internal/translate"
)

// ingressSyncer gives every virtual ingress a host copy the host's ingress
// controller serves: annotations kept (cert-manager, controller settings),
// backend services and TLS secrets named as their host copies; the
// controller's load-balancer status comes back.
type ingressSyncer struct{}

func ingressInformer(f informers.SharedInformerFactory) cache.SharedIndexInformer {
	return f.Networking().V1().Ingresses().Informer()
}

func (ingressSyncer) ToHost(ctx context.Context, c *Context, v *networkingv1.Ingress) error {
	if v.DeletionTimestamp != nil {
		return nil
	}
	h := hostIngress(c.Translator, v)
	_, err := c.Host.NetworkingV1().Ingresses(h.Namespace).Create(ctx, h, metav1.CreateOptions{})
	return c.created(err, v, "ingress", h.Name)
}

func (ingressSyncer) Both(ctx context.Context, c *Context, v, h *networkingv1.Ingress) error {
	if v.DeletionTimestamp != nil {
		return nil
	}
	want := hostIngress(c.Translator, v)
	if !apiequality.Semantic.DeepEqual(h.Labels, want.Labels) || !apiequality.Semantic.DeepEqual(h.Annotations, want.Annotations) ||
		!apiequality.Semantic.DeepEqual(h.Spec, want.Spec) {
		nh := h.DeepCopy()
		nh.Labels, nh.Annotations, nh.Spec = want.Labels, want.Annotations, want.Spec
		if _, err := c.Host.NetworkingV1().Ingresses(h.Namespace).Update(ctx, nh, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update host ingress: %w", err)
		}
	}
	if !apiequality.Semantic.DeepEqual(v.Status, h.Status) {
		nv := v.DeepCopy()
		nv.Status = *h.Status.DeepCopy()
		if _, err := c.Virtual.NetworkingV1().Ingresses(v.Namespace).UpdateStatus(ctx, nv, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("copy ingress status: %w", err)
		}
	}
	return nil
}

func (ingressSyncer) ToVirtual(ctx context.Context, c *Context, h *networkingv1.Ingress) error {
	return deleteOwned(c.Host.NetworkingV1().Ingresses(h.Namespace).Delete(ctx, h.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &h.UID}}))
}

// hostIngress translates a virtual ingress. The ingress class is the
// host's choice of controller and stays as written; resource backends name
// virtual objects the host does not have, so their paths are dropped.
func hostIngress(t translate.Translator, v *networkingv1.Ingress) *networkingv1.Ingress {
	h := &networkingv1.Ingress{ObjectMeta: hostMeta(t, v), Spec: *v.Spec.DeepCopy()}
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
