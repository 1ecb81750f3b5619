package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sublet-dev/sublet/internal/testenv"
)

// densityMemFloorKiB is the MemAvailable below which BenchmarkIdleDensity
// starts no further virtual cluster: the machine must not run out of
// memory under the measurement.
const densityMemFloorKiB = 3 << 20

// BenchmarkIdleDensity runs SUBLET_BENCH_DENSITY (40) idle virtual
// clusters (`sublet vcluster run`, started one after another on one host,
// each given SUBLET_BENCH_VCLUSTER_ARGS) and, SUBLET_BENCH_SETTLE (3m) after
// the last was ready, measures the CPU of each over SUBLET_BENCH_WINDOW
// (90s): the mean per cluster and the sum, both in % of one core, the
// host's, and how many such clusters fit in half of the machine's cores.
// It also reports the memory each costs (drop of MemAvailable, mean PSS).
// It starts no further cluster once MemAvailable is below 3 GiB. With
// SUBLET_BENCH_DENSITY_AGENT=1 the clusters are VirtualClusters applied
// with kubectl and run by `sublet agent` (process runtime), whose own CPU
// is reported too and counted with the host's.
func BenchmarkIdleDensity(b *testing.B) {
	n := envInt("SUBLET_BENCH_DENSITY", 40)
	settle := envDuration("SUBLET_BENCH_SETTLE", 3*time.Minute)
	window := envDuration("SUBLET_BENCH_WINDOW", 90*time.Second)
	ctx := context.Background()
	h, err := testenv.StartHost(ctx, b.TempDir(), 2)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Kill()
	before, err := memAvailableKiB()
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	var vcs []int
	agentPid := 0
	if os.Getenv("SUBLET_BENCH_DENSITY_AGENT") != "" {
		vcs, agentPid = densityUnderAgent(b, ctx, h, n)
	} else {
		vcs = densityRun(b, ctx, h, n)
	}
	b.Logf("%d virtual clusters ready in %s; idling %s, then measuring %s", len(vcs), time.Since(t0).Round(time.Second), settle, window)
	time.Sleep(settle)

	cpu0 := make([]float64, len(vcs))
	for i, pid := range vcs {
		cpu0[i] = cpuSeconds(pid)
	}
	host0, agent0, w0 := cpuSeconds(h.Pid()), 0.0, time.Now()
	if agentPid != 0 {
		agent0 = cpuSeconds(agentPid)
	}
	time.Sleep(window)
	elapsed := time.Since(w0).Seconds()
	var sum, peak float64
	for i, pid := range vcs {
		pct := (cpuSeconds(pid) - cpu0[i]) / elapsed * 100
		sum += pct
		peak = math.Max(peak, pct)
	}
	hostPct := (cpuSeconds(h.Pid()) - host0) / elapsed * 100
	if agentPid != 0 {
		agentPct := (cpuSeconds(agentPid) - agent0) / elapsed * 100
		b.ReportMetric(agentPct, "%core-agent")
		hostPct += agentPct
	}

	after, err := memAvailableKiB()
	if err != nil {
		b.Fatal(err)
	}
	pss := sumPSSKiB(b, vcs)
	k := float64(len(vcs))
	mean := sum / k
	// Half of the machine, in % of one core.
	half := float64(runtime.NumCPU()) * 100 / 2
	b.ReportMetric(k, "vclusters")
	b.ReportMetric(mean, "%core/vc")
	b.ReportMetric(peak, "%core-max/vc")
	b.ReportMetric(sum, "%core-sum-vcs")
	b.ReportMetric(hostPct, "%core-host")
	b.ReportMetric(math.Floor(half/mean), "vcs-in-half-machine")
	b.ReportMetric(math.Floor((half-hostPct)/mean), "vcs-in-half-machine-with-host")
	b.ReportMetric((before-after)/k/1024, "MiB-avail-lost/vc")
	b.ReportMetric(pss/k/1024, "MiB-PSS/vc")
	b.ReportMetric(0, "ns/op")
}

