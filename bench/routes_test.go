package bench

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/sublet-dev/sublet/internal/testenv"
)

// BenchmarkRouteSync creates SUBLET_BENCH_ROUTES HTTPRoutes (default 200)
// at SUBLET_BENCH_RATE per second (default 20) in a virtual cluster whose
// host serves the Gateway API, plays the host's Gateway controller (it
// accepts each host copy as soon as it sees it), and reports the latency
// from virtual create to host copy, and from the host status write to the
// status in the virtual cluster (p50, p99).
func BenchmarkRouteSync(b *testing.B) {
	mirrorBench{
		gvr:     schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"},
		install: installGatewayCRDs,
		args:    []string{`--isolation-policy={"gateways":{"allowedParents":["shared/public"]}}`},
		object:  benchRoute,
		status: func(u *unstructured.Unstructured) interface{} {
			return map[string]interface{}{"parents": []interface{}{map[string]interface{}{
				"parentRef":      map[string]interface{}{"name": "public", "namespace": "shared"},
				"controllerName": "example.com/gateway",
				"conditions": []interface{}{map[string]interface{}{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
					"lastTransitionTime": time.Now().UTC().Format(time.RFC3339), "observedGeneration": u.GetGeneration()}},
			}}}
		},
		statusBack: func(u *unstructured.Unstructured) bool {
			ps, _, _ := unstructured.NestedSlice(u.Object, "status", "parents")
			return len(ps) > 0
		},
	}.run(b)
}

// mirrorBench measures a kind of the dynamic mirror: SUBLET_BENCH_ROUTES
// objects (default 200) created at SUBLET_BENCH_RATE per second (default
// 20) in the virtual cluster; the benchmark plays the host's controller,
// writing status on each host copy as soon as it sees it.
type mirrorBench struct {
	gvr schema.GroupVersionResource
	// install gives the host the kind's CRD.
	install func(b *testing.B, h *testenv.Process)
	// args are more `vcluster run` flags.
	args []string
	// object is the virtual object name.
	object func(name string) *unstructured.Unstructured
	// status is what the host's controller writes on host copy u.
	status func(u *unstructured.Unstructured) interface{}
	// statusBack reports whether virtual object u has that status.
	statusBack func(u *unstructured.Unstructured) bool
}

