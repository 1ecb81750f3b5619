package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sublet-dev/sublet/internal/translate"
)

var httpRoutes = schema.GroupVersionResource{Group: gatewayv1.GroupName, Version: "v1", Resource: "httproutes"}

// installGatewayAPI gives the shared host the Gateway API's standard CRDs,
// from the module the tests build against, until the test ends (its
// virtual clusters are gone by then: this cleanup is registered first).
func installGatewayAPI(t *testing.T) {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		t.Fatalf("find the gateway-api module: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard")
	for _, r := range []string{"gatewayclasses", "gateways", "httproutes", "grpcroutes", "tlsroutes", "referencegrants"} {
		kubectl(t, host.Kubeconfig, "", "apply", "--server-side", "-f", filepath.Join(dir, "gateway.networking.k8s.io_"+r+".yaml"))
		t.Cleanup(func() {
			_ = exec.Command("kubectl", "--kubeconfig", host.Kubeconfig, "delete", "crd", r+"."+gatewayv1.GroupName, "--ignore-not-found").Run()
		})
	}
	kubectl(t, host.Kubeconfig, "", "wait", "--for=condition=Established", "crd/httproutes.gateway.networking.k8s.io", "crd/tlsroutes.gateway.networking.k8s.io", "--timeout=60s")
}

// TestAgentGatewayRoutes: with the host serving the Gateway API, an
// HTTPRoute of the tenant reaches the host namespace attached only to a
// Gateway the admin's template lists, with its backend named as the host
// copy of its Service, and the Gateway controller's status comes back
// (the controller is this test). A route to an unlisted Gateway, to
// another namespace's Service, or with a host name outside the allowed
// ones, gets no host copy and an event saying why.
func TestAgentGatewayRoutes(t *testing.T) {
	needHost(t)
	ctx := context.Background()
	installGatewayAPI(t)
	_, stateDir, ns := agentWithNamespace(t, "vc-routes")
	logsOnFailure(t, stateDir)
	hk := host.Kubeconfig
	class := ns + "-public"
	kubectl(t, hk, fmt.Sprintf("apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: %s}\nspec: {controllerName: example.com/gateway}\n", class), "apply", "-f", "-")
	tmpl := ns + "-gateways"
	t.Cleanup(func() {
		_ = exec.Command("kubectl", "--kubeconfig", hk, "delete", "virtualclustertemplate", tmpl, "--ignore-not-found").Run()
	})
	kubectl(t, hk, fmt.Sprintf(`apiVersion: storage.loft.sh/v1
kind: VirtualClusterTemplate
metadata: {name: %s}
spec:
  template:
    helmRelease:
      values: |
        isolation:
          gateways:
            allowedParents: [shared-gw/public]
          ingresses:
            allowedHosts: ["*.{name}.apps.example.com"]
---
apiVersion: storage.loft.sh/v1
kind: VirtualCluster
metadata: {name: routes, namespace: %s}
spec:
  templateRef: {name: %s}
`, tmpl, ns, tmpl), "apply", "-f", "-")
	kubectl(t, hk, "", "wait", "--for=jsonpath={.status.phase}=Ready", "virtualcluster/routes", "-n", ns, "--timeout=120s")
	vkc := publishedKubeconfig(t, ns, "routes")

	// The syncer installed the host's route CRDs in the virtual cluster.
	virtualDyn := dynamic.NewForConfigOrDie(restConfigOf(t, vkc)).Resource(httpRoutes).Namespace("default")
	var lastErr error
	t.Cleanup(func() {
		if t.Failed() {
			crds, _ := exec.Command("kubectl", "--kubeconfig", vkc, "get", "crd").CombinedOutput()
			t.Logf("last error listing virtual routes: %v\n%s\n%s", lastErr, kubectl(t, vkc, "", "get", "events", "-A"), crds)
		}
	})
	poll(t, 60*time.Second, "HTTPRoute served in the virtual cluster", func(ctx context.Context) (bool, error) {
		_, err := virtualDyn.List(ctx, metav1.ListOptions{})
		if ctx.Err() == nil {
			lastErr = err
		}
		return err == nil, nil
	})
	// The host's GatewayClass is there, read-only, with its status.
	kubectl(t, hk, "", "patch", "gatewayclass", class, "--subresource=status", "--type=merge", "-p",
		`{"status":{"conditions":[{"type":"Accepted","status":"True","reason":"Accepted","message":"ok","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}`)
	poll(t, 60*time.Second, "the host's GatewayClass in the virtual cluster", func(ctx context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", vkc, "get", "gatewayclass", class, "-o",
			`jsonpath={.spec.controllerName} {.status.conditions[?(@.type=="Accepted")].status}`).Output()
		return err == nil && string(out) == "example.com/gateway True", nil
	})
	if out := kubectlFails(t, vkc, "delete", "gatewayclass", class); !strings.Contains(out, "read-only in this virtual cluster") {
		t.Errorf("deleting the host's GatewayClass: %s, want the read-only refusal", out)
	}

	// The Gateways its routes may attach to are there too, read-only, with
	// the addresses the Gateway controller gave them; others are not.
	for _, gw := range []string{"shared-gw", "other-gw"} {
		_ = exec.Command("kubectl", "--kubeconfig", hk, "create", "namespace", gw).Run()
		kubectl(t, hk, fmt.Sprintf("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: public, namespace: %s}\n"+
			"spec: {gatewayClassName: %s, listeners: [{name: http, port: 80, protocol: HTTP}]}\n", gw, class), "apply", "-f", "-")
		t.Cleanup(func() {
			_ = exec.Command("kubectl", "--kubeconfig", hk, "delete", "gateway", "public", "-n", gw, "--ignore-not-found").Run()
		})
	}
	kubectl(t, hk, "", "patch", "gateway", "public", "-n", "shared-gw", "--subresource=status", "--type=merge", "-p",
		`{"status":{"addresses":[{"type":"IPAddress","value":"203.0.113.10"}]}}`)
	poll(t, 60*time.Second, "the allowed Gateway and its address in the virtual cluster", func(ctx context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", vkc, "get", "gateway", "public", "-n", "shared-gw", "-o", "jsonpath={.status.addresses[0].value}").Output()
		return err == nil && string(out) == "203.0.113.10", nil
	})
	if out := kubectlFails(t, vkc, "delete", "gateway", "public", "-n", "shared-gw"); !strings.Contains(out, "read-only in this virtual cluster") {
		t.Errorf("deleting the host's Gateway: %s, want the read-only refusal", out)
	}
	if out, err := exec.Command("kubectl", "--kubeconfig", vkc, "get", "gateways", "-A", "-o", "name").CombinedOutput(); err != nil ||
		strings.TrimSpace(string(out)) != "gateway.gateway.networking.k8s.io/public" {
		t.Errorf("virtual Gateways: %s (%v), want only shared-gw/public", out, err)
	}

	route := func(name, parent, host, backendNS string) string {
		backend := "web"
		if backendNS != "" {
			backend += ", namespace: " + backendNS
		}
		return fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: %s, namespace: default}