// densityRun starts n `vcluster run`s on host h, one after another, each in
// a host namespace of its own, and returns their pids; they are killed
// when the benchmark ends.
func densityRun(b *testing.B, ctx context.Context, h *testenv.Process, n int) []int {
	var pids []int
	for i := 0; i < n && roomForOneMore(b, i); i++ {
		ns := densityNamespace(b, ctx, h, i)
		args := append([]string{"vcluster", "run", "--name", ns, "--host-kubeconfig", h.Kubeconfig, "--host-namespace", ns},
			strings.Fields(os.Getenv("SUBLET_BENCH_VCLUSTER_ARGS"))...)
		vc, err := testenv.Start(ctx, b.TempDir(), args...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(vc.Kill)
		pids = append(pids, vc.Pid())
	}
	return pids
}

// densityUnderAgent starts `sublet agent` on host h and applies n
// VirtualClusters one after another, each once the one before is Ready,
// and returns the pids of their processes and the agent's; all are killed
// when the benchmark ends.
func densityUnderAgent(b *testing.B, ctx context.Context, h *testenv.Process, n int) ([]int, int) {
	stateDir := b.TempDir()
	agent, _, err := testenv.StartUntil(ctx, "Sublet agent is running", "agent", "--kubeconfig", h.Kubeconfig,
		"--state-dir", stateDir, "--metrics-bind-address", "0", "--leader-elect=false")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { agent.Kill(); killPidFiles(stateDir) })
	b.Cleanup(func() { // runs first: the processes are still there
		if b.Failed() {
			logExitedChildren(b, stateDir, agent.Output())
		} else if lines := agentRestarts(agent.Output()); lines != "" {
			b.Logf("agent log, restarts and adoptions:\n%s", lines)
		}
	})
	applied := 0
	for ; applied < n && roomForOneMore(b, applied); applied++ {
		ns := densityNamespace(b, ctx, h, applied)
		manifest := fmt.Sprintf("apiVersion: storage.loft.sh/v1\nkind: VirtualCluster\nmetadata: {name: vc, namespace: %s}\n", ns)
		apply := exec.Command("kubectl", "--kubeconfig", h.Kubeconfig, "apply", "-f", "-")
		apply.Stdin = strings.NewReader(manifest)
		if out, err := apply.CombinedOutput(); err != nil {
			b.Fatalf("%v\n%s", err, out)
		}
		wait := exec.Command("kubectl", "--kubeconfig", h.Kubeconfig, "wait", "-n", ns, "vc/vc", "--for=jsonpath={.status.phase}=Ready", "--timeout=3m")
		if out, err := wait.CombinedOutput(); err != nil {
			b.Fatalf("%s not Ready: %v\n%s", ns, err, out)
		}
	}
	pids := pidFiles(stateDir)
	if len(pids) != applied {
		b.Fatalf("%d virtual cluster processes under the agent's state directory for %d VirtualClusters", len(pids), applied)
	}
	return pids, agent.Pid()
}

// roomForOneMore reports whether MemAvailable allows starting cluster i.
func roomForOneMore(b *testing.B, i int) bool {
	avail, err := memAvailableKiB()
	if err != nil {
		b.Fatal(err)
	}
	if avail < densityMemFloorKiB {
		b.Logf("MemAvailable %.0f MiB after %d virtual clusters: starting no more", avail/1024, i)
		return false
	}
	return true
}

// densityNamespace creates host namespace density-I.
func densityNamespace(b *testing.B, ctx context.Context, h *testenv.Process, i int) string {
	ns := fmt.Sprintf("density-%d", i)
	if _, err := h.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	return ns
}

// logExitedChildren logs, for each virtual cluster under the agent's
// stateDir whose process is gone, the end of its log, and the agent's log
// lines about starting a child again, restarting or adopting one.
func logExitedChildren(b *testing.B, stateDir, agentLog string) {
	for f, pid := range pidsByFile(filepath.Join(stateDir, "vclusters", "*", "*", "pid")) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue
		}
		logData, _ := os.ReadFile(filepath.Join(filepath.Dir(f), "vcluster.log"))
		b.Logf("%s (pid %d) is gone; the end of its log:\n%s", filepath.Dir(f), pid, testenv.Tail(string(logData), 30))
	}
	b.Logf("agent log, restarts and adoptions:\n%s", agentRestarts(agentLog))
}

// agentRestarts returns the last 40 lines of the agent's log about
// starting a child again, restarting or adopting one.
func agentRestarts(agentLog string) string {
	var lines []string
	for _, l := range strings.Split(agentLog, "\n") {
		if strings.Contains(l, "restart") || strings.Contains(l, "exited") || strings.Contains(l, "started virtual cluster") && !strings.Contains(l, `before="no pid file"`) ||
			strings.Contains(l, "adopted the data dir") {
			lines = append(lines, l)
		}
	}
	return testenv.Tail(strings.Join(lines, "\n"), 40)
}
