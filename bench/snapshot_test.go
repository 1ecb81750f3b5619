package bench

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/testenv"
)

// The load of the full case: ConfigMaps of configMapBytes each and
// Deployments with 0 replicas, made through client-go in the virtual
// cluster's namespace loadNamespace, labelled loadLabel.
const (
	loadConfigMaps = 1000
	loadDeploys    = 100
	configMapBytes = 1024
	loadNamespace  = "bench"
	loadLabel      = "sublet-bench"
)

// BenchmarkSnapshot: snapshots, restores and forks under `sublet agent`
// (process runtime), each sub-benchmark on a host of its own.
//
// "empty" and "1000cm-100deploy" (1,000 ConfigMaps of 1 KiB of random text
// and 100 Deployments with 0 replicas): SUBLET_BENCH_SNAPSHOTS (3) times a
// VirtualClusterSnapshot created → phase Completed (wall time; the agent's
// status.durationMilliseconds; status.size), then as many times the
// VirtualCluster deleted and created again annotated restore-from one of the
// snapshots → phase Ready → first successful list of namespaces with the
// kubeconfig published in Secret vc-NAME; the restored cluster must hold its
// kube-system UID and every object of the load.
//
// "fork" and "fork-pool1" (the agent's --warm-pool 0 and 1): as many times a
// VirtualCluster annotated fork-from a snapshot of an empty one → Ready →
// first list, and, to compare, a new VirtualCluster without a snapshot;
// each is deleted before the next, and which took a pool member is counted.
//
// A table of every figure is printed at the end.
func BenchmarkSnapshot(b *testing.B) {
	n := envInt("SUBLET_BENCH_SNAPSHOTS", 3)
	// controller-runtime's client logs through its global logger, and
	// complains after 30 s when none was set.
	ctrllog.SetLogger(klog.Background())
	var rows []snapRow
	b.Run("empty", func(b *testing.B) { rows = append(rows, benchSnapshotRestore(b, "empty", n, false)...) })
	b.Run("1000cm-100deploy", func(b *testing.B) {
		rows = append(rows, benchSnapshotRestore(b, "1000cm-100deploy", n, true)...)
	})
	b.Run("fork", func(b *testing.B) { rows = append(rows, benchFork(b, "fork, no pool", n, 0)...) })
	b.Run("fork-pool1", func(b *testing.B) { rows = append(rows, benchFork(b, "fork, --warm-pool 1", n, 1)...) })
	printSnapTable(rows, n)
}

// benchSnapshotRestore snapshots one virtual cluster n times, then deletes
// and restores it n times.
func benchSnapshotRestore(b *testing.B, label string, n int, full bool) []snapRow {
	e := startSnapEnv(b, 0)
	ctx := context.Background()
	const ns, name = "bench-snap", "vc"
	e.namespace(b, ns)
	e.createVC(b, ns, name, nil)
	e.waitReady(b, ns, name)
	vcs := e.firstList(b, ns, name)
	rows := []snapRow{}
	if full {
		t0 := time.Now()
		fillVirtualCluster(b, vcs)
		rows = append(rows, snapRow{label, fmt.Sprintf("load: %d ConfigMaps + %d Deployments, 8 clients (once)", loadConfigMaps, loadDeploys), "s", []float64{time.Since(t0).Seconds()}})
	}
	clusterID := kubeSystemUID(b, vcs)

	var wall, agent, size []float64
	for i := 0; i < n; i++ {
		t0 := time.Now()
		s := e.snapshot(b, ns, name, fmt.Sprintf("snap-%d", i))
		wall = append(wall, time.Since(t0).Seconds())
		agent = append(agent, float64(s.Status.DurationMilliseconds))
		size = append(size, float64(s.Status.Size)/1024)
	}
	var deleted, ready, firstGet []float64
	for i := 0; i < n; i++ {
		t0 := time.Now()
		e.deleteVC(b, ns, name)
		deleted = append(deleted, time.Since(t0).Seconds())
		t0 = e.createVC(b, ns, name, map[string]string{storagev1.AnnotationRestoreFrom: fmt.Sprintf("snap-%d", i)})
		vc := e.waitReady(b, ns, name)
		ready = append(ready, time.Since(t0).Seconds())
		vcs = e.firstList(b, ns, name)
		firstGet = append(firstGet, time.Since(t0).Seconds())

		if c := conditionOf(vc, storagev1.ConditionRestored); c == nil || c.Reason != "Restored" || vc.Annotations[storagev1.AnnotationRestoreFrom] != "" {
			b.Fatalf("restore %d: condition Restored %+v, annotations %v", i, c, vc.Annotations)
		}
		if id := kubeSystemUID(b, vcs); id != clusterID {
			b.Fatalf("restore %d: kube-system UID %s, was %s", i, id, clusterID)
		}
		if full {
			checkLoad(b, ctx, vcs)
		}
	}

	b.ReportMetric(median(wall), "s-snapshot-p50")
	b.ReportMetric(median(agent), "ms-snapshot-agent-p50")
	b.ReportMetric(median(size), "KiB-snapshot")
	b.ReportMetric(median(deleted), "s-delete-p50")
	b.ReportMetric(median(ready), "s-restore-to-Ready-p50")
	b.ReportMetric(median(firstGet), "s-restore-to-get-ns-p50")
	b.ReportMetric(0, "ns/op")
	return append(rows,
		snapRow{label, "snapshot: create VirtualClusterSnapshot → phase Completed (wall)", "s", wall},
		snapRow{label, "snapshot: the agent's status.durationMilliseconds", "ms", agent},
		snapRow{label, "snapshot: status.size", "KiB", size},
		snapRow{label, "delete the VirtualCluster → gone (before each restore)", "s", deleted},
		snapRow{label, "restore: create VirtualCluster restore-from → phase Ready", "s", ready},
		snapRow{label, "restore: … → first list of namespaces, published kubeconfig", "s", firstGet},
	)
}

