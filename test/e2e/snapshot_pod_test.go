package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/sleepmode"
	"github.com/sublet-dev/sublet/internal/testenv"
)

// TestSnapshotsPodRuntime: the pod runtime snapshots, restores and forks
// through each pod's data endpoint. The agent runs with --runtime pod on
// the local host; the test is the kubelet of its StatefulSets' pods and
// runs each under runc as TestImageUnderRunc does, with one change: a
// --kubeconfig-server this machine reaches (the Service's name resolves
// only inside a cluster). The chart fixes the pod's ports, so one pod runs
// at a time, and a later pod of a StatefulSet gets the same volume back.
// It checks that the data endpoint refuses the cluster's own admin; that a
// snapshot of the running pod is taken; that a restore puts the
// snapshot's objects back in the same container (the runtime restarts
// itself on the new data, which replaces the contents of its volume's
// mount point); that asleep, a snapshot and a restore are made by a pod
// that serves the data alone and goes away again, the cluster staying
// asleep and waking on the restored data; and that a fork's new cluster
// is not Ready before it holds the snapshot's data, under a new identity.
func TestSnapshotsPodRuntime(t *testing.T) {
	needHost(t)
	bin, err := testenv.Binary()
	if err != nil {
		t.Fatal(err)
	}
	runc := needRunc(t, bin)
	ip := nodeIP(t)
	rootfs, cf := imageRootFS(t, bin)
	stateDir := t.TempDir()
	startAgent(t, stateDir, "--runtime", "pod", "--image", "registry.local:5000/sublet:e2e")
	ns := createNamespace(t, host.Client, "snap-pod")
	t.Cleanup(func() {
		_ = exec.Command("kubectl", "--kubeconfig", host.Kubeconfig, "delete", "virtualclusters", "--all", "-n", ns, "--timeout=60s").Run()
	})
	apply := func(kind, name, rest string) {
		t.Helper()
		kubectl(t, host.Kubeconfig, fmt.Sprintf("apiVersion: storage.loft.sh/v1\nkind: %s\nmetadata:\n  name: %s\n  namespace: %s\n%s", kind, name, ns, rest), "apply", "-f", "-")
	}
	ctx := context.Background()

	apply("VirtualCluster", "pv", "spec: {}\n")
	first := runVClusterPod(t, runc, rootfs, cf.Config, ns, "pv", ip, "first", "")
	waitVCPhase(t, ns, "pv", storagev1.PhaseReady, 3*time.Minute)
	vc := first.client(t)
	keep, err := vc.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "keep"}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id := clusterID(t, vc)

	step(t, "the data endpoint refuses the cluster's own admin", func(t *testing.T) {
		for _, token := range []string{"", "not-the-token"} {
			if code := first.dataRequest(t, token); code != http.StatusForbidden {
				t.Errorf("GET %s as the cluster's admin with token %q: %d, want 403", storagev1.DataPath, token, code)
			}
		}
	})

	step(t, "snapshot of the running pod", func(t *testing.T) {
		apply("VirtualClusterSnapshot", "pv-1", "spec: {virtualCluster: pv}\n")
		s := waitSnapshotCompleted(t, ns, "pv-1")
		if s.Status.Datastore != "sqlite" || s.Status.Size == 0 || s.Status.SourceSleeping {
			t.Fatalf("snapshot of the pod runtime's cluster: %+v", s.Status)
		}
	})

	step(t, "restore into the running pod", func(t *testing.T) {
		if err := vc.CoreV1().ConfigMaps("default").Delete(ctx, "keep", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := vc.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "later"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		kubectl(t, host.Kubeconfig, "", "annotate", "virtualcluster", "pv", "-n", ns, storagev1.AnnotationRestoreFrom+"=pv-1")
		restored := waitSeeded(t, ns, "pv", "Restored")
		if restored.Status.Phase != storagev1.PhaseReady {
			t.Fatalf("after the restore: phase %s (%s)", restored.Status.Phase, restored.Status.Message)
		}
		select {
		case <-first.c.exited:
			t.Fatalf("the container exited on the restore; it should restart its runtime in place:\n%s", testenv.Tail(first.c.output(), 40))
		default:
		}
		vc = first.client(t)
		got, err := vc.CoreV1().ConfigMaps("default").Get(ctx, "keep", metav1.GetOptions{})
		if err != nil || got.UID != keep.UID || got.Data["k"] != "v" {
			t.Fatalf("after the restore, configmap keep: %v %+v; want UID %s back", err, got, keep.UID)
		}
		if _, err := vc.CoreV1().ConfigMaps("default").Get(ctx, "later", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("after the restore, configmap later (made after the snapshot): %v, want NotFound", err)
		}
		if got := clusterID(t, vc); got != id {
			t.Fatalf("cluster ID %s after the restore, want %s", got, id)
		}
	})

	// Asleep, the cluster's release runs a pod that serves its volume's data
	// alone while the agent snapshots or restores it, then goes back to 0.
	step(t, "snapshot and restore of the sleeping cluster, without waking it", func(t *testing.T) {
		if _, err := vc.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "before-sleep"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		kubectl(t, host.Kubeconfig, "", "annotate", "virtualcluster", "pv", "-n", ns, storagev1.AnnotationForceSleep+"=true")
		waitReplicas(t, ns, "pv", 0)
		first.c.stop(t, 30*time.Second)
		waitVCPhase(t, ns, "pv", storagev1.PhaseSleeping, 2*time.Minute)

		apply("VirtualClusterSnapshot", "pv-asleep", "spec: {virtualCluster: pv}\n")
		waitReplicas(t, ns, "pv", 1)
		serving := runVClusterPod(t, runc, rootfs, cf.Config, ns, "pv", ip, "data-1", first.data)
		if s := waitSnapshotCompleted(t, ns, "pv-asleep"); !s.Status.SourceSleeping || s.Status.Size == 0 {
			t.Fatalf("snapshot of the sleeping cluster: %+v", s.Status)
		}
		if code := serving.dataRequest(t, "not-the-token"); code != http.StatusForbidden {
			t.Errorf("GET %s of the data-only pod as the cluster's admin without its token: %d, want 403", storagev1.DataPath, code)
		}
		waitReplicas(t, ns, "pv", 0)
		serving.c.stop(t, 30*time.Second)

		kubectl(t, host.Kubeconfig, "", "annotate", "virtualcluster", "pv", "-n", ns, storagev1.AnnotationRestoreFrom+"=pv-1")
		waitReplicas(t, ns, "pv", 1)
		serving = runVClusterPod(t, runc, rootfs, cf.Config, ns, "pv", ip, "data-2", first.data)
		poll(t, 2*time.Minute, "the restore of the sleeping cluster", func(context.Context) (bool, error) {
			v := vcStatus(t, ns, "pv")
			c := meta.FindStatusCondition(v.Status.Conditions, storagev1.ConditionRestored)
			if c != nil && c.Status == metav1.ConditionFalse && c.Reason != "WaitingToRun" {
				return false, fmt.Errorf("%s: %s", c.Reason, c.Message)
			}
			_, restoring := v.Annotations[storagev1.AnnotationRestoreFrom]
			return !restoring && c != nil && c.Status == metav1.ConditionTrue, nil
		})
		waitReplicas(t, ns, "pv", 0)
		serving.c.stop(t, 30*time.Second)
		if phase := vcStatus(t, ns, "pv").Status.Phase; phase != storagev1.PhaseSleeping {
			t.Fatalf("after a snapshot and a restore while asleep, the cluster is %s, want still Sleeping", phase)
		}

		// Woken, it runs on the restored data.
		kubectl(t, host.Kubeconfig, "", "patch", "virtualcluster", "pv", "-n", ns, "--type=merge",
			"-p", string(sleepmode.AnnotationsPatch(sleepmode.WakeupAnnotations(time.Now()))))
		waitReplicas(t, ns, "pv", 1)
		woken := runVClusterPod(t, runc, rootfs, cf.Config, ns, "pv", ip, "woken", first.data)
		waitVCPhase(t, ns, "pv", storagev1.PhaseReady, 2*time.Minute)
		vc = woken.client(t)
		if got, err := vc.CoreV1().ConfigMaps("default").Get(ctx, "keep", metav1.GetOptions{}); err != nil || got.UID != keep.UID {
			t.Fatalf("woken after a restore while asleep, configmap keep: %v %+v; want UID %s", err, got, keep.UID)
		}
		if _, err := vc.CoreV1().ConfigMaps("default").Get(ctx, "before-sleep", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("woken after a restore while asleep, configmap before-sleep (made after the snapshot): %v, want NotFound", err)
		}
		woken.c.stop(t, 30*time.Second)
	})

	step(t, "fork into a new pod", func(t *testing.T) {
		apply("VirtualCluster", "pf", "  annotations: {storage.loft.sh/fork-from: pv-asleep}\nspec: {}\n")
		second := runVClusterPod(t, runc, rootfs, cf.Config, ns, "pf", ip, "fork", "")
		forked := waitSeeded(t, ns, "pf", "Forked")
		if forked.Status.Phase != storagev1.PhaseReady {
			t.Fatalf("the fork: phase %s (%s)", forked.Status.Phase, forked.Status.Message)
		}
		// Its first Ready came after its fork, not on its own fresh data.
		if forkedAt, readyAt := firstEvent(t, ns, "pf", "Forked"), firstEvent(t, ns, "pf", "Ready"); readyAt.Before(forkedAt) {
			t.Fatalf("the fork was reported Ready at %s, before it was forked at %s", readyAt, forkedAt)
		}
		fork := second.client(t)
		if cm, err := fork.CoreV1().ConfigMaps("default").Get(ctx, "keep", metav1.GetOptions{}); err != nil || cm.Data["k"] != "v" {
			t.Fatalf("the fork's configmap keep: %v %+v", err, cm)
		}
		// The snapshot taken asleep holds what the cluster had when it fell asleep.
		if _, err := fork.CoreV1().ConfigMaps("default").Get(ctx, "before-sleep", metav1.GetOptions{}); err != nil {
			t.Fatalf("the fork of the snapshot taken asleep, configmap before-sleep: %v", err)
		}
		if clusterID(t, fork) == id {
			t.Fatal("the fork kept the source's cluster ID")
		}
	})
}

