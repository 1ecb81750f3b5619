package syncer

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/sublet-dev/sublet/internal/translate"
	"github.com/sublet-dev/sublet/internal/translate/pod"
)

// Endpoints of services with a selector are computed on each side from the
// pods there. Services without one get their endpoints from the tenant:
// those are copied to the host, as Endpoints or as EndpointSlices, with
// only the addresses the isolation policy allows (endpoints_policy.go).

// managedBySyncer marks host EndpointSlices the syncer maintains, so the
// host's endpoint controllers leave them alone.
const managedBySyncer = "syncer.sublet.dev"

// selectorless finds whether virtual service ns/name exists and takes its
// endpoints from the tenant.
type selectorless struct{ services cache.Indexer }

func (s selectorless) has(ns, name string) bool {
	obj, ok, _ := s.services.GetByKey(ns + "/" + name)
	if !ok {
		return false
	}
	svc, ok := obj.(*corev1.Service)
	return ok && len(svc.Spec.Selector) == 0 && !pod.IsAPIServerService(svc) && svc.Spec.Type != corev1.ServiceTypeExternalName
}

// serviceTrigger re-syncs the endpoints named like a service when the
// service changes (a selector added or removed).
func serviceTrigger(f factories) trigger {
	return trigger{informer: serviceInformer(f.virtual), keys: func(obj interface{}) []string {
		if o, ok := obj.(metav1.Object); ok {
			return []string{o.GetNamespace() + "/" + o.GetName()}
		}
		return nil
	}}
}

// hostTargetRef translates a reference to a virtual pod into one to its host
// pod; references to anything else mean nothing on the host.
func hostTargetRef(t translate.Translator, vNamespace string, r *corev1.ObjectReference) *corev1.ObjectReference {
	if r == nil || r.Kind != "Pod" || (r.Namespace != "" && r.Namespace != vNamespace) {
		return nil
	}
	return &corev1.ObjectReference{Kind: "Pod", Namespace: t.HostNamespace, Name: t.HostName(vNamespace, r.Name)}
}

func endpointsInformer(f informers.SharedInformerFactory) cache.SharedIndexInformer {
	return f.Core().V1().Endpoints().Informer()
}

// newEndpointsSyncer copies the Endpoints of services without selector.
func newEndpointsSyncer(f factories) (Syncer[*corev1.Endpoints], []trigger) {
	s := selectorless{serviceInformer(f.virtual).GetIndexer()}
	return mirror[*corev1.Endpoints]{
		kind:      "endpoints",
		client:    func(cs kubernetes.Interface, ns string) writer[*corev1.Endpoints] { return cs.CoreV1().Endpoints(ns) },
		translate: hostEndpoints,
		specInto:  func(dst, src *corev1.Endpoints) { dst.Subsets = src.Subsets },
		wanted:    func(v *corev1.Endpoints) bool { return s.has(v.Namespace, v.Name) },
		restrict:  restrictEndpoints,
	}, []trigger{serviceTrigger(f), endpointsByIP(f, endpointsInformer(f.virtual))}
}

func hostEndpoints(t translate.Translator, v *corev1.Endpoints) *corev1.Endpoints {
	h := &corev1.Endpoints{ObjectMeta: hostMeta(t, v)}
	for _, s := range v.Subsets {
		s = *s.DeepCopy()
		for _, list := range [][]corev1.EndpointAddress{s.Addresses, s.NotReadyAddresses} {
			for i := range list {
				list[i].TargetRef = hostTargetRef(t, v.Namespace, list[i].TargetRef)
			}
		}
		h.Subsets = append(h.Subsets, s)
	}
	return h
}

func endpointSliceInformer(f informers.SharedInformerFactory) cache.SharedIndexInformer {
	return f.Discovery().V1().EndpointSlices().Informer()
}

// newEndpointSliceSyncer copies EndpointSlices the tenant wrote for
// services without selectors. Slices the virtual control plane's
// controllers made (from pods, or mirrored from Endpoints) are not copied:
// the host makes its own.
func newEndpointSliceSyncer(f factories) (Syncer[*discoveryv1.EndpointSlice], []trigger) {
	services := serviceInformer(f.virtual).GetIndexer()
	slices := endpointSliceInformer(f.virtual)
	const byService = "sublet-slices-by-service"
	if _, ok := slices.GetIndexer().GetIndexers()[byService]; !ok {
		_ = slices.AddIndexers(cache.Indexers{byService: func(obj interface{}) ([]string, error) {
			if es, ok := obj.(*discoveryv1.EndpointSlice); ok && es.Labels[discoveryv1.LabelServiceName] != "" {
				return []string{es.Namespace + "/" + es.Labels[discoveryv1.LabelServiceName]}, nil
			}
			return nil, nil
		}})
	}
	// A service change re-syncs its slices.
	t := trigger{informer: serviceInformer(f.virtual), keys: func(obj interface{}) []string {
		o, ok := obj.(metav1.Object)
		if !ok {
			return nil
		}
		keys, _ := slices.GetIndexer().IndexKeys(byService, o.GetNamespace()+"/"+o.GetName())
		return keys
	}}
	s := selectorless{services}
	return mirror[*discoveryv1.EndpointSlice]{
		kind: "endpointslice",
		client: func(cs kubernetes.Interface, ns string) writer[*discoveryv1.EndpointSlice] {
			return cs.DiscoveryV1().EndpointSlices(ns)
		},
		translate: hostEndpointSlice,
		specInto:  func(dst, src *discoveryv1.EndpointSlice) { dst.Endpoints, dst.Ports = src.Endpoints, src.Ports },
		wanted:    s.tenantSlice,
		restrict:  restrictSlice,
	}, []trigger{t, endpointsByIP(f, slices)}
}

// tenantSlice reports whether v is a slice the tenant wrote for a service
// without a selector.
func (s selectorless) tenantSlice(v *discoveryv1.EndpointSlice) bool {
	switch v.Labels[discoveryv1.LabelManagedBy] {
	case "endpointslice-controller.k8s.io", "endpointslicemirroring-controller.k8s.io":
		return false
	}
	svc := v.Labels[discoveryv1.LabelServiceName]
	return svc != "" && s.has(v.Namespace, svc)
}

func hostEndpointSlice(t translate.Translator, v *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	h := &discoveryv1.EndpointSlice{ObjectMeta: hostMeta(t, v), AddressType: v.AddressType, Ports: v.Ports}
	h.Labels[discoveryv1.LabelServiceName] = t.HostName(v.Namespace, v.Labels[discoveryv1.LabelServiceName])
	h.Labels[discoveryv1.LabelManagedBy] = managedBySyncer
	for _, e := range v.Endpoints {
		e = *e.DeepCopy()
		e.TargetRef = hostTargetRef(t, v.Namespace, e.TargetRef)
		h.Endpoints = append(h.Endpoints, e)
	}
	return h
}
