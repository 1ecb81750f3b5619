package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestAgentPodDisruptionBudgets: a kind that is off by default, turned on
// in values. The syncer runs with the agent's least-privilege host
// credentials (a Role derived from the kinds table), copies a virtual
// budget with its selector translated to this cluster's host pods, and
// deleting the virtual cluster removes the host copy.
func TestAgentPodDisruptionBudgets(t *testing.T) {
	needHost(t)
	_, _, ns := agentWithNamespace(t, "vc-pdb")
	hk := host.Kubeconfig
	kubectl(t, hk, fmt.Sprintf(`apiVersion: storage.loft.sh/v1
kind: VirtualCluster
metadata: {name: budget, namespace: %s}
spec:
  helmRelease:
    values: |
      sync:
        poddisruptionbudgets:
          enabled: true
`, ns), "apply", "-f", "-")
	kubectl(t, hk, "", "wait", "--for=jsonpath={.status.phase}=Ready", "virtualcluster/budget", "-n", ns, "--timeout=120s")

	// The syncer's host identity is namespaced and holds budgets' rights.
	role := kubectl(t, hk, "", "get", "role", "vc-budget-syncer", "-n", ns, "-o", `jsonpath={range .rules[*]}{.apiGroups} {.resources}{"\n"}{end}`)
	if !strings.Contains(role, `["policy"] ["poddisruptionbudgets"]`) {
		t.Errorf("syncer role lacks poddisruptionbudgets:\n%s", role)
	}
	if out, err := exec.Command("kubectl", "--kubeconfig", hk, "auth", "can-i", "list", "poddisruptionbudgets", "--all-namespaces",
		"--as", "system:serviceaccount:"+ns+":vc-budget-syncer").Output(); err == nil || strings.TrimSpace(string(out)) != "no" {
		t.Errorf("the syncer may list budgets in every namespace (%q, %v)", out, err)
	}

	vkc := publishedKubeconfig(t, ns, "budget")
	kubectl(t, vkc, `apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: default}
spec:
  minAvailable: 1
  selector:
    matchLabels: {app: web}
`, "apply", "-f", "-")
	var sel string
	poll(t, 60*time.Second, "the host copy of the budget", func(ctx context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", hk, "get", "pdb", "-n", ns, "-l", "sublet.dev/managed-by=budget",
			"-o", `jsonpath={range .items[*]}{.metadata.name} {.spec.minAvailable} {.spec.selector.matchLabels}{"\n"}{end}`).Output()
		name, rest, _ := strings.Cut(strings.TrimSpace(string(out)), " 1 ")
		sel = rest
		return err == nil && name == "web-x-default-x-budget", nil
	})
	// The selector is the tenant's, translated, and pinned to this virtual
	// cluster and namespace: no other tenant's pod matches.
	for _, want := range []string{`"sublet.dev/managed-by":"budget"`, `"sublet.dev/virtual-namespace":"default"`, `":"web"`} {
		if !strings.Contains(sel, want) {
			t.Errorf("host budget selector %q lacks %s", sel, want)
		}
	}
	if strings.Contains(sel, `"app":"web"`) {
		t.Errorf("host budget selector %q selects by the tenant's label untranslated", sel)
	}

	// Deleting the virtual cluster removes the host copy (the virtual
	// budget still exists: only the agent's cleanup can have removed it).
	kubectl(t, hk, "", "delete", "virtualcluster", "budget", "-n", ns, "--timeout=60s")
	if left := kubectl(t, hk, "", "get", "pdb", "-n", ns, "-o", "name"); strings.TrimSpace(left) != "" {
		t.Errorf("host budgets left after the virtual cluster was deleted: %s", left)
	}
}