// benchFork forks a snapshot of an empty virtual cluster n times, and
// creates n virtual clusters without one, under an agent with a warm pool
// of pool.
func benchFork(b *testing.B, label string, n, pool int) []snapRow {
	e := startSnapEnv(b, pool)
	const ns = "bench-fork"
	e.namespace(b, ns)
	e.createVC(b, ns, "src", nil)
	e.waitReady(b, ns, "src")
	srcID := kubeSystemUID(b, e.firstList(b, ns, "src"))
	e.snapshot(b, ns, "src", "src-snap")

	measure := func(name string, annotations map[string]string) (ready, firstGet float64, pooled bool, vc *storagev1.VirtualCluster, cs kubernetes.Interface) {
		waitPoolFull(b, e.stateDir, pool)
		t0 := e.createVC(b, ns, name, annotations)
		vc = e.waitReady(b, ns, name)
		ready = time.Since(t0).Seconds()
		cs = e.firstList(b, ns, name)
		firstGet = time.Since(t0).Seconds()
		fi, err := os.Lstat(filepath.Join(e.stateDir, "vclusters", ns, name))
		if err != nil {
			b.Fatal(err)
		}
		return ready, firstGet, fi.Mode()&os.ModeSymlink != 0, vc, cs
	}
	var forkReady, forkGet, createReady, createGet []float64
	forksPooled, createsPooled := 0, 0
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("fork-%d", i)
		ready, get, pooled, vc, cs := measure(name, map[string]string{storagev1.AnnotationForkFrom: "src-snap"})
		forkReady, forkGet = append(forkReady, ready), append(forkGet, get)
		if pooled {
			forksPooled++
		}
		if c := conditionOf(vc, storagev1.ConditionRestored); c == nil || c.Reason != "Forked" {
			b.Fatalf("%s: condition Restored %+v", name, c)
		}
		if id := kubeSystemUID(b, cs); id == srcID {
			b.Fatalf("%s kept the source's kube-system UID %s", name, id)
		}
		e.deleteVC(b, ns, name)
	}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("new-%d", i)
		ready, get, pooled, _, _ := measure(name, nil)
		createReady, createGet = append(createReady, ready), append(createGet, get)
		if pooled {
			createsPooled++
		}
		e.deleteVC(b, ns, name)
	}

	b.ReportMetric(median(forkReady), "s-fork-to-Ready-p50")
	b.ReportMetric(median(forkGet), "s-fork-to-get-ns-p50")
	b.ReportMetric(float64(forksPooled), "forks-from-pool")
	b.ReportMetric(median(createReady), "s-create-to-Ready-p50")
	b.ReportMetric(median(createGet), "s-create-to-get-ns-p50")
	b.ReportMetric(float64(createsPooled), "creates-from-pool")
	b.ReportMetric(0, "ns/op")
	return []snapRow{
		{label, fmt.Sprintf("fork: create VirtualCluster fork-from → phase Ready (%d of %d from the pool)", forksPooled, n), "s", forkReady},
		{label, "fork: … → first list of namespaces, published kubeconfig", "s", forkGet},
		{label, fmt.Sprintf("new cluster, no snapshot: create → phase Ready (%d of %d from the pool)", createsPooled, n), "s", createReady},
		{label, "new cluster, no snapshot: … → first list of namespaces", "s", createGet},
	}
}

