package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sublet-dev/sublet/internal/testenv"
)

// BenchmarkVirtualClusterCreate: under the agent (process runtime), apply
// SUBLET_BENCH_VCS VirtualClusters (default 10) one after another and
// report p50 of apply → phase Ready and apply → first successful `kubectl
// get namespaces` with the published kubeconfig; then, with all of them
// idle for idleWait, the memory each costs (drop of MemAvailable, PSS);
// then p50 of delete → the namespace holds nothing of it. With
// SUBLET_BENCH_POOL=N the agent keeps a warm pool of N control planes, and
// each apply waits (untimed) until the pool is full again.
func BenchmarkVirtualClusterCreate(b *testing.B) {
	n := envInt("SUBLET_BENCH_VCS", 10)
	pool := envInt("SUBLET_BENCH_POOL", 0)
	ctx := context.Background()
	h, err := testenv.StartHost(ctx, b.TempDir(), 2)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Kill()
	stateDir := b.TempDir()
	agent, _, err := testenv.StartUntil(ctx, "Sublet agent is running", "agent", "--kubeconfig", h.Kubeconfig,
		"--state-dir", stateDir, "--metrics-bind-address", "0", "--leader-elect=false", "--warm-pool", strconv.Itoa(pool))
	if err != nil {
		b.Fatal(err)
	}
	defer agent.Kill()
	defer killPidFiles(stateDir)
	kubectl := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command("kubectl", append([]string{"--kubeconfig", h.Kubeconfig}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	memBefore, err := memAvailableKiB()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var ready, firstGet []float64
	for i := 0; i < n; i++ {
		ns := fmt.Sprintf("bench-vc-%d", i)
		if _, err := h.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		manifest := fmt.Sprintf("apiVersion: storage.loft.sh/v1\nkind: VirtualCluster\nmetadata: {name: vc, namespace: %s}\n", ns)
		waitPoolFull(b, stateDir, pool)
		t0 := time.Now()
		if out, err := kubectl(manifest, "apply", "-f", "-"); err != nil {
			b.Fatalf("%v\n%s", err, out)
		}
		for {
			out, _ := kubectl("", "get", "vc", "vc", "-n", ns, "-o", "jsonpath={.status.phase}")
			if out == "Ready" {
				break
			}
			if time.Since(t0) > 2*time.Minute {
				b.Fatalf("%s not Ready: %s", ns, out)
			}
			time.Sleep(20 * time.Millisecond)
		}
		ready = append(ready, time.Since(t0).Seconds())
		cfg, err := h.Client.CoreV1().Secrets(ns).Get(ctx, "vc-vc", metav1.GetOptions{})
		if err != nil {
			b.Fatal(err)
		}
		path := filepath.Join(b.TempDir(), "vc.kubeconfig")
		if err := os.WriteFile(path, cfg.Data["config"], 0o600); err != nil {
			b.Fatal(err)
		}
		for exec.Command("kubectl", "--kubeconfig", path, "get", "namespaces").Run() != nil {
			time.Sleep(20 * time.Millisecond)
		}
		firstGet = append(firstGet, time.Since(t0).Seconds())
	}
	b.StopTimer()
	time.Sleep(idleWait)
	memAfter, err := memAvailableKiB()
	if err != nil {
		b.Fatal(err)
	}
	var pss float64
	for _, pid := range pidFiles(stateDir) {
		if m, err := readRollup(pid); err == nil {
			pss += m["Pss"]
		}
	}
	var deleted []float64
	for i := 0; i < n; i++ {
		ns := fmt.Sprintf("bench-vc-%d", i)
		t0 := time.Now()
		if out, err := kubectl("", "delete", "vc", "vc", "-n", ns, "--timeout=60s"); err != nil {
			b.Fatalf("%v\n%s", err, out)
		}
		for {
			out, _ := kubectl("", "get", "pods,services,secrets,serviceaccounts,roles", "-n", ns, "-o", "name")
			if !strings.Contains(out, "vc") {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		deleted = append(deleted, time.Since(t0).Seconds())
	}
	b.ReportMetric(median(ready), "s-apply-to-Ready-p50")
	b.ReportMetric(median(firstGet), "s-apply-to-get-ns-p50")
	b.ReportMetric((memBefore-memAfter)/float64(n)/1024, "MiB-avail-lost/vc")
	b.ReportMetric(pss/float64(n)/1024, "MiB-PSS/vc")
	b.ReportMetric(median(deleted), "s-delete-to-clean-p50")
	b.ReportMetric(0, "ns/op")
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// waitPoolFull waits until the agent's warm pool holds n ready, unassigned
// control planes.
func waitPoolFull(b *testing.B, stateDir string, n int) {
	b.Helper()
	for deadline := time.Now().Add(3 * time.Minute); n > 0; time.Sleep(50 * time.Millisecond) {
		ready := 0
		dirs, _ := filepath.Glob(filepath.Join(stateDir, "pool", "*"))
		for _, d := range dirs {
			_, owned := os.Stat(filepath.Join(d, "owner"))
			_, serving := os.Stat(filepath.Join(d, "data", "admin.kubeconfig"))
			if owned != nil && serving == nil {
				ready++
			}
		}
		if ready >= n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("warm pool: %d of %d ready after 3m", ready, n)
		}
	}
}

// pidFiles are the pids of the virtual clusters under stateDir (pooled
// ones through their links).
func pidFiles(stateDir string) []int {
	return pidsIn(filepath.Join(stateDir, "vclusters", "*", "*", "pid"))
}

func pidsIn(pattern string) []int {
	var pids []int
	for _, pid := range pidsByFile(pattern) {
		pids = append(pids, pid)
	}
	return pids
}

// pidsByFile reads the pid files that match pattern, by path.
func pidsByFile(pattern string) map[string]int {
	files, _ := filepath.Glob(pattern)
	pids := map[string]int{}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			pids[f] = pid
		}
	}
	return pids
}

func killPidFiles(stateDir string) {
	for _, pid := range append(pidFiles(stateDir), pidsIn(filepath.Join(stateDir, "pool", "*", "pid"))...) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
