package bench

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/sublet-dev/sublet/internal/testenv"
)

// podTimes records when each pod reached a stage, by virtual pod name.
type podTimes struct {
	mu sync.Mutex
	t  map[string]time.Time
}

func (p *podTimes) setOnce(name string, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.t[name]; !ok {
		p.t[name] = at
	}
}

func newPodTimes() *podTimes { return &podTimes{t: map[string]time.Time{}} }

// BenchmarkPodSync creates SUBLET_BENCH_PODS pods (default 1000) at
// SUBLET_BENCH_RATE per second (default 100) in a virtual cluster and
// reports the latency from virtual create to host pod, and from host pod
// Running to virtual pod Running (p50, p99). With SUBLET_BENCH_PROFILE=FILE
// it also writes a CPU profile of the virtual cluster while the pods come,
// and heap profiles before and after (FILE.allocs0, FILE.allocs1);
// SUBLET_BENCH_VCLUSTER_ARGS adds flags to its `vcluster run` (space
// separated), for comparisons such as --datastore etcd.
func BenchmarkPodSync(b *testing.B) {
	pods := envInt("SUBLET_BENCH_PODS", 1000)
	rate := envInt("SUBLET_BENCH_RATE", 100)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	const hostNS = "bench"
	h, vc, stop := hostAndVCluster(b, ctx, pods/100+1, hostNS)
	defer stop()
	waitDefaultSA(b, vc.Client)

	created, hostSeen, hostRunning, virtRunning := newPodTimes(), newPodTimes(), newPodTimes(), newPodTimes()
	hostInf := informers.NewSharedInformerFactoryWithOptions(h.Client, 0, informers.WithNamespace(hostNS))
	_, _ = hostInf.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o interface{}) { recordHost(o, hostSeen, hostRunning) },
		UpdateFunc: func(_, o interface{}) { recordHost(o, hostSeen, hostRunning) },
	})
	virtInf := informers.NewSharedInformerFactoryWithOptions(vc.Client, 0, informers.WithNamespace("default"))
	_, _ = virtInf.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, o interface{}) {
			if p := o.(*corev1.Pod); p.Status.Phase == corev1.PodRunning {
				virtRunning.setOnce(p.Name, time.Now())
			}
		},
	})
	hostInf.Start(ctx.Done())
	virtInf.Start(ctx.Done())
	hostInf.WaitForCacheSync(ctx.Done())
	virtInf.WaitForCacheSync(ctx.Done())

	cfg := rest.CopyConfig(vc.Config)
	cfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(float32(rate), 1)
	cs := kubernetes.NewForConfigOrDie(cfg)
	hostCPU0, vcCPU0 := cpuSeconds(h.Pid()), cpuSeconds(vc.Pid())
	b.ResetTimer()
	profiled := profileVCluster(b, ctx, vc, pods/rate)
	metrics0 := scrape(b, ctx, vc.Client)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 20)
	for i := 0; i < pods; i++ {
		name := fmt.Sprintf("p%04d", i)
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
			if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				b.Error(err)
				return
			}
			created.setOnce(name, time.Now())
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		virtRunning.mu.Lock()
		n := len(virtRunning.t)
		virtRunning.mu.Unlock()
		if n == pods {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.StopTimer()
	<-profiled
	metrics1 := scrape(b, ctx, vc.Client)
	logRequestsPerPod(b, apiRequests(b, metrics0), apiRequests(b, metrics1), pods)
	// What the process allocated per pod: a proxy for its work that CPU
	// time on a shared machine blurs (the GC's share follows it).
	b.ReportMetric((counter(b, metrics1, "go_memstats_alloc_bytes_total")-counter(b, metrics0, "go_memstats_alloc_bytes_total"))/float64(pods)/1024, "KiB-alloc/pod")
	// Where the machine's two cores went: the host (apiserver, scheduler,
	// KWOK) or the virtual cluster (apiserver, controllers, syncer).
	b.ReportMetric(cpuSeconds(h.Pid())-hostCPU0, "cpu-s-host")
	b.ReportMetric(cpuSeconds(vc.Pid())-vcCPU0, "cpu-s-vcluster")
	toHost := latencies(created, hostSeen)
	status := latencies(hostRunning, virtRunning)
	if len(toHost) < pods || len(status) < pods {
		b.Fatalf("only %d of %d pods reached the host, %d got Running status back", len(toHost), pods, len(status))
	}
	b.ReportMetric(pct(toHost, 50), "ms-create-p50")
	b.ReportMetric(pct(toHost, 99), "ms-create-p99")
	b.ReportMetric(pct(status, 50), "ms-status-p50")
	b.ReportMetric(pct(status, 99), "ms-status-p99")
	b.ReportMetric(0, "ns/op")
}

// profileVCluster writes a CPU profile of the virtual cluster's process over
// the next seconds to the file SUBLET_BENCH_PROFILE names, if it is set
// (go tool pprof FILE); the channel closes when it is written.
func profileVCluster(b *testing.B, ctx context.Context, vc *testenv.Process, seconds int) <-chan struct{} {
	done := make(chan struct{})
	path := os.Getenv("SUBLET_BENCH_PROFILE")
	if path == "" || seconds < 1 {
		close(done)
		return done
	}
	// Heap profiles before and after: go tool pprof -sample_index
	// alloc_space -base FILE.allocs0 FILE.allocs1 shows what was allocated
	// in between.
	get := func(what, file string, query map[string]string, timeout time.Duration) {
		req := vc.Client.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/" + what).Timeout(timeout)
		for k, v := range query {
			req = req.Param(k, v)
		}
		data, err := req.DoRaw(ctx)
		if err == nil {
			err = os.WriteFile(file, data, 0o644)
		}
		if err != nil {
			b.Errorf("%s profile of the virtual cluster: %v", what, err)
		}
	}
	get("allocs", path+".allocs0", nil, 30*time.Second)
	go func() {
		defer close(done)
		get("profile", path, map[string]string{"seconds": strconv.Itoa(seconds)}, time.Duration(seconds+30)*time.Second)
		get("allocs", path+".allocs1", nil, 30*time.Second)
	}()
	return done
}

