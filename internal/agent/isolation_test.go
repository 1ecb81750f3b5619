package agent

import (
	"testing"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/sublet-dev/sublet/internal/values"
)

// TestNetworkPolicySpec: the policy selects exactly this virtual cluster's
// host pods and lets them reach each other, DNS, their API server and the
// outside world, and be reached by each other and the ingress namespaces.
func TestNetworkPolicySpec(t *testing.T) {
	spec := networkPolicySpec("demo", values.IsolationNetworkPolicy{}, "https://10.1.2.3:6443")
	if got := spec.PodSelector.MatchLabels; len(got) != 1 || got["sublet.dev/managed-by"] != "demo" {
		t.Errorf("pod selector %v", got)
	}
	if len(spec.PolicyTypes) != 2 {
		t.Errorf("policy types %v: both directions must be confined", spec.PolicyTypes)
	}
	var sawOutside, sawAPI, sawDNS bool
	for _, e := range spec.Egress {
		for _, to := range e.To {
			switch {
			case to.IPBlock != nil && to.IPBlock.CIDR == "0.0.0.0/0":
				sawOutside = len(to.IPBlock.Except) >= 3
			case to.IPBlock != nil && to.IPBlock.CIDR == "10.1.2.3/32":
				sawAPI = true
			case to.NamespaceSelector != nil && len(e.Ports) == 2:
				sawDNS = true
			}
		}
	}
	if !sawOutside || !sawAPI || !sawDNS {
		t.Errorf("egress: outside (private ranges excepted) %v, API server %v, DNS %v", sawOutside, sawAPI, sawDNS)
	}
	ingressNS := func(s networkingv1.NetworkPolicySpec) []string {
		for _, in := range s.Ingress {
			for _, from := range in.From {
				if from.NamespaceSelector != nil {
					return from.NamespaceSelector.MatchExpressions[0].Values
				}
			}
		}
		return nil
	}
	if got := ingressNS(spec); len(got) != 1 || got[0] != "ingress-nginx" {
		t.Errorf("default ingress namespaces %v", got)
	}
	none := networkPolicySpec("demo", values.IsolationNetworkPolicy{AllowIngressFromNamespaces: []string{}}, "")
	if got := ingressNS(none); got != nil {
		t.Errorf("an empty allow list still lets %v in", got)
	}
}
