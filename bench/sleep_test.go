package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sublet-dev/sublet/internal/testenv"
)

// upForBench runs `sublet up` in a fresh directory (its CLI login and
// kube-context set for the benchmark) and returns the state dir and a
// client through the platform to the demo virtual cluster.
func upForBench(b *testing.B, extra ...string) (stateDir string, demo kubernetes.Interface, stop func()) {
	b.Helper()
	dir := b.TempDir()
	b.Setenv("SUBLET_CONFIG", filepath.Join(dir, "cli.json"))
	b.Setenv("KUBECONFIG", filepath.Join(dir, "kubeconfig"))
	stateDir = filepath.Join(dir, "state")
	up, _, err := testenv.StartUntil(context.Background(), "Sublet is up.", append([]string{"up", "--state-dir", stateDir, "--listen", "127.0.0.1:0"}, extra...)...)
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(clientcmd.NewDefaultClientConfigLoadingRules(), nil).ClientConfig()
	if err != nil {
		b.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 1000, 1000
	return stateDir, kubernetes.NewForConfigOrDie(cfg), func() { _ = up.Stop() }
}

// sublet runs the CLI to completion.
func sublet(b *testing.B, args ...string) string {
	b.Helper()
	out, code, err := testenv.Run(5*time.Minute, args...)
	if err != nil || code != 0 {
		b.Fatalf("sublet %s: exit %d, %v\n%s", strings.Join(args, " "), code, err, out)
	}
	return out
}

// BenchmarkWake: `sublet up`, then SUBLET_BENCH_WAKES (10) times: put the
// demo virtual cluster to sleep (`sublet sleep vcluster demo`, which waits
// until its control plane stopped) and time a GET through the platform
// from the request to its answer (the wake included); p50/p99. Also what
// the sleeping cluster costs: processes, memory, disk.
func BenchmarkWake(b *testing.B) {
	n := envInt("SUBLET_BENCH_WAKES", 10)
	stateDir, demo, stop := upForBench(b)
	defer stop()
	dataDir := filepath.Join(stateDir, "agent", "vclusters", "vcluster-demo", "demo")
	var lat []float64
	var procs, diskMiB float64
	b.ResetTimer()
	for i := 0; i < n; i++ {
		sublet(b, "sleep", "vcluster", "demo")
		procs = float64(len(pidsWith(filepath.Join(dataDir, "data"))))
		diskMiB = duMiB(dataDir)
		start := time.Now()
		if _, err := demo.CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{}); err != nil {
			b.Fatalf("GET while asleep: %v", err)
		}
		lat = append(lat, time.Since(start).Seconds())
	}
	b.StopTimer()
	sort.Float64s(lat)
	b.ReportMetric(pct(lat, 50), "s-wake-p50")
	b.ReportMetric(pct(lat, 99), "s-wake-p99")
	b.ReportMetric(procs, "processes-asleep")
	b.ReportMetric(diskMiB, "MiB-disk-asleep")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkSleepingMemory: `sublet up` plus SUBLET_BENCH_SLEEPERS (20)
// more virtual clusters; the machine's used memory (MemTotal −
// MemAvailable) with all of them awake and idle, then with all but the demo
// asleep.
func BenchmarkSleepingMemory(b *testing.B) {
	n := envInt("SUBLET_BENCH_SLEEPERS", 20)
	stateDir, _, stop := upForBench(b)
	defer stop()
	hostKC := filepath.Join(stateDir, "host", "admin.kubeconfig")
	phases := func() map[string]string {
		out, err := exec.Command("kubectl", "--kubeconfig", hostKC, "get", "virtualclusters", "-A", "-o",
			`jsonpath={range .items[*]}{.metadata.name}={.status.phase}/{.status.reason} {end}`).Output()
		if err != nil {
			b.Fatal(err)
		}
		m := map[string]string{}
		for _, f := range strings.Fields(string(out)) {
			k, v, _ := strings.Cut(f, "=")
			m[k] = v
		}
		return m
	}
	waitAll := func(want string) {
		deadline := time.Now().Add(10 * time.Minute)
		for {
			ok := 0
			for name, ph := range phases() {
				if strings.HasPrefix(name, "sleeper-") && ph == want {
					ok++
				}
			}
			if ok == n {
				return
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d virtual clusters %s after 10m: %v", ok, n, want, phases())
			}
			time.Sleep(time.Second)
		}
	}
	b.ResetTimer()
	for i := 0; i < n; i++ {
		sublet(b, "create", "vcluster", fmt.Sprintf("sleeper-%d", i), "--no-wait")
	}
	waitAll("Ready/Ready")
	time.Sleep(20 * time.Second) // idle: start-up garbage collected
	awake, err := usedMiB()
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i++ {
		sublet(b, "sleep", "vcluster", fmt.Sprintf("sleeper-%d", i), "--no-wait")
	}
	waitAll("Sleeping/Sleeping")
	time.Sleep(5 * time.Second)
	asleep, err := usedMiB()
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(awake, fmt.Sprintf("MiB-used-%d-awake", n+1))
	b.ReportMetric(asleep, fmt.Sprintf("MiB-used-%d-asleep-1-awake", n))
	b.ReportMetric((awake-asleep)/float64(n), "MiB-saved-per-sleeper")
	b.ReportMetric(0, "ns/op")
}

// usedMiB is the machine's MemTotal − MemAvailable.
func usedMiB() (float64, error) {
	avail, err := memAvailableKiB()
	if err != nil {
		return 0, err
	}
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	var total float64
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			_, err = fmt.Sscan(f[1], &total)
		}
	}
	return (total - avail) / 1024, err
}

// pidsWith lists running processes whose command line contains s.
func pidsWith(s string) []string {
	var out []string
	files, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), s) {
			out = append(out, filepath.Base(filepath.Dir(f)))
		}
	}
	return out
}

// duMiB is the disk use of dir.
func duMiB(dir string) float64 {
	var total int64
	_ = filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			total += info.Size()
		}
		return nil
	})
	return float64(total) / (1 << 20)
}
