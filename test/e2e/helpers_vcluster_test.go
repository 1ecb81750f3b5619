package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/testenv"
)

// startVCluster runs `sublet vcluster run` against the shared host in a new
// host namespace and returns the process and that namespace.
func startVCluster(t *testing.T, name, hostNS string, extra ...string) *testenv.Process {
	t.Helper()
	vc, err := testenv.Start(context.Background(), t.TempDir(), append([]string{"vcluster", "run", "--name", name,
		"--host-kubeconfig", host.Kubeconfig, "--host-namespace", hostNS}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vc.Kill)
	return vc
}

// startAgent runs `sublet agent` against the shared host with state in
// stateDir. Virtual clusters it started outlive it (they run in their own
// sessions), so the test's cleanup kills those too.
func startAgent(t *testing.T, stateDir string, extra ...string) *testenv.Process {
	t.Helper()
	p, _, err := testenv.StartUntil(context.Background(), "Sublet agent is running",
		append([]string{"agent", "--kubeconfig", host.Kubeconfig, "--state-dir", stateDir, "--metrics-bind-address", "0", "--leader-elect=false"}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p
}

// agentWithNamespace starts an agent with a state dir of its own and makes
// a host namespace (prefix-…) for the test's VirtualClusters; both go, the
// VirtualClusters and their processes first, when the test ends.
func agentWithNamespace(t *testing.T, prefix string) (agent *testenv.Process, stateDir, ns string) {
	t.Helper()
	stateDir = t.TempDir()
	t.Cleanup(func() { killChildren(stateDir) })
	agent = startAgent(t, stateDir)
	ns = createNamespace(t, host.Client, prefix)
	t.Cleanup(func() {
		_ = exec.Command("kubectl", "--kubeconfig", host.Kubeconfig, "delete", "virtualclusters", "--all", "-n", ns, "--timeout=60s").Run()
	})
	return agent, stateDir, ns
}

// publishedKubeconfig writes the admin kubeconfig the agent published for
// virtual cluster ns/name (secret vc-NAME, key config) to a file.
func publishedKubeconfig(t *testing.T, ns, name string) string {
	t.Helper()
	return publishedKubeconfigFrom(t, host, ns, name)
}

// publishedKubeconfigFrom writes the admin kubeconfig the agent published
// in cluster c for virtual cluster ns/name.
func publishedKubeconfigFrom(t *testing.T, c *testenv.Process, ns, name string) string {
	t.Helper()
	s, err := c.Client.CoreV1().Secrets(ns).Get(context.Background(), "vc-"+name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name+".kubeconfig")
	if err := os.WriteFile(path, s.Data["config"], 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// vcStatus reads a VirtualCluster from the host with kubectl.
func vcStatus(t *testing.T, ns, name string) *storagev1.VirtualCluster {
	t.Helper()
	out, err := exec.Command("kubectl", "--kubeconfig", host.Kubeconfig, "get", "virtualcluster", name, "-n", ns, "-o", "json").Output()
	if err != nil {
		t.Fatalf("get virtualcluster %s/%s: %v", ns, name, err)
	}
	vc := &storagev1.VirtualCluster{}
	if err := json.Unmarshal(out, vc); err != nil {
		t.Fatal(err)
	}
	return vc
}

func waitVCPhase(t *testing.T, ns, name string, phase storagev1.VirtualClusterPhase, timeout time.Duration) *storagev1.VirtualCluster {
	t.Helper()
	var vc *storagev1.VirtualCluster
	poll(t, timeout, fmt.Sprintf("virtual cluster %s/%s %s", ns, name, phase), func(context.Context) (bool, error) {
		vc = vcStatus(t, ns, name)
		return vc.Status.Phase == phase && vc.Status.Reason != "Stopping", nil
	})
	return vc
}

// restConfigOf is the client config of kubeconfig file path.
func restConfigOf(t *testing.T, path string) *rest.Config {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// clientOf is a client of the cluster of kubeconfig file path.
func clientOf(t *testing.T, path string) kubernetes.Interface {
	t.Helper()
	return kubernetes.NewForConfigOrDie(restConfigOf(t, path))
}

// logsOnFailure prints the syncer's lines of every virtual cluster log
// under stateDir if the test failed.
func logsOnFailure(t *testing.T, stateDir string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		logs, _ := filepath.Glob(filepath.Join(stateDir, "vclusters", "*", "*", "data", "logs", "vcluster.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			var lines []string
			for _, line := range strings.Split(string(b), "\n") {
				if strings.Contains(line, "syncer") {
					lines = append(lines, line)
				}
			}
			if len(lines) > 60 {
				lines = lines[len(lines)-60:]
			}
			t.Logf("%s:\n%s", l, strings.Join(lines, "\n"))
		}
	})
}
