package syncer

import (
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/sublet-dev/sublet/internal/translate"
)

// newPDBSyncer gives each virtual PodDisruptionBudget a host copy that
// covers the host copies of exactly the pods it covers, so draining a host
// node respects the tenant's budget. Status is not copied back: the
// virtual cluster's own disruption controller keeps the virtual budget's
// status from the virtual pods (whose status is the host's), and its
// evictions are decided against that.
func newPDBSyncer(factories) (Syncer[*policyv1.PodDisruptionBudget], []trigger) {
	return mirror[*policyv1.PodDisruptionBudget]{
		kind: "poddisruptionbudget",
		client: func(cs kubernetes.Interface, ns string) writer[*policyv1.PodDisruptionBudget] {
			return cs.PolicyV1().PodDisruptionBudgets(ns)
		},
		translate: hostPDB,
		specInto:  func(dst, src *policyv1.PodDisruptionBudget) { dst.Spec = src.Spec },
	}, nil
}

func pdbInformer(f informers.SharedInformerFactory) cache.SharedIndexInformer {
	return f.Policy().V1().PodDisruptionBudgets().Informer()
}

// hostPDB translates a virtual budget: its selector as a service's is, so
// it matches this virtual namespace's host pods only (an empty selector all
// of them, a missing one none, as in the virtual cluster).
func hostPDB(t translate.Translator, v *policyv1.PodDisruptionBudget) *policyv1.PodDisruptionBudget {
	h := &policyv1.PodDisruptionBudget{ObjectMeta: hostMeta(t, v), Spec: *v.Spec.DeepCopy()}
	h.Spec.Selector = t.HostLabelSelector(v.Namespace, v.Spec.Selector)
	return h
}