func (m mirrorBench) run(b *testing.B) {
	n := envInt("SUBLET_BENCH_ROUTES", 200)
	rate := envInt("SUBLET_BENCH_RATE", 20)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const hostNS = "bench"
	h, vc, stop := hostAndVClusterWith(b, ctx, 1, hostNS, func(h *testenv.Process) { m.install(b, h) }, m.args...)
	defer stop()
	waitDefaultSA(b, vc.Client)

	created, hostSeen, statusWritten, statusBack := newPodTimes(), newPodTimes(), newPodTimes(), newPodTimes()
	hostDyn := dynamic.NewForConfigOrDie(h.Config)
	hostInf := dynamicinformer.NewFilteredDynamicSharedInformerFactory(hostDyn, 0, hostNS, nil)
	accept := make(chan *unstructured.Unstructured, n)
	_, _ = hostInf.ForResource(m.gvr).Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(o interface{}) {
			u := o.(*unstructured.Unstructured)
			hostSeen.setOnce(u.GetAnnotations()["sublet.dev/object-name"], time.Now())
			accept <- u
		},
	})
	virtDyn := dynamic.NewForConfigOrDie(vc.Config)
	virtInf := dynamicinformer.NewFilteredDynamicSharedInformerFactory(virtDyn, 0, "default", nil)
	_, _ = virtInf.ForResource(m.gvr).Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, o interface{}) {
			if u := o.(*unstructured.Unstructured); m.statusBack(u) {
				statusBack.setOnce(u.GetName(), time.Now())
			}
		},
	})
	waitServed(b, ctx, virtDyn.Resource(m.gvr))
	hostInf.Start(ctx.Done())
	virtInf.Start(ctx.Done())
	hostInf.WaitForCacheSync(ctx.Done())
	virtInf.WaitForCacheSync(ctx.Done())
	go m.writeStatus(ctx, b, hostDyn.Resource(m.gvr).Namespace(hostNS), accept, statusWritten)

	cfg := rest.CopyConfig(vc.Config)
	cfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(float32(rate), 1)
	client := dynamic.NewForConfigOrDie(cfg).Resource(m.gvr).Namespace("default")
	vcCPU0 := cpuSeconds(vc.Pid())
	b.ResetTimer()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("r%04d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := client.Create(ctx, m.object(name), metav1.CreateOptions{}); err != nil {
				b.Error(err)
				return
			}
			created.setOnce(name, time.Now())
		}()
		time.Sleep(time.Second / time.Duration(rate))
	}
	wg.Wait()
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		statusBack.mu.Lock()
		got := len(statusBack.t)
		statusBack.mu.Unlock()
		if got == n {
			break
		}
	}
	b.StopTimer()
	toHost, back := latencies(created, hostSeen), latencies(statusWritten, statusBack)
	if len(toHost) < n || len(back) < n {
		b.Fatalf("only %d of %d objects reached the host, %d got their status back", len(toHost), n, len(back))
	}
	b.ReportMetric(cpuSeconds(vc.Pid())-vcCPU0, "cpu-s-vcluster")
	b.ReportMetric(pct(toHost, 50), "ms-create-p50")
	b.ReportMetric(pct(toHost, 99), "ms-create-p99")
	b.ReportMetric(pct(back, 50), "ms-status-p50")
	b.ReportMetric(pct(back, 99), "ms-status-p99")
	b.ReportMetric(0, "ns/op")
}

func benchRoute(name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
		"metadata": map[string]interface{}{"name": name},
		"spec": map[string]interface{}{
			"parentRefs": []interface{}{map[string]interface{}{"name": "public", "namespace": "shared"}},
			"hostnames":  []interface{}{name + ".apps.example.com"},
			"rules":      []interface{}{map[string]interface{}{"backendRefs": []interface{}{map[string]interface{}{"name": "web", "port": int64(80)}}}},
		},
	}}
	return u
}

// writeStatus writes the controller's status on each host copy it is
// given, recording when, by virtual name.
func (m mirrorBench) writeStatus(ctx context.Context, b *testing.B, hostObjs dynamic.ResourceInterface, in <-chan *unstructured.Unstructured, written *podTimes) {
	for {
		select {
		case <-ctx.Done():
			return
		case u := <-in:
			u = u.DeepCopy()
			u.Object["status"] = m.status(u)
			if _, err := hostObjs.UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
				b.Errorf("status of %s: %v", u.GetName(), err)
				continue
			}
			written.setOnce(u.GetAnnotations()["sublet.dev/object-name"], time.Now())
		}
	}
}

// installGatewayCRDs gives host h the Gateway API's standard route CRDs.
func installGatewayCRDs(b *testing.B, h *testenv.Process) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		b.Fatalf("find the gateway-api module: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard")
	for _, r := range []string{"httproutes", "grpcroutes", "tlsroutes"} {
		if out, err := exec.Command("kubectl", "--kubeconfig", h.Kubeconfig, "apply", "--server-side", "-f",
			filepath.Join(dir, "gateway.networking.k8s.io_"+r+".yaml")).CombinedOutput(); err != nil {
			b.Fatalf("install the %s CRD: %v\n%s", r, err, out)
		}
	}
}

// waitServed waits until the virtual cluster serves r (the syncer
// installed its CRD).
func waitServed(b *testing.B, ctx context.Context, r dynamic.NamespaceableResourceInterface) {
	for i := 0; i < 600; i++ {
		if _, err := r.List(ctx, metav1.ListOptions{Limit: 1}); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatal("the virtual cluster does not serve the kind")
}
