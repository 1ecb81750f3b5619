package translate

import (
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// noNamespace is a virtual-namespace label value no namespace has (a
// namespace name has no underscore): a peer whose namespace selector
// matches no virtual namespace selects no pod with it.
const noNamespace = "no_namespace"

// HostNetworkPolicy translates virtual NetworkPolicy v for the host
// namespace, where all of this virtual cluster's pods run (beside other
// virtual clusters' and the host's own): every selector is confined to
// this virtual cluster's host pods. The policy's podSelector, and a peer's
// podSelector without namespaceSelector, select in v's virtual namespace;
// a peer's namespaceSelector picks virtual namespaces, which namespaces
// lists (sorted names of the virtual namespaces whose labels match), and
// becomes a choice of the host pods' virtual-namespace label. No host
// selector names another namespace. ipBlock peers and rules without peers
// stay as written: they only ever widen what this cluster's own pods may
// reach or be reached by, which the isolation policy bounds (the syncer's
// restrict step).
func (t Translator) HostNetworkPolicy(v *networkingv1.NetworkPolicy, namespaces func(labels.Selector) []string) *networkingv1.NetworkPolicy {
	meta, _ := t.HostMeta(v)
	h := &networkingv1.NetworkPolicy{ObjectMeta: meta, Spec: *v.Spec.DeepCopy()}
	h.Spec.PodSelector = *t.HostLabelSelector(v.Namespace, &v.Spec.PodSelector)
	for i := range h.Spec.Ingress {
		h.Spec.Ingress[i].From = t.hostPeers(v.Namespace, h.Spec.Ingress[i].From, namespaces)
	}
	for i := range h.Spec.Egress {
		h.Spec.Egress[i].To = t.hostPeers(v.Namespace, h.Spec.Egress[i].To, namespaces)
	}
	return h
}

func (t Translator) hostPeers(vNamespace string, peers []networkingv1.NetworkPolicyPeer, namespaces func(labels.Selector) []string) []networkingv1.NetworkPolicyPeer {
	for i, p := range peers {
		if p.IPBlock != nil {
			continue
		}
		pods := p.PodSelector
		if pods == nil {
			pods = &metav1.LabelSelector{}
		}
		out := networkingv1.NetworkPolicyPeer{}
		switch {
		case p.NamespaceSelector == nil:
			out.PodSelector = t.HostLabelSelector(vNamespace, pods)
		default:
			out.PodSelector = t.HostLabelSelector("", pods)
			if ns := t.selectedNamespaces(p.NamespaceSelector, namespaces); ns != nil {
				out.PodSelector.MatchExpressions = append(out.PodSelector.MatchExpressions,
					metav1.LabelSelectorRequirement{Key: LabelVirtualNS, Operator: metav1.LabelSelectorOpIn, Values: ns})
			}
		}
		peers[i] = out
	}
	return peers
}

// selectedNamespaces are the virtual namespaces sel picks, nil for all of
// them, and one no namespace has if none (or if sel is invalid).
func (t Translator) selectedNamespaces(sel *metav1.LabelSelector, namespaces func(labels.Selector) []string) []string {
	if len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0 {
		return nil
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return []string{noNamespace}
	}
	if ns := namespaces(s); len(ns) > 0 {
		return ns
	}
	return []string{noNamespace}
}
