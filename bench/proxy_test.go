package bench

import (
	"context"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sublet-dev/sublet/internal/testenv"
)

// BenchmarkProxyOverhead: `sublet up` (host, agent, server, demo virtual
// cluster), then SUBLET_BENCH_GETS (500) GETs of the default namespace,
// rotating between the platform server at its bare address, routed by the
// kube-context's key scoped to the demo cluster (the kube-context `sublet
// up` writes), the same server reached by the virtual cluster's TLS server
// name, the same by the seed's path form /kubernetes/virtualcluster/…, and
// the virtual API server directly; p50/p99 of each, and the wall time of
// `sublet up` from nothing to the demo virtual cluster ready.
func BenchmarkProxyOverhead(b *testing.B) {
	n := envInt("SUBLET_BENCH_GETS", 500)
	dir := b.TempDir()
	b.Setenv("SUBLET_CONFIG", filepath.Join(dir, "cli.json"))
	b.Setenv("KUBECONFIG", filepath.Join(dir, "kubeconfig"))
	t0 := time.Now()
	up, _, err := testenv.StartUntil(context.Background(), "Sublet is up.", "up", "--state-dir", filepath.Join(dir, "state"), "--listen", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	upTime := time.Since(t0)
	defer func() { _ = up.Stop() }()

	// Through the proxy: the kube-context `sublet up` switched to (the
	// key-routed form), and the same key with the TLS server name or the
	// seed's path instead.
	viaKey, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(clientcmd.NewDefaultClientConfigLoadingRules(), nil).ClientConfig()
	if err != nil {
		b.Fatal(err)
	}
	if viaKey.TLSClientConfig.ServerName != "" || strings.Contains(viaKey.Host, "/kubernetes/") {
		b.Fatalf("the kube-context of sublet up is not the platform's bare address (server %s, TLS server name %q)", viaKey.Host, viaKey.TLSClientConfig.ServerName)
	}
	viaName := rest.CopyConfig(viaKey)
	viaName.TLSClientConfig.ServerName = "demo.vcluster-demo.local.vcluster.sublet.invalid"
	viaPath := rest.CopyConfig(viaKey)
	viaPath.Host += "/kubernetes/virtualcluster/local/vcluster-demo/demo"
	// Directly: the admin kubeconfig the agent published.
	hostCfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(dir, "state", "host", "admin.kubeconfig"))
	if err != nil {
		b.Fatal(err)
	}
	host := kubernetes.NewForConfigOrDie(hostCfg)
	secret, err := host.CoreV1().Secrets("vcluster-demo").Get(context.Background(), "vc-demo", metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	direct, err := clientcmd.RESTConfigFromKubeConfig(secret.Data["config"])
	if err != nil {
		b.Fatal(err)
	}
	clients := map[string]kubernetes.Interface{}
	kinds := []string{"key", "servername", "path", "direct"}
	for name, cfg := range map[string]*rest.Config{"key": viaKey, "servername": viaName, "path": viaPath, "direct": direct} {
		cfg.QPS, cfg.Burst = 1000, 1000
		clients[name] = kubernetes.NewForConfigOrDie(cfg)
	}
	lat := map[string][]float64{}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < n; i++ {
		for _, name := range kinds {
			start := time.Now()
			if _, err := clients[name].CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
				b.Fatalf("%s: %v", name, err)
			}
			lat[name] = append(lat[name], float64(time.Since(start).Microseconds())/1000)
		}
	}
	b.StopTimer()
	for name, v := range lat {
		sort.Float64s(v)
		b.ReportMetric(pct(v, 50), "ms-"+name+"-p50")
		b.ReportMetric(pct(v, 99), "ms-"+name+"-p99")
	}
	b.ReportMetric(upTime.Seconds(), "s-up-to-demo-ready")
	b.ReportMetric(0, "ns/op")
}
