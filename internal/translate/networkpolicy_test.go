package translate

import (
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// TestHostNetworkPolicy: every selector of the host copy selects only this
// virtual cluster's host pods, in the virtual namespaces the tenant meant;
// never another virtual cluster's pods in the same host namespace, nor the
// host's own.
func TestHostNetworkPolicy(t *testing.T) {
	tr := Translator{VCluster: "a", HostNamespace: "shared"}
	other := Translator{VCluster: "b", HostNamespace: "shared"}
	nsLabels := map[string]map[string]string{
		"default": {"team": "x"}, "web": {"team": "x", "tier": "front"}, "db": {"team": "y"},
	}
	namespaces := func(sel labels.Selector) []string {
		var out []string
		for _, n := range []string{"db", "default", "web"} {
			if sel.Matches(labels.Set(nsLabels[n])) {
				out = append(out, n)
			}
		}
		return out
	}
	app := func(v string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"app": v}}
	}
	v := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", Labels: map[string]string{"k": "v"}},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: *app("api"),
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
				{PodSelector: app("web")}, // 0: same namespace
				{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "x"}}, PodSelector: app("web")}, // 1
				{NamespaceSelector: &metav1.LabelSelector{}},                                                 // 2: every namespace
				{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "nobody"}}}, // 3
				{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}},                                         // 4
			}}},
			Egress: []networkingv1.NetworkPolicyEgressRule{{}},
		},
	}
	h := tr.HostNetworkPolicy(v, namespaces)
	if h.Namespace != "shared" || h.Name != tr.HostName("default", "p") || !tr.Owns(h) {
		t.Errorf("host policy %s/%s not this cluster's copy", h.Namespace, h.Name)
	}
	type pod struct {
		t      Translator
		ns     string
		labels map[string]string
	}
	hostLabels := func(p pod) labels.Set { return labels.Set(p.t.HostLabels(p.ns, p.labels)) }
	matches := func(sel *metav1.LabelSelector, p pod) bool {
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			t.Fatal(err)
		}
		return s.Matches(hostLabels(p))
	}
	api, web := map[string]string{"app": "api"}, map[string]string{"app": "web"}
	for _, c := range []struct {
		what string
		sel  *metav1.LabelSelector
		pod  pod
		want bool
	}{
		{"policy: own api pod", &h.Spec.PodSelector, pod{tr, "default", api}, true},
		{"policy: api pod of another namespace", &h.Spec.PodSelector, pod{tr, "web", api}, false},
		{"policy: another cluster's api pod", &h.Spec.PodSelector, pod{other, "default", api}, false},
		{"policy: a host pod with the tenant's label", &h.Spec.PodSelector, pod{Translator{}, "", nil}, false},
		{"peer 0: web here", h.Spec.Ingress[0].From[0].PodSelector, pod{tr, "default", web}, true},
		{"peer 0: web elsewhere", h.Spec.Ingress[0].From[0].PodSelector, pod{tr, "web", web}, false},
		{"peer 1: web in a team x namespace", h.Spec.Ingress[0].From[1].PodSelector, pod{tr, "web", web}, true},
		{"peer 1: web in team y", h.Spec.Ingress[0].From[1].PodSelector, pod{tr, "db", web}, false},
		{"peer 1: another cluster's web in its web namespace", h.Spec.Ingress[0].From[1].PodSelector, pod{other, "web", web}, false},
		{"peer 2: any own pod", h.Spec.Ingress[0].From[2].PodSelector, pod{tr, "db", nil}, true},
		{"peer 2: another cluster's pod", h.Spec.Ingress[0].From[2].PodSelector, pod{other, "db", nil}, false},
		{"peer 3: no namespace matches", h.Spec.Ingress[0].From[3].PodSelector, pod{tr, "default", nil}, false},
	} {
		if got := matches(c.sel, c.pod); got != c.want {
			t.Errorf("%s: matches %v, want %v", c.what, got, c.want)
		}
	}
	for i, p := range h.Spec.Ingress[0].From {
		if p.NamespaceSelector != nil {
			t.Errorf("peer %d keeps a namespace selector: it would select host namespaces", i)
		}
	}
	if b := h.Spec.Ingress[0].From[4].IPBlock; b == nil || b.CIDR != "10.0.0.0/8" {
		t.Errorf("ipBlock peer %+v, want it as written (the isolation policy bounds it)", h.Spec.Ingress[0].From[4])
	}
	if len(h.Spec.Egress) != 1 || len(h.Spec.Egress[0].To) != 0 {
		t.Errorf("egress %+v, want the rule without peers as written", h.Spec.Egress)
	}
	if v.Spec.Ingress[0].From[1].NamespaceSelector == nil || v.Spec.PodSelector.MatchLabels["app"] != "api" {
		t.Error("HostNetworkPolicy changed the virtual policy")
	}
}
