package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestAgentWarmPool: an agent with --warm-pool 2 hands started control
// planes to new virtual clusters. A cluster taken from the pool is
// indistinguishable from a fresh one: its own CA and service-account key
// (a token of one is refused by the other), its own kube-system UID, the
// same objects as a cluster started fresh and none of another tenant's;
// its syncer runs with its own name and namespace. The pool refills, a
// deleted cluster's member is gone, and a restarted agent adopts the
// members instead of starting more.
func TestAgentWarmPool(t *testing.T) {
	needHost(t)
	stateDir := t.TempDir()
	t.Cleanup(func() { killChildren(stateDir) })
	agent := startAgent(t, stateDir, "--warm-pool", "2")
	ns := createNamespace(t, host.Client, "vc-pool")
	t.Cleanup(func() {
		_ = exec.Command("kubectl", "--kubeconfig", host.Kubeconfig, "delete", "virtualclusters", "--all", "-n", ns, "--timeout=60s").Run()
	})
	hk := host.Kubeconfig
	freeReady := func() []string {
		var out []string
		dirs, _ := filepath.Glob(filepath.Join(stateDir, "pool", "*"))
		for _, d := range dirs {
			_, owned := os.Stat(filepath.Join(d, "owner"))
			_, ready := os.Stat(filepath.Join(d, "data", "admin.kubeconfig"))
			if owned != nil && ready == nil {
				out = append(out, d)
			}
		}
		return out
	}
	waitPoolFull := func() []string {
		t.Helper()
		poll(t, 120*time.Second, "2 ready members in the warm pool", func(context.Context) (bool, error) { return len(freeReady()) == 2, nil })
		return freeReady()
	}
	create := func(name, values string) string {
		t.Helper()
		kubectl(t, hk, fmt.Sprintf("apiVersion: storage.loft.sh/v1\nkind: VirtualCluster\nmetadata: {name: %s, namespace: %s}\nspec:\n  helmRelease:\n    values: |\n%s", name, ns, indent(values, "      ")), "apply", "-f", "-")
		kubectl(t, hk, "", "wait", "--for=jsonpath={.status.phase}=Ready", "virtualcluster/"+name, "-n", ns, "--timeout=120s")
		return publishedKubeconfig(t, ns, name)
	}
	memberOf := func(name string) string {
		target, _ := os.Readlink(filepath.Join(stateDir, "vclusters", ns, name))
		return target
	}

	members := waitPoolFull()
	one := create("one", "sync:\n  poddisruptionbudgets:\n    enabled: true\n")
	two := create("two", "{}\n")
	// Values that change the control plane: started fresh.
	fresh := create("fresh", "virtualCluster:\n  extraArgs: [--datastore=etcd]\n")
	for name, want := range map[string]bool{"one": true, "two": true, "fresh": false} {
		if m := memberOf(name); (m != "") != want || (want && !slices.Contains(members, m)) {
			t.Errorf("virtual cluster %s: linked to pool member %q, want taken from the pool %v (members %v)", name, m, want, members)
		}
	}

	// Each its own CA.
	ca := func(kubeconfig string) string {
		return kubectl(t, kubeconfig, "", "config", "view", "--raw", "-o", "jsonpath={.clusters[0].cluster.certificate-authority-data}")
	}
	if a, b, c := ca(one), ca(two), ca(fresh); a == "" || a == b || a == c || b == c {
		t.Errorf("virtual clusters share a CA: one %.20s… two %.20s… fresh %.20s…", a, b, c)
	}
	// Each its own service-account key: one's token works in one only.
	waitSA := func(kubeconfig string) {
		poll(t, 60*time.Second, "the default service account", func(context.Context) (bool, error) {
			return exec.Command("kubectl", "--kubeconfig", kubeconfig, "get", "serviceaccount", "default", "-n", "default").Run() == nil, nil
		})
	}
	waitSA(one)
	token := strings.TrimSpace(kubectl(t, one, "", "create", "token", "default", "-n", "default"))
	server := func(kubeconfig string) string {
		return kubectl(t, kubeconfig, "", "config", "view", "--raw", "-o", "jsonpath={.clusters[0].cluster.server}")
	}
	whoami := func(kubeconfig string) (string, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", "/dev/null", "--server", server(kubeconfig), "--insecure-skip-tls-verify", "--token", token,
			"auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").CombinedOutput()
		return string(out), err
	}
	if out, err := whoami(one); err != nil || out != "system:serviceaccount:default:default" {
		t.Errorf("one's token in one: %q, %v", out, err)
	}
	if out, err := whoami(two); err == nil || !strings.Contains(out, "Unauthorized") {
		t.Errorf("one's token was accepted by two (a shared service-account key): %q, %v", out, err)
	}
	uid := func(kubeconfig string) string {
		return kubectl(t, kubeconfig, "", "get", "namespace", "kube-system", "-o", "jsonpath={.metadata.uid}")
	}
	if a, b, c := uid(one), uid(two), uid(fresh); a == b || a == c || b == c {
		t.Errorf("kube-system UIDs repeat: %s %s %s", a, b, c)
	}

	// The same objects as a fresh cluster, once the controllers settled
	// (default service accounts, root CA configmaps, the DNS service).
	objects := func(kubeconfig string) string {
		out := kubectl(t, kubeconfig, "", "get", "namespaces,serviceaccounts,configmaps,secrets,services,roles,rolebindings,clusterroles,clusterrolebindings,priorityclasses,flowschemas,prioritylevelconfigurations,leases",
			"-A", "-o", `jsonpath={range .items[*]}{.kind} {.metadata.namespace}/{.metadata.name}{"\n"}{end}`)
		var lines []string
		for _, l := range strings.Split(out, "\n") {
			// Leases name their holder (a per-process ID) or are per process.
			if l != "" && !strings.HasPrefix(l, "Lease ") {
				lines = append(lines, l)
			}
		}
		slices.Sort(lines)
		return strings.Join(lines, "\n")
	}
	var a, b string
	poll(t, 60*time.Second, "the same objects in a pooled and a fresh virtual cluster", func(context.Context) (bool, error) {
		a, b = objects(two), objects(fresh)
		return a == b, nil
	})
	if a != b {
		t.Errorf("pooled and fresh virtual clusters differ:\npooled:\n%s\nfresh:\n%s", a, b)
	}

	// Its syncer is its own: a pod lands in the host namespace under its name.
	kubectl(t, two, "", "run", "web", "--image=nginx")
	poll(t, 60*time.Second, "two's pod on the host", func(context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", hk, "get", "pod", "web-x-default-x-two", "-n", ns, "-o", "jsonpath={.status.phase}").Output()
		return err == nil && string(out) == "Running", nil
	})

	// Nothing of a deleted tenant reaches the next: one's member goes with it.
	kubectl(t, one, "", "create", "namespace", "tenant-one-private")
	oneMember := memberOf("one")
	kubectl(t, hk, "", "delete", "virtualcluster", "one", "-n", ns, "--timeout=60s")
	if _, err := os.Lstat(filepath.Join(stateDir, "vclusters", ns, "one")); err == nil {
		t.Error("one's link is left after its deletion")
	}
	if _, err := os.Stat(oneMember); err == nil {
		t.Errorf("one's pool member %s is left after its deletion", oneMember)
	}

	// Refilled; a restarted agent adopts the members instead of starting more.
	before := waitPoolFull()
	agent.Kill()
	startAgent(t, stateDir, "--warm-pool", "2")
	three := create("three", "{}\n")
	if m := memberOf("three"); !slices.Contains(before, m) {
		t.Errorf("three took %q, not a member the earlier agent started (%v)", m, before)
	}
	if out := kubectl(t, three, "", "get", "namespaces", "-o", "name"); strings.Contains(out, "tenant-one-private") {
		t.Errorf("three sees a namespace of deleted cluster one:\n%s", out)
	}
	after := waitPoolFull()
	// Members started by either agent: two's, three's and the 2 free ones;
	// with fresh's, all of this agent's processes.
	if pool, all := processesWith(filepath.Join(stateDir, "pool")+"/"), processesWith(stateDir+"/"); pool != 4 || all != 5 {
		t.Errorf("after the agent restart: %d processes of pool members (want 4), %d in all (want 5); free members %v, before the restart %v",
			pool, all, after, before)
	}
}
