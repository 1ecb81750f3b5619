package bench

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sublet-dev/sublet/internal/testenv"
)

// BenchmarkVClusterStart: `sublet vcluster run` start → the first
// successful `kubectl get namespaces` in the virtual cluster, and the idle
// RSS/PSS of the whole runtime (control plane and syncer) after idleWait.
func BenchmarkVClusterStart(b *testing.B) {
	ctx := context.Background()
	h, err := testenv.StartHost(ctx, b.TempDir(), 2)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Kill()
	var total time.Duration
	var last *testenv.Process
	for i := 0; i < b.N; i++ {
		ns := fmt.Sprintf("bench-%d", i)
		if _, err := h.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		vc, err := testenv.Start(ctx, b.TempDir(), "vcluster", "run", "--name", "bench", "--host-kubeconfig", h.Kubeconfig, "--host-namespace", ns)
		if err != nil {
			b.Fatal(err)
		}
		for exec.Command("kubectl", "--kubeconfig", vc.Kubeconfig, "get", "namespaces").Run() != nil {
			time.Sleep(20 * time.Millisecond)
		}
		total += time.Since(t0)
		if last != nil {
			last.Kill()
		}
		last = vc
	}
	defer last.Kill()
	b.ReportMetric(total.Seconds()/float64(b.N), "s/first-get-ns")
	time.Sleep(idleWait)
	m, err := readRollup(last.Pid())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(m["Rss"]/1024, "MiB-RSS-idle")
	b.ReportMetric(m["Pss"]/1024, "MiB-PSS-idle")
	b.ReportMetric(0, "ns/op")
}