// scrape returns the API server's metrics.
func scrape(b *testing.B, ctx context.Context, cs kubernetes.Interface) []byte {
	data, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		b.Fatalf("metrics of the virtual cluster: %v", err)
	}
	return data
}

// counter returns the value of an unlabelled counter in scraped metrics.
func counter(b *testing.B, metrics []byte, name string) float64 {
	samples, err := testenv.Metric(metrics, name)
	if err != nil || len(samples) != 1 {
		b.Fatalf("metric %s of the virtual cluster: %d samples, %v", name, len(samples), err)
	}
	return samples[0].Value
}

// apiRequests reads the apiserver_request_total counters from scraped
// metrics, summed by verb, resource and subresource.
func apiRequests(b *testing.B, metrics []byte) map[string]float64 {
	samples, err := testenv.Metric(metrics, "apiserver_request_total")
	if err != nil {
		b.Fatalf("metrics of the virtual cluster: %v", err)
	}
	out := map[string]float64{}
	for _, m := range samples {
		l := m.Labels
		key := l["verb"] + " " + l["resource"]
		if l["subresource"] != "" {
			key += "/" + l["subresource"]
		}
		if c := l["code"]; c != "" && c[0] != '2' {
			key += " (" + c + ")"
		}
		out[key] += m.Value
	}
	return out
}

// logRequestsPerPod logs the API requests the virtual cluster served per
// pod between two readings, most frequent first.
func logRequestsPerPod(b *testing.B, before, after map[string]float64, pods int) {
	type row struct {
		key string
		n   float64
	}
	var rows []row
	total := 0.0
	for k, v := range after {
		if d := v - before[k]; d >= float64(pods)/10 {
			rows = append(rows, row{k, d / float64(pods)})
			total += d / float64(pods)
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].n > rows[j].n })
	var sb strings.Builder
	fmt.Fprintf(&sb, "virtual API requests per pod: %.2f", total)
	for _, r := range rows {
		fmt.Fprintf(&sb, "; %s %.2f", r.key, r.n)
	}
	b.Log(sb.String())
}

func recordHost(o interface{}, seen, running *podTimes) {
	p := o.(*corev1.Pod)
	vname := p.Annotations["sublet.dev/object-name"]
	now := time.Now()
	seen.setOnce(vname, now)
	if p.Status.Phase == corev1.PodRunning {
		running.setOnce(vname, now)
	}
}

func latencies(from, to *podTimes) []float64 {
	from.mu.Lock()
	defer from.mu.Unlock()
	to.mu.Lock()
	defer to.mu.Unlock()
	var out []float64
	for name, t0 := range from.t {
		if t1, ok := to.t[name]; ok {
			d := t1.Sub(t0)
			if d < 0 {
				d = 0 // the host saw it before the create call returned
			}
			out = append(out, float64(d.Microseconds())/1000)
		}
	}
	sort.Float64s(out)
	return out
}

func pct(sorted []float64, p int) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	if i > 0 {
		i--
	}
	return sorted[i]
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// hostAndVCluster starts a host with nodes simulated nodes and `sublet
// vcluster run --name bench` in its namespace hostNS; stop kills both.
func hostAndVCluster(b *testing.B, ctx context.Context, nodes int, hostNS string) (h, vc *testenv.Process, stop func()) {
	b.Helper()
	return hostAndVClusterWith(b, ctx, nodes, hostNS, nil)
}

// hostAndVClusterWith is hostAndVCluster with prepare, if not nil, run on
// the host before the virtual cluster starts, and more flags for it.
func hostAndVClusterWith(b *testing.B, ctx context.Context, nodes int, hostNS string, prepare func(h *testenv.Process), extra ...string) (h, vc *testenv.Process, stop func()) {
	b.Helper()
	h, err := testenv.StartHost(ctx, b.TempDir(), nodes)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := h.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: hostNS}}, metav1.CreateOptions{}); err != nil {
		h.Kill()
		b.Fatal(err)
	}
	args := []string{"vcluster", "run", "--name", "bench", "--host-kubeconfig", h.Kubeconfig, "--host-namespace", hostNS}
	if os.Getenv("SUBLET_BENCH_PROFILE") != "" {
		args = append(args, "--apiserver-arg=--profiling=true")
	}
	if prepare != nil {
		prepare(h)
	}
	args = append(args, extra...)
	args = append(args, strings.Fields(os.Getenv("SUBLET_BENCH_VCLUSTER_ARGS"))...)
	vc, err = testenv.Start(ctx, b.TempDir(), args...)
	if err != nil {
		h.Kill()
		b.Fatal(err)
	}
	return h, vc, func() { vc.Kill(); h.Kill() }
}

func waitDefaultSA(b *testing.B, cs kubernetes.Interface) {
	for i := 0; i < 300; i++ {
		if _, err := cs.CoreV1().ServiceAccounts("default").Get(context.Background(), "default", metav1.GetOptions{}); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatal("no default service account in the virtual cluster")
}

// cpuSeconds returns the user+system CPU time of process pid so far.
func cpuSeconds(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / 100 // USER_HZ
}
