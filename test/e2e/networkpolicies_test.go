package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sublet-dev/sublet/internal/translate"
)

// TestAgentNetworkPolicies: a tenant's NetworkPolicy reaches the host
// namespace with every selector confined to its own cluster's pods (a
// namespace selector becomes a choice of its virtual namespaces, kept up
// to date as namespaces are labelled), and, with the admin's isolation
// NetworkPolicy on, allowing nothing beyond them: an ipBlock peer is left
// out with an event. Deleting the virtual policy deletes the host copy.
func TestAgentNetworkPolicies(t *testing.T) {
	needHost(t)
	ctx := context.Background()
	_, _, ns := agentWithNamespace(t, "vc-netpol")
	hk := host.Kubeconfig
	kubectl(t, hk, fmt.Sprintf(`apiVersion: storage.loft.sh/v1
kind: VirtualCluster
metadata: {name: netpol, namespace: %s}
spec:
  helmRelease:
    values: |
      isolation:
        networkPolicy:
          enabled: true
`, ns), "apply", "-f", "-")
	kubectl(t, hk, "", "wait", "--for=jsonpath={.status.phase}=Ready", "virtualcluster/netpol", "-n", ns, "--timeout=120s")
	vkc := publishedKubeconfig(t, ns, "netpol")
	vc := clientOf(t, vkc)

	kubectl(t, vkc, `apiVersion: v1
kind: Namespace
metadata: {name: frontend, labels: {team: web}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api, namespace: default}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: web}}
      podSelector: {matchLabels: {app: web}}
    - ipBlock: {cidr: 10.0.0.0/8}
  egress:
  - {}
`, "apply", "-f", "-")
	hostName := "api-x-default-x-netpol"
	var h *networkingv1.NetworkPolicy
	var err error
	poll(t, 60*time.Second, "the host copy of the tenant's policy", func(ctx context.Context) (bool, error) {
		h, err = host.Client.NetworkingV1().NetworkPolicies(ns).Get(ctx, hostName, metav1.GetOptions{})
		return err == nil, nil
	})
	own := func(sel *metav1.LabelSelector, what string) {
		t.Helper()
		if sel == nil || sel.MatchLabels[translate.LabelCopyOf] != "netpol" {
			t.Errorf("%s selector %v does not pin this virtual cluster's pods", what, sel)
		}
	}
	own(&h.Spec.PodSelector, "policy")
	if h.Spec.PodSelector.MatchLabels[translate.LabelVirtualNS] != "default" || h.Spec.PodSelector.MatchLabels["app"] != "" ||
		h.Spec.PodSelector.MatchLabels[translate.LabelKey("app")] != "api" {
		t.Errorf("policy selector %v, want the default namespace's app=api pods, translated", h.Spec.PodSelector)
	}
	inNamespaces := func(p networkingv1.NetworkPolicyPeer) []string {
		if p.PodSelector != nil {
			for _, e := range p.PodSelector.MatchExpressions {
				if e.Key == translate.LabelVirtualNS && e.Operator == metav1.LabelSelectorOpIn {
					return e.Values
				}
			}
		}
		return nil
	}
	if len(h.Spec.Ingress) != 1 || len(h.Spec.Ingress[0].From) != 1 {
		t.Fatalf("host ingress rules %+v, want one rule with the pod peer only (the ipBlock left out)", h.Spec.Ingress)
	}
	peer := h.Spec.Ingress[0].From[0]
	own(peer.PodSelector, "ingress peer")
	if peer.NamespaceSelector != nil || peer.IPBlock != nil || !slices.Equal(inNamespaces(peer), []string{"frontend"}) {
		t.Errorf("ingress peer %+v, want this cluster's app=web pods of virtual namespace frontend, no host namespace selector", peer)
	}
	if len(h.Spec.Egress) != 1 || len(h.Spec.Egress[0].To) != 1 {
		t.Fatalf("host egress %+v, want 'everyone' bounded to the cluster's own pods", h.Spec.Egress)
	}
	own(h.Spec.Egress[0].To[0].PodSelector, "egress peer")
	waitEvent(t, vc, "default", "NetworkPolicy", "api", "RestrictedByIsolation", "ipBlock 10.0.0.0/8")

	// A namespace labelled later joins the peer.
	kubectl(t, vkc, "", "create", "namespace", "shop")
	kubectl(t, vkc, "", "label", "namespace", "shop", "team=web")
	poll(t, 60*time.Second, "the newly labelled namespace in the host peer", func(ctx context.Context) (bool, error) {
		h, err := host.Client.NetworkingV1().NetworkPolicies(ns).Get(ctx, hostName, metav1.GetOptions{})
		return err == nil && len(h.Spec.Ingress) == 1 && slices.Equal(inNamespaces(h.Spec.Ingress[0].From[0]), []string{"frontend", "shop"}), nil
	})

	// The admin's isolation policy is there beside it, untouched.
	if iso, err := host.Client.NetworkingV1().NetworkPolicies(ns).Get(ctx, "sublet-netpol", metav1.GetOptions{}); err != nil ||
		!strings.Contains(fmt.Sprint(iso.Spec.Egress), "0.0.0.0/0") {
		t.Errorf("isolation policy: %v", err)
	}

	kubectl(t, vkc, "", "delete", "networkpolicy", "api", "-n", "default")
	poll(t, 60*time.Second, "the host copy gone with the virtual policy", func(ctx context.Context) (bool, error) {
		_, err := host.Client.NetworkingV1().NetworkPolicies(ns).Get(ctx, hostName, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}
