package syncer

import (
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sublet-dev/sublet/internal/translate"
)

// TestRestrictNetworkPolicy: with the isolation NetworkPolicy on, a
// tenant's host copy allows nothing beyond the cluster's own pods; without
// it, the copy stays as translated.
func TestRestrictNetworkPolicy(t *testing.T) {
	tr := translate.Translator{VCluster: "a", HostNamespace: "shared"}
	own := metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}
	policy := func() *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{
			Ingress: []networkingv1.NetworkPolicyIngressRule{
				{}, // everyone
				{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &own}, {IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}}}},
			},
			Egress: []networkingv1.NetworkPolicyEgressRule{
				{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}}}}, // addresses only
				{To: []networkingv1.NetworkPolicyPeer{{PodSelector: &own}}},
			},
		}}
	}

	h := policy()
	r, ok, err := restrictNetworkPolicy(&Context{Translator: tr}, nil, h)
	if !ok || err != nil || len(r) != 0 || len(h.Spec.Ingress) != 2 || len(h.Spec.Egress) != 2 {
		t.Errorf("without isolation: %v %v %v, spec %+v; want it unchanged", r, ok, err, h.Spec)
	}

	h = policy()
	r, ok, err = restrictNetworkPolicy(&Context{Translator: tr, NetworkPolicyIsolation: true}, nil, h)
	if !ok || err != nil {
		t.Fatalf("with isolation: %v %v", ok, err)
	}
	ownPods := tr.OwnerLabels("")
	if len(h.Spec.Ingress) != 2 || len(h.Spec.Ingress[0].From) != 1 || h.Spec.Ingress[0].From[0].PodSelector == nil ||
		len(h.Spec.Ingress[0].From[0].PodSelector.MatchLabels) != 1 || h.Spec.Ingress[0].From[0].PodSelector.MatchLabels[translate.LabelCopyOf] != ownPods[translate.LabelCopyOf] {
		t.Errorf("ingress from everyone became %+v, want the cluster's own pods", h.Spec.Ingress[0])
	}
	if from := h.Spec.Ingress[1].From; len(from) != 1 || from[0].IPBlock != nil {
		t.Errorf("ingress rule 1 peers %+v, want the pod peer only", from)
	}
	if len(h.Spec.Egress) != 1 || h.Spec.Egress[0].To[0].PodSelector == nil {
		t.Errorf("egress %+v, want the addresses-only rule left out whole", h.Spec.Egress)
	}
	if got := strings.Join(r, "\n"); !strings.Contains(got, "ingress rule 1: ipBlock 0.0.0.0/0") || !strings.Contains(got, "egress rule 0: ipBlock 10.0.0.0/8") || len(r) != 2 {
		t.Errorf("restrictions %q", r)
	}
}
