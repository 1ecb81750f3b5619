package bench

import (
	"context"
	"regexp"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkClusterDNS: a host and `sublet vcluster run`, one service, then
// SUBLET_BENCH_DNS_QPS (1000) A queries per second for its name for
// SUBLET_BENCH_DNS_SECONDS (5) over UDP; p50/p99 of the answer latency,
// and how many queries got no answer. The client runs on the same 2 cores.
func BenchmarkClusterDNS(b *testing.B) {
	qps, seconds := envInt("SUBLET_BENCH_DNS_QPS", 1000), envInt("SUBLET_BENCH_DNS_SECONDS", 5)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, vc, stop := hostAndVCluster(b, ctx, 1, "bench-dns")
	defer stop()
	var server string
	for deadline := time.Now().Add(10 * time.Second); server == "" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if m := regexp.MustCompile(`Cluster DNS: (\S+)`).FindStringSubmatch(vc.Output()); m != nil {
			server = m[1]
		}
	}
	if server == "" {
		b.Fatalf("no DNS address in:\n%s", vc.Output())
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	if _, err := vc.Client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	q := new(dns.Msg)
	q.SetQuestion("web.default.svc.cluster.local.", dns.TypeA)
	client := &dns.Client{Timeout: 2 * time.Second}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if r, _, err := client.Exchange(q, server); err == nil && len(r.Answer) == 1 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("web.default.svc.cluster.local does not resolve")
		}
	}

	total := qps * seconds
	var mu sync.Mutex
	var lat []float64
	lost := 0
	jobs := make(chan struct{}, total)
	var wg sync.WaitGroup
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				start := time.Now()
				r, _, err := client.Exchange(q.Copy(), server)
				d := time.Since(start)
				mu.Lock()
				if err != nil || len(r.Answer) != 1 {
					lost++
				} else {
					lat = append(lat, float64(d.Microseconds())/1000)
				}
				mu.Unlock()
			}
		}()
	}
	b.ResetTimer()
	tick := time.NewTicker(time.Second / time.Duration(qps))
	for i := 0; i < total; i++ {
		<-tick.C
		jobs <- struct{}{}
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	b.StopTimer()
	sort.Float64s(lat)
	b.ReportMetric(pct(lat, 50), "ms-p50")
	b.ReportMetric(pct(lat, 99), "ms-p99")
	b.ReportMetric(float64(lost), "unanswered")
	b.ReportMetric(float64(len(lat)+lost)/float64(seconds), "queries/s")
	b.ReportMetric(0, "ns/op")
}