// vclusterPod is a pod of the pod runtime's StatefulSet run under runc.
type vclusterPod struct {
	c      *container
	data   string // its volume
	server string // its API server, as this machine reaches it
}

// runVClusterPod runs pod 0 of StatefulSet ns/name, as the agent made it,
// under runc in container ID id of the image's root file system rootfs,
// with its claim's volume data (a new one if ""), and waits for its
// readiness probe.
func runVClusterPod(t *testing.T, runc runcCLI, rootfs string, cfg v1.Config, ns, name, ip, id, data string) vclusterPod {
	t.Helper()
	var sts *appsv1.StatefulSet
	poll(t, 90*time.Second, "the release's StatefulSet "+name, func(ctx context.Context) (bool, error) {
		s, err := host.Client.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
		sts = s
		return err == nil, nil
	})
	sts = sts.DeepCopy()
	pod := statefulSetPod(sts, ns, ip)
	server := "https://" + net.JoinHostPort(ip, pod.port(t, "https"))
	ctr := &sts.Spec.Template.Spec.Containers[0]
	ctr.Args = append(ctr.Args, "--kubeconfig-server="+server)
	pod = statefulSetPod(sts, ns, ip)
	pod.refusePortsInUse(t)
	dir := t.TempDir()
	bundle := filepath.Join(dir, "bundle")
	if data == "" {
		data = filepath.Join(dir, "data")
	}
	if err := os.Mkdir(bundle, 0o755); err != nil {
		t.Fatal(err)
	}
	writeJSON(t, filepath.Join(bundle, "config.json"), pod.ociSpec(t, cfg, rootfs, dir, data))
	c := runc.start(t, "sublet-e2e-"+id+"-"+strconv.Itoa(os.Getpid()), bundle)
	waitReady(t, pod.probeURL(t), c.exited, c.output)
	return vclusterPod{c: c, data: data, server: server}
}