// snapEnv is a host and `sublet agent` (process runtime) on it.
type snapEnv struct {
	stateDir string
	cl       client.Client        // VirtualClusters and their snapshots
	kube     kubernetes.Interface // the host, unthrottled
}

// startSnapEnv starts a host and an agent with a warm pool of pool; both
// and the agent's children are killed when b ends.
func startSnapEnv(b *testing.B, pool int) *snapEnv {
	b.Helper()
	ctx := context.Background()
	h, err := testenv.StartHost(ctx, b.TempDir(), 2)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(h.Kill)
	stateDir := b.TempDir()
	agent, _, err := testenv.StartUntil(ctx, "Sublet agent is running", "agent", "--kubeconfig", h.Kubeconfig,
		"--state-dir", stateDir, "--metrics-bind-address", "0", "--leader-elect=false", "--warm-pool", strconv.Itoa(pool))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { agent.Kill(); killPidFiles(stateDir) })
	scheme := runtime.NewScheme()
	if err := storagev1.AddToScheme(scheme); err != nil {
		b.Fatal(err)
	}
	cfg := rest.CopyConfig(h.Config)
	cfg.QPS, cfg.Burst = 1000, 1000
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	return &snapEnv{stateDir: stateDir, cl: cl, kube: kubernetes.NewForConfigOrDie(cfg)}
}

func (e *snapEnv) namespace(b *testing.B, ns string) {
	b.Helper()
	if _, err := e.kube.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
}

// createVC creates VirtualCluster ns/name with annotations and returns the
// time just before the request.
func (e *snapEnv) createVC(b *testing.B, ns, name string, annotations map[string]string) time.Time {
	b.Helper()
	vc := &storagev1.VirtualCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: annotations}}
	t0 := time.Now()
	if err := e.cl.Create(context.Background(), vc); err != nil {
		b.Fatal(err)
	}
	return t0
}

// waitReady polls VirtualCluster ns/name until its phase is Ready.
func (e *snapEnv) waitReady(b *testing.B, ns, name string) *storagev1.VirtualCluster {
	b.Helper()
	vc := &storagev1.VirtualCluster{}
	e.poll(b, ns+"/"+name+" Ready", func(ctx context.Context) bool {
		if err := e.cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, vc); err != nil {
			return false
		}
		if vc.Status.Phase == storagev1.PhaseFailed {
			b.Fatalf("virtual cluster %s/%s failed: %s", ns, name, vc.Status.Message)
		}
		return vc.Status.Phase == storagev1.PhaseReady
	})
	return vc
}

// firstList lists namespaces in virtual cluster ns/name with the kubeconfig
// of its Secret vc-NAME until that succeeds, and returns the client.
func (e *snapEnv) firstList(b *testing.B, ns, name string) kubernetes.Interface {
	b.Helper()
	var cs kubernetes.Interface
	e.poll(b, "a list of namespaces in "+ns+"/"+name, func(ctx context.Context) bool {
		s, err := e.kube.CoreV1().Secrets(ns).Get(ctx, storagev1.KubeconfigSecretName(name), metav1.GetOptions{})
		if err != nil {
			return false
		}
		cfg, err := clientcmd.RESTConfigFromKubeConfig(s.Data["config"])
		if err != nil {
			return false
		}
		cfg.QPS, cfg.Burst, cfg.Timeout = 1000, 1000, 10*time.Second
		c := kubernetes.NewForConfigOrDie(cfg)
		if _, err := c.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err != nil {
			return false
		}
		cs = c
		return true
	})
	return cs
}

// deleteVC deletes VirtualCluster ns/name and waits until it is gone (the
// agent stopped it and removed its data and host objects).
func (e *snapEnv) deleteVC(b *testing.B, ns, name string) {
	b.Helper()
	vc := &storagev1.VirtualCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	if err := e.cl.Delete(context.Background(), vc); err != nil {
		b.Fatal(err)
	}
	e.poll(b, ns+"/"+name+" gone", func(ctx context.Context) bool {
		return apierrors.IsNotFound(e.cl.Get(ctx, client.ObjectKeyFromObject(vc), vc))
	})
}

// snapshot creates VirtualClusterSnapshot ns/name of virtual cluster vc at
// the default location and waits until it is Completed.
func (e *snapEnv) snapshot(b *testing.B, ns, vc, name string) *storagev1.VirtualClusterSnapshot {
	b.Helper()
	s := &storagev1.VirtualClusterSnapshot{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       storagev1.VirtualClusterSnapshotSpec{VirtualCluster: vc},
	}
	if err := e.cl.Create(context.Background(), s); err != nil {
		b.Fatal(err)
	}
	e.poll(b, "snapshot "+ns+"/"+name+" Completed", func(ctx context.Context) bool {
		if err := e.cl.Get(ctx, client.ObjectKeyFromObject(s), s); err != nil {
			return false
		}
		if s.Status.Phase == storagev1.SnapshotFailed {
			b.Fatalf("snapshot %s/%s failed: %s", ns, name, s.Status.Message)
		}
		return s.Status.Phase == storagev1.SnapshotCompleted
	})
	return s
}

