package kinds

import (
	"sort"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// rights flattens rules to "group resource verb" lines, so rules that
// grant the same are equal however they are grouped.
func rights(rules []rbacv1.PolicyRule) []string {
	var out []string
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					out = append(out, g+" "+res+" "+v)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

func expand(group string, resources, verbs []string) []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{{APIGroups: []string{group}, Resources: resources, Verbs: verbs}}
}

// TestHostRules: the syncer's host rights are those it had before the table
// derived them, plus PodDisruptionBudgets; nodes only cluster-wide.
func TestHostRules(t *testing.T) {
	all := []string{"get", "list", "watch", "create", "update", "patch", "delete"}
	var want []rbacv1.PolicyRule
	for _, r := range [][]rbacv1.PolicyRule{
		expand("", []string{"pods", "services", "endpoints", "configmaps", "secrets", "persistentvolumeclaims", "events"}, all),
		expand("", []string{"pods/log", "pods/exec", "pods/attach", "pods/portforward"}, []string{"get", "create"}),
		expand("", []string{"services/proxy", "pods/proxy"}, []string{"get", "create", "update", "patch", "delete"}),
		expand("networking.k8s.io", []string{"ingresses", "networkpolicies"}, all),
		expand("gateway.networking.k8s.io", []string{"httproutes", "grpcroutes", "tlsroutes"}, all),
		expand("discovery.k8s.io", []string{"endpointslices"}, all),
		expand("policy", []string{"poddisruptionbudgets"}, all),
	} {
		want = append(want, r...)
	}
	if got, w := strings.Join(rights(HostRules()), "\n"), strings.Join(rights(want), "\n"); got != w {
		t.Errorf("host namespace rights:\n%s\nwant:\n%s", got, w)
	}
	// Cluster-wide: reading nodes, every namespace's ingresses and the
	// host's classes; nothing else, and no writes.
	read := []string{"get", "list", "watch"}
	var wantCluster []rbacv1.PolicyRule
	for _, r := range [][]rbacv1.PolicyRule{
		expand("", []string{"nodes"}, read),
		expand("networking.k8s.io", []string{"ingresses", "ingressclasses"}, read),
		expand("storage.k8s.io", []string{"storageclasses", "csidrivers"}, read),
		expand("scheduling.k8s.io", []string{"priorityclasses"}, read),
		expand("node.k8s.io", []string{"runtimeclasses"}, read),
		expand("gateway.networking.k8s.io", []string{"httproutes", "grpcroutes", "tlsroutes", "gatewayclasses", "gateways"}, read),
		expand("apiextensions.k8s.io", []string{"customresourcedefinitions"}, read),
	} {
		wantCluster = append(wantCluster, r...)
	}
	if got, w := strings.Join(rights(HostClusterRules()), "\n"), strings.Join(rights(wantCluster), "\n"); got != w {
		t.Errorf("cluster rights:\n%s\nwant:\n%s", got, w)
	}
	// CRDs are read by name only.
	for _, r := range HostClusterRules() {
		if r.APIGroups[0] == "apiextensions.k8s.io" && strings.Join(r.ResourceNames, ",") != "httproutes.gateway.networking.k8s.io,grpcroutes.gateway.networking.k8s.io,tlsroutes.gateway.networking.k8s.io,gatewayclasses.gateway.networking.k8s.io,gateways.gateway.networking.k8s.io" {
			t.Errorf("CRD rule %+v, want get on the Gateway API's CRDs by name", r)
		}
	}
	// One rule per group and verb set.
	seen := map[string]bool{}
	for _, r := range HostRules() {
		key := r.APIGroups[0] + "|" + strings.Join(r.Verbs, ",")
		if seen[key] {
			t.Errorf("two rules for %s", key)
		}
		seen[key] = true
	}
}

func TestTable(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range All() {
		if seen[k.Name] {
			t.Errorf("kind %s twice", k.Name)
		}
		seen[k.Name] = true
		if k.Host.Resource == "" || k.Host.Version == "" || k.Kind == "" || len(k.Verbs) == 0 {
			t.Errorf("kind %s: resource %v, kind %q, verbs %v", k.Name, k.Host, k.Kind, k.Verbs)
		}
		if k.FromHost && (!k.ClusterScoped && !k.ClusterRead || strings.Join(k.Verbs, ",") != "get,list,watch") {
			t.Errorf("kind %s: a kind copied from the host is read cluster-wide, and only read there", k.Name)
		}
		if k.DeleteWithCluster && k.ClusterScoped {
			t.Errorf("kind %s: cluster-scoped host objects are not the cluster's to delete", k.Name)
		}
	}
	// A row's verbs are its own: changing one changes no other row.
	a := All()
	a[0].Verbs[0] = "changed"
	if All()[1].Verbs[0] == "changed" || All()[0].Verbs[0] == "changed" {
		t.Error("rows share verb slices")
	}
}

func TestSelection(t *testing.T) {
	sel, err := Selection(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !sel[Pods] || !sel[Ingresses] || sel[PodDisruptionBudgets] {
		t.Errorf("defaults %v: pods and ingresses on, poddisruptionbudgets off", sel)
	}
	sel, err = Selection([]string{" poddisruptionbudgets", ""}, []string{"ingresses"})
	if err != nil {
		t.Fatal(err)
	}
	if !sel[PodDisruptionBudgets] || sel[Ingresses] {
		t.Errorf("selection %v", sel)
	}
	if _, err := Selection([]string{"gadgets"}, nil); err == nil || !strings.Contains(err.Error(), "poddisruptionbudgets") {
		t.Errorf("unknown name: %v, want an error listing the known ones", err)
	}
}
