package bench

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"
)

// BenchmarkCreateThroughPlatform: the user's path. `sublet up` (with
// --warm-pool SUBLET_BENCH_POOL, default 0), then SUBLET_BENCH_VCS (10)
// times `sublet create vcluster NAME` (creates it, waits until Ready,
// switches kubectl to it through the platform proxy) followed by `kubectl
// get namespaces` until it succeeds: p50/p99 from the command's start to
// the first answer, and of the command alone. With a pool, each create
// first waits (untimed) until the pool is full again.
func BenchmarkCreateThroughPlatform(b *testing.B) {
	n := envInt("SUBLET_BENCH_VCS", 10)
	pool := envInt("SUBLET_BENCH_POOL", 0)
	stateDir, _, stop := upForBench(b, "--warm-pool", strconv.Itoa(pool))
	defer stop()
	var total, cli []float64
	b.ResetTimer()
	for i := 0; i < n; i++ {
		waitPoolFull(b, filepath.Join(stateDir, "agent"), pool)
		name := fmt.Sprintf("bench-%d", i)
		t0 := time.Now()
		sublet(b, "create", "vcluster", name)
		cli = append(cli, time.Since(t0).Seconds())
		for exec.Command("kubectl", "get", "namespaces").Run() != nil {
			if time.Since(t0) > 2*time.Minute {
				b.Fatalf("kubectl get namespaces in %s: no answer after 2m", name)
			}
			time.Sleep(20 * time.Millisecond)
		}
		total = append(total, time.Since(t0).Seconds())
	}
	b.StopTimer()
	sort.Float64s(total)
	sort.Float64s(cli)
	b.ReportMetric(pct(total, 50), "s-create-to-get-ns-p50")
	b.ReportMetric(pct(total, 99), "s-create-to-get-ns-p99")
	b.ReportMetric(pct(cli, 50), "s-create-command-p50")
	b.ReportMetric(0, "ns/op")
}
