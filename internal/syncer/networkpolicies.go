package syncer

import (
	"sort"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/sublet-dev/sublet/internal/translate"
)

// newNetworkPolicySyncer gives each virtual NetworkPolicy a host copy the
// host's CNI enforces, with every selector confined to this virtual
// cluster's host pods (translate.HostNetworkPolicy) and, where the
// cluster's isolation NetworkPolicy bounds its pods, nothing allowed
// beyond them (restrictNetworkPolicy). A namespace selector is resolved
// against the virtual namespaces, so a namespace's labels changing
// resyncs every policy.
func newNetworkPolicySyncer(f factories) (Syncer[*networkingv1.NetworkPolicy], []trigger) {
	nsInformer := f.virtual.Core().V1().Namespaces().Informer()
	policies := f.virtual.Networking().V1().NetworkPolicies().Informer()
	namespaces := func(sel labels.Selector) []string {
		var out []string
		for _, obj := range nsInformer.GetStore().List() {
			if ns, ok := obj.(*corev1.Namespace); ok && sel.Matches(labels.Set(ns.Labels)) {
				out = append(out, ns.Name)
			}
		}
		sort.Strings(out)
		return out
	}
	return mirror[*networkingv1.NetworkPolicy]{
			kind: "networkpolicy",
			client: func(cs kubernetes.Interface, ns string) writer[*networkingv1.NetworkPolicy] {
				return cs.NetworkingV1().NetworkPolicies(ns)
			},
			translate: func(t translate.Translator, v *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicy {
				return t.HostNetworkPolicy(v, namespaces)
			},
			specInto: func(dst, src *networkingv1.NetworkPolicy) { dst.Spec = src.Spec },
			restrict: restrictNetworkPolicy,
		}, []trigger{{informer: nsInformer, keys: func(interface{}) []string {
			return policies.GetStore().ListKeys()
		}}}
}

func networkPolicyInformer(f informers.SharedInformerFactory) cache.SharedIndexInformer {
	return f.Networking().V1().NetworkPolicies().Informer()
}

// restrictNetworkPolicy bounds host copy h when the cluster's isolation
// NetworkPolicy is on. Policies only ever add what is allowed, so a
// tenant's copy beside the isolation policy may not allow anything the
// isolation policy does not: an ipBlock peer is left out (with an event)
// and a rule without peers ("everyone") allows this cluster's own pods.
// A rule that allowed only addresses is left out whole: left with no
// peers it would allow everyone. Without the isolation policy the copy
// stays as translated: it only ever narrows what the tenant's own pods
// reach and are reached by.
func restrictNetworkPolicy(c *Context, _, h *networkingv1.NetworkPolicy) (restrictions, bool, error) {
	if !c.NetworkPolicyIsolation {
		return nil, true, nil
	}
	var r restrictions
	own := &metav1.LabelSelector{MatchLabels: c.Translator.OwnerLabels("")}
	bound := func(direction string, i int, peers []networkingv1.NetworkPolicyPeer) ([]networkingv1.NetworkPolicyPeer, bool) {
		if len(peers) == 0 {
			return []networkingv1.NetworkPolicyPeer{{PodSelector: own}}, true
		}
		var out []networkingv1.NetworkPolicyPeer
		for _, p := range peers {
			if p.IPBlock != nil {
				r.add("%s rule %d: ipBlock %s (the cluster's isolation NetworkPolicy decides what its pods reach beyond their own cluster; an admin sets it with isolation.networkPolicy)", direction, i, p.IPBlock.CIDR)
				continue
			}
			out = append(out, p)
		}
		return out, len(out) > 0
	}
	var ingress []networkingv1.NetworkPolicyIngressRule
	for i, rule := range h.Spec.Ingress {
		if peers, ok := bound("ingress", i, rule.From); ok {
			rule.From = peers
			ingress = append(ingress, rule)
		}
	}
	var egress []networkingv1.NetworkPolicyEgressRule
	for i, rule := range h.Spec.Egress {
		if peers, ok := bound("egress", i, rule.To); ok {
			rule.To = peers
			egress = append(egress, rule)
		}
	}
	h.Spec.Ingress, h.Spec.Egress = ingress, egress
	return r, true, nil
}
