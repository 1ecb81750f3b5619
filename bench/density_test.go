package bench

import (
	"context"
	"fmt"
	"math"
	"os"
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
// It starts no further cluster once MemAvailable is below 3 GiB.
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
	var vcs []*testenv.Process
	defer func() {
		for _, vc := range vcs {
			vc.Kill()
		}
	}()
	t0 := time.Now()
	for i := 0; i < n; i++ {
		if avail, err := memAvailableKiB(); err != nil {
			b.Fatal(err)
		} else if avail < densityMemFloorKiB {
			b.Logf("MemAvailable %.0f MiB after %d virtual clusters: starting no more", avail/1024, i)
			break
		}
		ns := fmt.Sprintf("density-%d", i)
		if _, err := h.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		args := append([]string{"vcluster", "run", "--name", ns, "--host-kubeconfig", h.Kubeconfig, "--host-namespace", ns},
			strings.Fields(os.Getenv("SUBLET_BENCH_VCLUSTER_ARGS"))...)
		vc, err := testenv.Start(ctx, b.TempDir(), args...)
		if err != nil {
			b.Fatal(err)
		}
		vcs = append(vcs, vc)
	}
	b.Logf("%d virtual clusters ready in %s; idling %s, then measuring %s", len(vcs), time.Since(t0).Round(time.Second), settle, window)
	time.Sleep(settle)

	cpu0 := make([]float64, len(vcs))
	for i, vc := range vcs {
		cpu0[i] = cpuSeconds(vc.Pid())
	}
	host0, w0 := cpuSeconds(h.Pid()), time.Now()
	time.Sleep(window)
	elapsed := time.Since(w0).Seconds()
	var sum, peak float64
	for i, vc := range vcs {
		pct := (cpuSeconds(vc.Pid()) - cpu0[i]) / elapsed * 100
		sum += pct
		peak = math.Max(peak, pct)
	}
	hostPct := (cpuSeconds(h.Pid()) - host0) / elapsed * 100

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
