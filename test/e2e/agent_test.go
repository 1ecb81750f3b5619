package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/version"

	"github.com/sublet-dev/sublet/internal/testenv"
)

// startAgent runs `sublet agent` against the shared host with state in
// stateDir. Virtual clusters it started outlive it (they run in their own
// sessions), so the test's cleanup kills those too.
func startAgent(t *testing.T, stateDir string) *testenv.Process {
	t.Helper()
	p, _, err := testenv.StartUntil(context.Background(), "Sublet agent is running",
		"agent", "--kubeconfig", host.Kubeconfig, "--state-dir", stateDir, "--metrics-bind-address", "0", "--leader-elect=false")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p
}

// killChildren ends every virtual cluster process under stateDir.
func killChildren(stateDir string) {
	pids, _ := filepath.Glob(filepath.Join(stateDir, "vclusters", "*", "*", "pid"))
	for _, f := range pids {
		b, _ := os.ReadFile(f)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// processesWith counts running processes whose command line contains s.
func processesWith(s string) int {
	n := 0
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err == nil && strings.Contains(string(b), s) && !strings.Contains(string(b), "go\x00test") {
			n++
		}
	}
	return n
}

// seedManifest is the seed's vcluster.yaml with its placeholders filled.
func seedManifest(name, namespace, serviceCIDR string) string {
	return fmt.Sprintf(`apiVersion: storage.loft.sh/v1
kind: VirtualCluster
metadata:
  name: %s # REPLACE THIS
  namespace: %s # REPLACE THIS
spec:
  helmRelease:
    values: >-
      virtualCluster:
        image: rancher/k3s:v1.21.2-k3s1
        extraArgs:
          - --service-cidr=%s # REPLACE THIS
`, name, namespace, serviceCIDR)
}

// TestAgentSeedManifest: the seed's `kubectl apply -f vcluster.yaml` comes
// up Ready under the agent, is reachable with the published kubeconfig,
// survives an agent restart without a second process, reports invalid
// values, and deleting it removes everything it owned.
func TestAgentSeedManifest(t *testing.T) {
	needHost(t)
	stateDir := t.TempDir()
	t.Cleanup(func() { killChildren(stateDir) })
	agent := startAgent(t, stateDir)
	ns := createNamespace(t, host.Client, "vc-agent")
	hk := host.Kubeconfig

	kubectl(t, hk, seedManifest("demo", ns, "10.96.0.0/16"), "apply", "-f", "-")
	kubectl(t, hk, "", "wait", "--for=jsonpath={.status.phase}=Ready", "virtualcluster/demo", "-n", ns, "--timeout=120s")
	table := kubectl(t, hk, "", "get", "virtualclusters", "-n", ns)
	if !strings.Contains(table, "PHASE") || !strings.Contains(table, "VERSION") || !strings.Contains(table, "Ready") {
		t.Errorf("kubectl get virtualclusters:\n%s", table)
	}
	statusVersion := kubectl(t, hk, "", "get", "vc", "demo", "-n", ns, "-o", "jsonpath={.status.kubernetesVersion}")
	fallback := kubectl(t, hk, "", "get", "vc", "demo", "-n", ns, "-o", `jsonpath={.status.conditions[?(@.type=="VersionFallback")].status}`)
	if fallback != "True" {
		t.Errorf("VersionFallback condition %q, want True for k3s v1.21.2", fallback)
	}
	events := kubectl(t, hk, "", "get", "events", "-n", ns, "--field-selector", "reason=VersionFallback", "-o", "jsonpath={.items[*].message}")
	if !strings.Contains(events, "1.21.2") || !strings.Contains(events, strings.TrimPrefix(statusVersion, "v")) {
		t.Errorf("VersionFallback event %q does not name both versions (running %s)", events, statusVersion)
	}

	// The published admin kubeconfig reaches the virtual cluster.
	vkc := filepath.Join(t.TempDir(), "vc.kubeconfig")
	cfg := kubectl(t, hk, "", "get", "secret", "vc-demo", "-n", ns, "-o", "jsonpath={.data.config}")
	cmd := exec.Command("base64", "-d")
	cmd.Stdin = strings.NewReader(cfg)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vkc, out, 0o600); err != nil {
		t.Fatal(err)
	}
	nsList := kubectl(t, vkc, "", "get", "namespaces", "-o", "name")
	for _, want := range []string{"namespace/default", "namespace/kube-system", "namespace/kube-public"} {
		if !strings.Contains(nsList, want) {
			t.Errorf("virtual cluster namespaces lack %s:\n%s", want, nsList)
		}
	}
	var v version.Info
	if err := json.Unmarshal([]byte(kubectl(t, vkc, "", "get", "--raw", "/version")), &v); err != nil {
		t.Fatal(err)
	}
	if served := "v" + v.EmulationMajor + "." + v.EmulationMinor; served != statusVersion {
		t.Errorf("/version serves %s (git %s), status.kubernetesVersion says %s", served, v.GitVersion, statusVersion)
	}
	kubectl(t, vkc, "", "create", "deployment", "web", "--image=nginx")
	poll(t, 60*time.Second, "the virtual cluster's pod on the host", func(ctx context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", hk, "get", "pods", "-n", ns, "-l", "sublet.dev/managed-by=demo", "-o", "name").Output()
		return err == nil && strings.Count(string(out), "pod/") == 1, nil
	})

	// The agent restarts: it adopts the running virtual cluster.
	dataDir := filepath.Join(stateDir, "vclusters", ns, "demo", "data")
	pidBefore, _ := os.ReadFile(filepath.Join(stateDir, "vclusters", ns, "demo", "pid"))
	agent.Kill()
	startAgent(t, stateDir)
	time.Sleep(3 * time.Second) // a few reconciles
	pidAfter, _ := os.ReadFile(filepath.Join(stateDir, "vclusters", ns, "demo", "pid"))
	if string(pidBefore) != string(pidAfter) || processesWith(dataDir) != 1 {
		t.Errorf("after an agent restart: pid %s → %s, %d processes for the data dir", pidBefore, pidAfter, processesWith(dataDir))
	}
	kubectl(t, hk, "", "wait", "--for=jsonpath={.status.phase}=Ready", "virtualcluster/demo", "-n", ns, "--timeout=30s")

	// Invalid values: Failed, with the path and the reason.
	kubectl(t, hk, `apiVersion: storage.loft.sh/v1
kind: VirtualCluster
metadata:
  name: broken
spec:
  helmRelease:
    values: |
      virtualCluster:
        imag: rancher/k3s:v1.35.0-k3s1
`, "apply", "-n", ns, "-f", "-")
	kubectl(t, hk, "", "wait", "--for=jsonpath={.status.phase}=Failed", "virtualcluster/broken", "-n", ns, "--timeout=30s")
	msg := kubectl(t, hk, "", "get", "vc", "broken", "-n", ns, "-o", `jsonpath={.status.conditions[?(@.type=="ValuesValid")].message}`)
	if !strings.Contains(msg, "virtualCluster.imag") {
		t.Errorf("ValuesValid message %q does not name the bad key", msg)
	}

	// Deleting it stops the runtime and removes what it owned.
	kubectl(t, hk, "", "delete", "virtualcluster", "demo", "-n", ns, "--timeout=60s")
	if n := processesWith(dataDir); n != 0 {
		t.Errorf("%d processes still run the deleted virtual cluster", n)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "vclusters", ns, "demo")); !os.IsNotExist(err) {
		t.Errorf("data of the deleted virtual cluster left (%v)", err)
	}
	left := kubectl(t, hk, "", "get", "pods,services,configmaps,secrets,serviceaccounts,roles,rolebindings", "-n", ns, "-l", "sublet.dev/managed-by=demo", "-o", "name")
	left += kubectl(t, hk, "", "get", "serviceaccounts,roles,rolebindings,secrets", "-n", ns, "-o", "name")
	for _, l := range strings.Fields(left) {
		if strings.Contains(l, "demo") || strings.Contains(l, "-x-default-x-demo") {
			t.Errorf("host object of the deleted virtual cluster left: %s", l)
		}
	}
	kubectl(t, hk, "", "delete", "virtualcluster", "broken", "-n", ns, "--timeout=30s")

	// Deleting the namespace deletes its virtual cluster cleanly too.
	ns2 := createNamespace(t, host.Client, "vc-agent-ns")
	kubectl(t, hk, seedManifest("second", ns2, "10.96.0.0/16"), "apply", "-f", "-")
	kubectl(t, hk, "", "wait", "--for=jsonpath={.status.phase}=Ready", "virtualcluster/second", "-n", ns2, "--timeout=120s")
	kubectl(t, hk, "", "delete", "namespace", ns2, "--timeout=90s")
	if n := processesWith(filepath.Join(stateDir, "vclusters", ns2, "second", "data")); n != 0 {
		t.Errorf("%d processes still run the virtual cluster of the deleted namespace", n)
	}
}