spec:
  parentRefs: [{name: public, namespace: %s}]
  hostnames: [%q]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: %s, port: 80}]
`, name, parent, host, backend)
	}
	kubectl(t, vkc, route("shop", "shared-gw", "shop.routes.apps.example.com", "")+"---\n"+
		route("elsewhere", "other-gw", "x.routes.apps.example.com", "")+"---\n"+
		route("crossns", "shared-gw", "y.routes.apps.example.com", "kube-system")+"---\n"+
		route("steal", "shared-gw", "shop.example.com", ""), "apply", "-f", "-")

	hostDyn := dynamic.NewForConfigOrDie(host.Config).Resource(httpRoutes).Namespace(ns)
	h := waitObject(t, hostDyn, "shop-x-default-x-routes", "the host copy of the route")
	parents, _, _ := unstructured.NestedSlice(h.Object, "spec", "parentRefs")
	rules, _, _ := unstructured.NestedSlice(h.Object, "spec", "rules")
	backend := rules[0].(map[string]interface{})["backendRefs"].([]interface{})[0].(map[string]interface{})
	if len(parents) != 1 || parents[0].(map[string]interface{})["namespace"] != "shared-gw" || backend["name"] != "web-x-default-x-routes" || backend["namespace"] != nil {
		t.Errorf("host route parents %v backend %v: want the allowed Gateway and the host copy of Service web", parents, backend)
	}
	if h.GetLabels()[translate.LabelCopyOf] != "routes" {
		t.Errorf("host route labels %v", h.GetLabels())
	}

	// The Gateway controller accepts it; the status comes back.
	status := map[string]interface{}{"parents": []interface{}{map[string]interface{}{
		"parentRef":      map[string]interface{}{"group": gatewayv1.GroupName, "kind": "Gateway", "name": "public", "namespace": "shared-gw"},
		"controllerName": "example.com/gateway",
		"conditions": []interface{}{map[string]interface{}{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "attached",
			"lastTransitionTime": time.Now().UTC().Format(time.RFC3339), "observedGeneration": h.GetGeneration()}},
	}}}
	h.Object["status"] = status
	if _, err := hostDyn.UpdateStatus(ctx, h, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 60*time.Second, "the route's status in the virtual cluster", func(ctx context.Context) (bool, error) {
		v, err := virtualDyn.Get(ctx, "shop", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		ps, _, _ := unstructured.NestedSlice(v.Object, "status", "parents")
		return len(ps) == 1 && strings.Contains(fmt.Sprint(ps[0]), "example.com/gateway") && strings.Contains(fmt.Sprint(ps[0]), "Accepted"), nil
	})

	// A host name another host namespace's route already serves on the
	// same Gateway is left out of the copy.
	other := createNamespace(t, host.Client, "other-team")
	kubectl(t, hk, fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: theirs, namespace: %s}
spec:
  parentRefs: [{name: public, namespace: shared-gw}]
  hostnames: [taken.routes.apps.example.com]
`, other), "apply", "-f", "-")
	kubectl(t, vkc, `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: grab, namespace: default}
spec:
  parentRefs: [{name: public, namespace: shared-gw}]
  hostnames: [taken.routes.apps.example.com, free.routes.apps.example.com]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: grab-all, namespace: default}
spec:
  parentRefs: [{name: public, namespace: shared-gw}]
  hostnames: [taken.routes.apps.example.com]
`, "apply", "-f", "-")
	poll(t, 60*time.Second, "the host copy of a route with one host name taken", func(ctx context.Context) (bool, error) {
		g, err := hostDyn.Get(ctx, "grab-x-default-x-routes", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		names, _, _ := unstructured.NestedStringSlice(g.Object, "spec", "hostnames")
		return strings.Join(names, ",") == "free.routes.apps.example.com", nil
	})

	// Refused routes: an event each, and no host copy (the events come
	// after the syncer decided).
	vc := clientOf(t, vkc)
	waitEvent(t, vc, "default", "HTTPRoute", "grab", "RestrictedByIsolation", `hostnames "taken.routes.apps.example.com" (served on the same Gateway for another host namespace)`)
	waitEvent(t, vc, "default", "HTTPRoute", "grab-all", "RestrictedByIsolation", "served on the same Gateway for another host namespace")
	waitEvent(t, vc, "default", "HTTPRoute", "elsewhere", "RestrictedByIsolation", "parentRef other-gw/public")
	waitEvent(t, vc, "default", "HTTPRoute", "crossns", "RestrictedByIsolation", "another namespace")
	waitEvent(t, vc, "default", "HTTPRoute", "steal", "RestrictedByIsolation", `hostname "shop.example.com" is outside isolation.ingresses.allowedHosts`)
	for _, name := range []string{"elsewhere", "crossns", "steal", "grab-all"} {
		if _, err := hostDyn.Get(ctx, name+"-x-default-x-routes", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("refused route %s has a host copy (%v)", name, err)
		}
	}

	kubectl(t, vkc, "", "delete", "httproute", "shop", "-n", "default")
	poll(t, 60*time.Second, "the host copy gone with the route", func(ctx context.Context) (bool, error) {
		_, err := hostDyn.Get(ctx, "shop-x-default-x-routes", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})

	// Deleting the virtual cluster deletes its host routes.
	kubectl(t, vkc, route("kept", "shared-gw", "kept.routes.apps.example.com", ""), "apply", "-f", "-")
	poll(t, 60*time.Second, "the host copy of the second route", func(ctx context.Context) (bool, error) {
		_, err := hostDyn.Get(ctx, "kept-x-default-x-routes", metav1.GetOptions{})
		return err == nil, nil
	})
	kubectl(t, hk, "", "delete", "virtualcluster", "routes", "-n", ns, "--timeout=60s")
	if l, err := hostDyn.List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 0 {
		t.Errorf("host routes left after the virtual cluster was deleted: %v (%v)", l, err)
	}
}

// waitObject polls r until it has object name (what, for the failure),
// and returns it.
func waitObject(t *testing.T, r dynamic.ResourceInterface, name, what string) *unstructured.Unstructured {
	t.Helper()
	var u *unstructured.Unstructured
	poll(t, 60*time.Second, what, func(ctx context.Context) (bool, error) {
		var err error
		u, err = r.Get(ctx, name, metav1.GetOptions{})
		return err == nil, nil
	})
	return u
}