// poll calls done every 20 ms until it is true, for at most 3 minutes.
func (e *snapEnv) poll(b *testing.B, what string, done func(context.Context) bool) {
	b.Helper()
	ctx := context.Background()
	for deadline := time.Now().Add(3 * time.Minute); !done(ctx); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("%s: not after 3m", what)
		}
	}
}

// fillVirtualCluster creates the load in the virtual cluster cs: the
// ConfigMaps hold random base64 text, so that the snapshot's compression
// does not make them vanish.
func fillVirtualCluster(b *testing.B, cs kubernetes.Interface) {
	b.Helper()
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: loadNamespace}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	values := make([]string, loadConfigMaps)
	for i := range values {
		raw := make([]byte, configMapBytes*3/4)
		for j := range raw {
			raw[j] = byte(rng.Uint32())
		}
		values[i] = base64.StdEncoding.EncodeToString(raw)
	}
	labels := map[string]string{loadLabel: "snapshot"}
	create := func(i int) error {
		if i < loadConfigMaps {
			_, err := cs.CoreV1().ConfigMaps(loadNamespace).Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%04d", i), Labels: labels},
				Data:       map[string]string{"value": values[i]},
			}, metav1.CreateOptions{})
			return err
		}
		name := fmt.Sprintf("deploy-%03d", i-loadConfigMaps)
		sel := map[string]string{"app": name}
		_, err := cs.AppsV1().Deployments(loadNamespace).Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](0),
				Selector: &metav1.LabelSelector{MatchLabels: sel},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: sel},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
				},
			},
		}, metav1.CreateOptions{})
		return err
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if err := create(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < loadConfigMaps+loadDeploys; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
}

// checkLoad fails b unless the virtual cluster cs holds the whole load.
func checkLoad(b *testing.B, ctx context.Context, cs kubernetes.Interface) {
	b.Helper()
	sel := metav1.ListOptions{LabelSelector: loadLabel + "=snapshot"}
	cms, err := cs.CoreV1().ConfigMaps(loadNamespace).List(ctx, sel)
	if err != nil {
		b.Fatal(err)
	}
	deploys, err := cs.AppsV1().Deployments(loadNamespace).List(ctx, sel)
	if err != nil {
		b.Fatal(err)
	}
	if len(cms.Items) != loadConfigMaps || len(deploys.Items) != loadDeploys {
		b.Fatalf("restored cluster holds %d ConfigMaps and %d Deployments of the load, want %d and %d", len(cms.Items), len(deploys.Items), loadConfigMaps, loadDeploys)
	}
	for _, cm := range cms.Items {
		if len(cm.Data["value"]) != configMapBytes {
			b.Fatalf("restored ConfigMap %s holds %d bytes, want %d", cm.Name, len(cm.Data["value"]), configMapBytes)
		}
	}
}

func kubeSystemUID(b *testing.B, cs kubernetes.Interface) string {
	b.Helper()
	ns, err := cs.CoreV1().Namespaces().Get(context.Background(), "kube-system", metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return string(ns.UID)
}

func conditionOf(vc *storagev1.VirtualCluster, typ string) *metav1.Condition {
	for i := range vc.Status.Conditions {
		if vc.Status.Conditions[i].Type == typ {
			return &vc.Status.Conditions[i]
		}
	}
	return nil
}

// snapRow is one figure of BenchmarkSnapshot's table: its runs in unit.
type snapRow struct {
	cluster, what, unit string
	runs                []float64
}

// printSnapTable prints rows to stdout: a parent benchmark's log is shown
// only with -v.
func printSnapTable(rows []snapRow, n int) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "\nBenchmarkSnapshot, %d runs each\ncluster\twhat\tp50\tmean\truns\n", n)
	for _, r := range rows {
		format := "%.2f"
		if r.unit != "s" {
			format = "%.0f"
		}
		var sum float64
		runs := ""
		for i, v := range r.runs {
			sum += v
			if i > 0 {
				runs += ", "
			}
			runs += fmt.Sprintf(format, v)
		}
		fmt.Fprintf(w, "%s\t%s\t"+format+" %s\t"+format+" %s\t%s\n", r.cluster, r.what, median(r.runs), r.unit, sum/float64(len(r.runs)), r.unit, runs)
	}
	_ = w.Flush()
}