// client is a client of the pod's virtual cluster as its admin, with the
// admin kubeconfig its current start wrote.
func (p vclusterPod) client(t *testing.T) kubernetes.Interface {
	t.Helper()
	var cs kubernetes.Interface
	poll(t, time.Minute, "the pod's virtual API server to answer its admin", func(ctx context.Context) (bool, error) {
		cs = virtualClient(t, filepath.Join(p.data, "admin.kubeconfig"), p.server)
		_, err := cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	return cs
}

// dataRequest sends GET storagev1.DataPath with token as the cluster's
// admin and returns the status code.
func (p vclusterPod) dataRequest(t *testing.T, token string) int {
	t.Helper()
	cfg := restConfigOf(t, filepath.Join(p.data, "admin.kubeconfig"))
	cfg.Host = p.server
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodGet, p.server+storagev1.DataPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set(storagev1.DataTokenHeader, token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitSnapshotCompleted waits for snapshot ns/name to be taken.
func waitSnapshotCompleted(t *testing.T, ns, name string) *storagev1.VirtualClusterSnapshot {
	t.Helper()
	var s *storagev1.VirtualClusterSnapshot
	poll(t, 2*time.Minute, "snapshot "+name, func(context.Context) (bool, error) {
		s = snapshotObject(t, ns, name)
		if s.Status.Phase == storagev1.SnapshotFailed {
			return false, fmt.Errorf("snapshot %s failed: %s", name, s.Status.Message)
		}
		return s.Status.Phase == storagev1.SnapshotCompleted, nil
	})
	return s
}

// waitSeeded waits until virtual cluster ns/name's restore or fork is
// done (its Restored condition has reason, its annotation went) and it is
// Ready again; a failed one fails the test.
func waitSeeded(t *testing.T, ns, name, reason string) *storagev1.VirtualCluster {
	t.Helper()
	var vc *storagev1.VirtualCluster
	poll(t, 4*time.Minute, name+"'s "+reason+" condition and Ready", func(context.Context) (bool, error) {
		vc = vcStatus(t, ns, name)
		c := meta.FindStatusCondition(vc.Status.Conditions, storagev1.ConditionRestored)
		if c != nil && c.Status == metav1.ConditionFalse && c.Reason != "WaitingToRun" {
			return false, fmt.Errorf("%s: %s", c.Reason, c.Message)
		}
		_, restoring := vc.Annotations[storagev1.AnnotationRestoreFrom]
		_, forking := vc.Annotations[storagev1.AnnotationForkFrom]
		if forking && vc.Status.Phase == storagev1.PhaseReady {
			// A new cluster is Ready only on the snapshot's data.
			return false, fmt.Errorf("%s is Ready before it was forked: %s", name, vc.Status.Message)
		}
		if c == nil || c.Reason != reason || restoring || forking {
			return false, nil
		}
		return vc.Status.Phase == storagev1.PhaseReady, nil
	})
	return vc
}

// firstEvent is when virtual cluster ns/name first got an event with
// reason (waiting for one).
func firstEvent(t *testing.T, ns, name, reason string) time.Time {
	t.Helper()
	var first time.Time
	poll(t, time.Minute, "event "+reason+" of "+name, func(ctx context.Context) (bool, error) {
		list, err := host.Client.EventsV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "regarding.name=" + name + ",reason=" + reason})
		if err != nil {
			return false, nil
		}
		for _, e := range list.Items {
			if first.IsZero() || e.EventTime.Time.Before(first) {
				first = e.EventTime.Time
			}
		}
		return !first.IsZero(), nil
	})
	return first
}

// waitReplicas waits until the agent set StatefulSet ns/name to n
// replicas: the test, as the kubelet, then starts or stops its pod.
func waitReplicas(t *testing.T, ns, name string, n int32) {
	t.Helper()
	poll(t, 2*time.Minute, fmt.Sprintf("StatefulSet %s at %d replicas", name, n), func(ctx context.Context) (bool, error) {
		s, err := host.Client.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && s.Spec.Replicas != nil && *s.Spec.Replicas == n, nil
	})
}
