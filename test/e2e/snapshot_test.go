package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	clientv3 "go.etcd.io/etcd/client/v3"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/controlplane"
	"github.com/sublet-dev/sublet/internal/snapshot"
	"github.com/sublet-dev/sublet/internal/syncer"
	"github.com/sublet-dev/sublet/internal/testenv"
	"github.com/sublet-dev/sublet/internal/translate"
)

// TestSnapshots, as a team that may manage VirtualClusters and their
// snapshots in its own namespace and nothing else: a snapshot of a running
// cluster (to a file and to an OCI registry started here) keeps it
// running; a fork has the objects and data but a new CA, service-account
// key, cluster ID and tokens, and its own host pods; a snapshot of a
// sleeping cluster leaves it asleep; snapshot → delete → restore brings
// every object back with its UID, the same identity (old tokens valid) and
// the host pod; bad input (locations outside the team's, a snapshot of
// another platform, a corrupt one, unknown names) is a one-line error that
// leaves every cluster as it was.
func TestSnapshots(t *testing.T) {
	needHost(t)
	regHost := startRegistry(t)
	agentArgs := []string{"--snapshot-registries", regHost + "/snaps", "--snapshot-min-interval", "2s"}
	p := startPlatformAgent(t, agentArgs)
	whole := t // the agent started again outlives the step
	tm := newTeam(t, p)
	kubectl(t, host.Kubeconfig, "", "create", "role", "vc-snapshots", "-n", tm.ns, "--verb=get,list,watch,create,delete",
		"--resource=virtualclustersnapshots.storage.loft.sh")
	kubectl(t, host.Kubeconfig, "", "create", "rolebinding", "vc-snapshots", "-n", tm.ns, "--role=vc-snapshots", "--user="+tm.user)
	at := []string{"--cluster", p.cluster, "--space", tm.ns}

	if out, ok := tm.create(t, "src"); !ok {
		t.Fatalf("create src: %s", out)
	}
	src := tm.client(t)
	ctx := context.Background()
	kubectl(t, tm.kubeconfig, "", "create", "configmap", "data", "--from-literal=k=before")
	kubectl(t, tm.kubeconfig, "", "run", "web", "--image=nginx")
	kubectl(t, tm.kubeconfig, "", "wait", "--for=condition=Ready", "pod/web", "--timeout=90s")
	tokenSecret := `apiVersion: v1
kind: Secret
metadata: {name: legacy, annotations: {kubernetes.io/service-account.name: default}}
type: kubernetes.io/service-account-token
`
	kubectl(t, tm.kubeconfig, tokenSecret, "apply", "-f", "-")
	srcLegacy := waitTokenSecret(t, src, "")
	cm, err := src.CoreV1().ConfigMaps("default").Get(ctx, "data", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srcID := clusterID(t, src)
	srcToken := serviceAccountToken(t, src)
	srcDirect := directConfig(t, tm.ns, "src")
	if !tokenValid(t, srcDirect, srcToken) {
		t.Fatal("a fresh token of the source is refused by the source")
	}

	var snap string
	step(t, "snapshot of a running cluster", func(t *testing.T) {
		out := sublet(t, append([]string{"snapshot", "vcluster", "src"}, at...)...)
		snap = lastLine(out)
		s := snapshotObject(t, tm.ns, snap)
		if s.Status.Phase != storagev1.SnapshotCompleted || s.Status.Size == 0 || s.Status.SourceSleeping || s.Status.KubernetesVersion == "" {
			t.Fatalf("snapshot %s: %+v", snap, s.Status)
		}
		file := filepath.Join(p.stateDir, "snapshots", tm.ns, snap+".snapshot")
		if s.Status.Location != file {
			t.Fatalf("location %q, want %q", s.Status.Location, file)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), "BEGIN EC PRIVATE KEY") || strings.Contains(string(data), "BEGIN RSA PRIVATE KEY") {
			t.Fatal("the snapshot holds a private key in the clear")
		}
		if vcStatus(t, tm.ns, "src").Status.Phase != storagev1.PhaseReady {
			t.Fatal("the source is not Ready after its snapshot")
		}
		if _, err := src.CoreV1().ConfigMaps("default").Get(ctx, "data", metav1.GetOptions{}); err != nil {
			t.Fatalf("the source does not answer after its snapshot: %v", err)
		}
		listed := sublet(t, "list", "snapshots", "--cluster", p.cluster, "--space", tm.ns)
		if !strings.Contains(listed, snap) || !strings.Contains(listed, "Completed") {
			t.Fatalf("sublet list snapshots:\n%s", listed)
		}
	})

	step(t, "an agent killed while it writes a snapshot", func(t *testing.T) {
		gvr := storagev1.GroupVersion.WithResource("virtualclustersnapshots")
		w, err := dynamic.NewForConfigOrDie(restConfigOf(t, host.Kubeconfig)).Resource(gvr).Namespace(tm.ns).
			Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=killed"})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		kubectl(t, host.Kubeconfig, fmt.Sprintf("apiVersion: storage.loft.sh/v1\nkind: VirtualClusterSnapshot\nmetadata: {name: killed, namespace: %s}\nspec: {virtualCluster: src}\n", tm.ns), "apply", "-f", "-")
		for ev := range w.ResultChan() {
			if u, ok := ev.Object.(*unstructured.Unstructured); ok {
				if phase, _, _ := unstructured.NestedString(u.Object, "status", "phase"); phase != "" {
					break // InProgress, or already done
				}
			}
		}
		p.agent.Kill()
		mid := snapshotObject(t, tm.ns, "killed").Status.Phase
		t.Logf("the agent was killed with the snapshot %s", mid)
		if _, err := src.CoreV1().ConfigMaps("default").Get(ctx, "data", metav1.GetOptions{}); err != nil {
			t.Fatalf("the source does not answer with its agent killed mid-snapshot: %v", err)
		}
		p.agent = startAgent(whole, p.stateDir, agentArgs...)
		poll(t, time.Minute, "the snapshot to be taken again", func(context.Context) (bool, error) {
			return snapshotObject(t, tm.ns, "killed").Status.Phase == storagev1.SnapshotCompleted, nil
		})
		if work, _ := filepath.Glob(filepath.Join(p.stateDir, "snapshots", ".work", "*")); len(work) > 0 {
			t.Fatalf("work left behind: %v", work)
		}
	})

	step(t, "snapshot to an OCI registry", func(t *testing.T) {
		ref := fmt.Sprintf("%s/snaps/%s/src:t1", regHost, tm.ns)
		out := sublet(t, append([]string{"snapshot", "vcluster", "src", "--to", "oci://" + ref, "--name", "src-oci", "--timeout", "90s"}, at...)...)
		if lastLine(out) != "src-oci" {
			t.Fatalf("last line of:\n%s", out)
		}
		r, err := name.ParseReference(ref)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Head(r)
		if err != nil {
			t.Fatalf("the registry has no %s: %v", ref, err)
		}
		if s := snapshotObject(t, tm.ns, "src-oci"); s.Status.Location != "oci://"+ref || desc.Digest.String() == "" {
			t.Fatalf("snapshot src-oci: %+v", s.Status)
		}
	})

	step(t, "bad locations and names are refused and change nothing", func(t *testing.T) {
		for _, c := range []struct{ to, want string }{
			{"/etc/sublet-snapshot", "is outside"},
			{"oci://" + regHost + "/snaps/other-team/src:x", "is not one snapshots of namespace " + tm.ns + " may use"},
			{"oci://" + regHost + "/elsewhere/" + tm.ns + "/src:x", "is not one snapshots of namespace"},
			{"relative/path", "absolute"},
		} {
			out, code, err := testenv.Run(time.Minute, append([]string{"snapshot", "vcluster", "src", "--to", c.to}, at...)...)
			if err != nil || code == 0 || !strings.Contains(out, c.want) {
				t.Errorf("snapshot --to %s: exit %d, %v, want %q in:\n%s", c.to, code, err, c.want, out)
			}
		}
		failFast(t, []string{"virtual cluster nope does not exist"}, append([]string{"snapshot", "vcluster", "nope"}, at...)...)
		failFast(t, []string{"snapshot nope does not exist"}, append([]string{"restore", "vcluster", "src", "--from", "nope"}, at...)...)
		// A snapshot of a namespace the team may not read is refused at
		// admission, whatever its name.
		vc := fmt.Sprintf("apiVersion: storage.loft.sh/v1\nkind: VirtualCluster\nmetadata: {name: thief, namespace: %s, annotations: {storage.loft.sh/fork-from: sublet-system/any}}\n", tm.ns)
		if out := kubectlFails(t, host.Kubeconfig, "--as", tm.user, "apply", "-f", writeTemp(t, vc)); !strings.Contains(out, "is not one you may read") {
			t.Fatalf("fork from another namespace's snapshot:\n%s", out)
		}
		if _, err := os.Stat("/etc/sublet-snapshot"); err == nil {
			t.Fatal("a snapshot was written outside the snapshot dir")
		}
	})

	step(t, "fork", func(t *testing.T) {
		out, ok := tm.create(t, "fork", "--from", "src")
		if !ok {
			t.Fatalf("fork: %s", out)
		}
		fork := tm.client(t)
		got, err := fork.CoreV1().ConfigMaps("default").Get(ctx, "data", metav1.GetOptions{})
		if err != nil || got.Data["k"] != "before" {
			t.Fatalf("the fork's configmap: %v %+v", err, got)
		}
		if id := clusterID(t, fork); id == srcID {
			t.Fatalf("the fork kept the source's cluster ID %s", id)
		}
		forkDirect := directConfig(t, tm.ns, "fork")
		if string(forkDirect.CAData) == string(srcDirect.CAData) {
			t.Fatal("the fork kept the source's CA")
		}
		if tokenValid(t, forkDirect, srcToken) {
			t.Fatal("a token of the source is valid in the fork")
		}
		if !tokenValid(t, forkDirect, serviceAccountToken(t, fork)) {
			t.Fatal("the fork refuses its own token")
		}
		if legacy := waitTokenSecret(t, fork, srcLegacy); legacy == srcLegacy {
			t.Fatal("the fork's service-account token secret kept the source's token")
		}
		waitHostPod(t, tm.ns, "fork", "web")
		if c := meta.FindStatusCondition(vcStatus(t, tm.ns, "fork").Status.Conditions, storagev1.ConditionRestored); c == nil || c.Reason != "Forked" {
			t.Fatalf("condition Restored of the fork: %+v", c)
		}
	})

	step(t, "snapshot of a sleeping cluster leaves it asleep", func(t *testing.T) {
		sublet(t, append([]string{"sleep", "vcluster", "fork"}, at...)...)
		out := sublet(t, append([]string{"snapshot", "vcluster", "fork"}, at...)...)
		s := snapshotObject(t, tm.ns, lastLine(out))
		if !s.Status.SourceSleeping || s.Status.Phase != storagev1.SnapshotCompleted {
			t.Fatalf("snapshot of the sleeping fork: %+v", s.Status)
		}
		if vc := vcStatus(t, tm.ns, "fork"); vc.Status.Phase != storagev1.PhaseSleeping || vc.Annotations[storagev1.AnnotationSleepingSince] == "" {
			t.Fatalf("the fork is %s after a snapshot while asleep", vc.Status.Phase)
		}
	})

	step(t, "scheduled snapshots keep the last N", func(t *testing.T) {
		// More often than the agent allows: refused, and said.
		kubectl(t, host.Kubeconfig, "", "annotate", "virtualcluster", "src", "-n", tm.ns, storagev1.AnnotationSnapshotSchedule+"=@every 1s")
		poll(t, time.Minute, "the schedule refused", func(context.Context) (bool, error) {
			c := meta.FindStatusCondition(vcStatus(t, tm.ns, "src").Status.Conditions, "SnapshotScheduleValid")
			return c != nil && c.Status == metav1.ConditionFalse && strings.Contains(c.Message, "--snapshot-min-interval"), nil
		})
		kubectl(t, host.Kubeconfig, "", "annotate", "--overwrite", "virtualcluster", "src", "-n", tm.ns,
			storagev1.AnnotationSnapshotSchedule+"=@every 2s", storagev1.AnnotationSnapshotKeep+"=2")
		seen := map[string]bool{}
		var live []storagev1.VirtualClusterSnapshot
		poll(t, 2*time.Minute, "three scheduled snapshots, two kept", func(ctx context.Context) (bool, error) {
			list := &storagev1.VirtualClusterSnapshotList{}
			out := kubectl(t, host.Kubeconfig, "", "get", "virtualclustersnapshots", "-n", tm.ns, "-l", storagev1.LabelScheduled+"=src", "-o", "json")
			if err := json.Unmarshal([]byte(out), list); err != nil {
				return false, err
			}
			live = list.Items
			completed := 0
			for _, s := range live {
				seen[s.Name] = true
				if s.Status.Phase == storagev1.SnapshotCompleted {
					completed++
				}
			}
			return len(seen) >= 4 && completed == 2, nil
		})
		if len(live) > 3 {
			t.Fatalf("%d scheduled snapshots kept with snapshot-keep 2", len(live))
		}
		// A deleted snapshot's file goes with it (the finalizer runs before
		// the object is gone, so the first ones' files are gone by now).
		for name := range seen {
			kept := false
			for _, s := range live {
				kept = kept || s.Name == name
			}
			_, err := os.Stat(filepath.Join(p.stateDir, "snapshots", tm.ns, name+".snapshot"))
			if !kept && err == nil {
				if _, gone := snapshotGone(t, tm.ns, name); gone {
					t.Errorf("the file of deleted snapshot %s is still there", name)
				}
			}
		}
		kubectl(t, host.Kubeconfig, "", "annotate", "virtualcluster", "src", "-n", tm.ns,
			storagev1.AnnotationSnapshotSchedule+"-", storagev1.AnnotationSnapshotKeep+"-")
	})

	step(t, "snapshot, delete, restore", func(t *testing.T) {
		sublet(t, append([]string{"use", "vcluster", "src"}, at...)...)
		kubectl(t, tm.kubeconfig, "", "create", "configmap", "after", "--from-literal=k=v")
		kubectl(t, tm.kubeconfig, "", "patch", "configmap", "data", "-p", `{"data":{"k":"changed"}}`)
		sublet(t, append([]string{"delete", "vcluster", "src"}, at...)...)
		out := sublet(t, append([]string{"restore", "vcluster", "src", "--from", snap}, at...)...)
		if !strings.Contains(out, "restored") {
			t.Fatalf("restore:\n%s", out)
		}
		sublet(t, append([]string{"use", "vcluster", "src"}, at...)...)
		src = tm.client(t)
		got, err := src.CoreV1().ConfigMaps("default").Get(ctx, "data", metav1.GetOptions{})
		if err != nil || got.Data["k"] != "before" || got.UID != cm.UID {
			t.Fatalf("restored configmap: %v %+v (UID before %s)", err, got, cm.UID)
		}
		if _, err := src.CoreV1().ConfigMaps("default").Get(ctx, "after", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("a configmap made after the snapshot is back: %v", err)
		}
		if id := clusterID(t, src); id != srcID {
			t.Fatalf("cluster ID %s after restore, want %s", id, srcID)
		}
		if !tokenValid(t, directConfig(t, tm.ns, "src"), srcToken) {
			t.Fatal("a token issued before the snapshot is refused after the restore")
		}
		waitHostPod(t, tm.ns, "src", "web")
	})

	step(t, "restore in place removes what came after", func(t *testing.T) {
		kubectl(t, tm.kubeconfig, "", "run", "late", "--image=nginx")
		kubectl(t, tm.kubeconfig, "", "wait", "--for=condition=Ready", "pod/late", "--timeout=90s")
		late := (translate.Translator{VCluster: "src", HostNamespace: tm.ns}).HostName("default", "late")
		if _, err := host.Client.CoreV1().Pods(tm.ns).Get(ctx, late, metav1.GetOptions{}); err != nil {
			t.Fatalf("the late pod's host pod: %v", err)
		}
		out := sublet(t, append([]string{"restore", "vcluster", "src", "--from", snap}, at...)...)
		if !strings.Contains(out, "Restoring virtual cluster src") {
			t.Fatalf("restore in place:\n%s", out)
		}
		sublet(t, append([]string{"use", "vcluster", "src"}, at...)...)
		src = tm.client(t)
		if _, err := src.CoreV1().Pods("default").Get(ctx, "late", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("a pod made after the snapshot is back: %v", err)
		}
		poll(t, time.Minute, "the host pod of a pod the snapshot lacks to go", func(ctx context.Context) (bool, error) {
			_, err := host.Client.CoreV1().Pods(tm.ns).Get(ctx, late, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		waitHostPod(t, tm.ns, "src", "web")
	})

	step(t, "a snapshot of another platform, or corrupt, is refused and the cluster keeps serving", func(t *testing.T) {
		dir := filepath.Join(p.stateDir, "snapshots", tm.ns)
		foreign := filepath.Join(dir, "foreign.snapshot")
		writeForeignSnapshot(t, foreign, tm.ns)
		corrupt := filepath.Join(dir, "corrupt.snapshot")
		data, err := os.ReadFile(filepath.Join(dir, snap+".snapshot"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(corrupt, data[:len(data)/2], 0o600); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct{ from, want string }{{foreign, "another platform"}, {corrupt, "corrupt"}} {
			out, code, err := testenv.Run(2*time.Minute, append([]string{"restore", "vcluster", "src", "--from", c.from}, at...)...)
			if err != nil || code == 0 || !strings.Contains(out, c.want) {
				t.Errorf("restore --from %s: exit %d, %v, want %q in:\n%s", c.from, code, err, c.want, out)
			}
			if got, err := src.CoreV1().ConfigMaps("default").Get(ctx, "data", metav1.GetOptions{}); err != nil || got.UID != cm.UID {
				t.Fatalf("src after a refused restore: %v %+v", err, got)
			}
		}
		// Built for this platform's recipient, which every manifest shows,
		// with a file the control plane would read and dial.
		crafted := filepath.Join(dir, "crafted.snapshot")
		writeCraftedSnapshot(t, filepath.Join(dir, snap+".snapshot"), crafted, func(data string) {
			kc := "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://192.0.2.1:443'}}]\n"
			if err := os.WriteFile(filepath.Join(data, "admin.kubeconfig"), []byte(kc), 0o600); err != nil {
				t.Fatal(err)
			}
		})
		out, code, err := testenv.Run(2*time.Minute, append([]string{"restore", "vcluster", "src", "--from", crafted}, at...)...)
		if err != nil || code == 0 || !strings.Contains(out, "not a data dir Sublet wrote") || !strings.Contains(out, "admin.kubeconfig") {
			t.Errorf("restore --from a crafted snapshot: exit %d, %v:\n%s", code, err, out)
		}
		if got, err := src.CoreV1().ConfigMaps("default").Get(ctx, "data", metav1.GetOptions{}); err != nil || got.UID != cm.UID {
			t.Fatalf("src after a refused restore: %v %+v", err, got)
		}
		out, ok := tm.create(t, "stranger", "--from", foreign)
		if ok || !strings.Contains(out, "another platform") {
			t.Fatalf("a fork of a foreign snapshot: %s", out)
		}
		if vc := vcStatus(t, tm.ns, "stranger"); vc.Status.Phase != storagev1.PhaseFailed {
			t.Fatalf("the refused fork is %s, want Failed", vc.Status.Phase)
		}
	})

	step(t, "a privileged pod in a crafted datastore, which no admission saw, is kept off the host", func(t *testing.T) {
		dir := filepath.Join(p.stateDir, "snapshots", tm.ns)
		crafted := filepath.Join(dir, "privileged.snapshot")
		writeCraftedSnapshot(t, filepath.Join(dir, snap+".snapshot"), crafted, func(data string) {
			pod := &corev1.Pod{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
				ObjectMeta: metav1.ObjectMeta{Name: "evil", Namespace: "default", UID: uuid.NewUUID(), CreationTimestamp: metav1.Now()},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx",
					SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)}}}},
			}
			err := controlplane.EditDatastore(ctx, data, func(ctx context.Context, c *clientv3.Client) error {
				return controlplane.CreateStored(ctx, c, "/registry/pods/default/evil", pod)
			})
			if err != nil {
				t.Fatal(err)
			}
			// What running the datastore left beside it.
			for _, f := range []string{".lock", "db/state.db-wal", "db/state.db-shm"} {
				_ = os.Remove(filepath.Join(data, f))
			}
		})
		sublet(t, append([]string{"restore", "vcluster", "src", "--from", crafted}, at...)...)
		waitEvent(t, src, "default", "Pod", "evil", syncer.ReasonPodSecurity, "privileged")
		hostName := (translate.Translator{VCluster: "src", HostNamespace: tm.ns}).HostName("default", "evil")
		if _, err := host.Client.CoreV1().Pods(tm.ns).Get(ctx, hostName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("the crafted privileged pod on the host: %v", err)
		}
	})

	step(t, "a ResourceQuota bounds how many snapshots a team keeps", func(t *testing.T) {
		kubectl(t, host.Kubeconfig, "", "create", "quota", "snapshots", "-n", tm.ns, "--hard=count/virtualclustersnapshots.storage.loft.sh=0")
		defer kubectl(t, host.Kubeconfig, "", "delete", "quota", "snapshots", "-n", tm.ns)
		poll(t, time.Minute, "the quota's usage", func(ctx context.Context) (bool, error) {
			q, err := host.Client.CoreV1().ResourceQuotas(tm.ns).Get(ctx, "snapshots", metav1.GetOptions{})
			return err == nil && q.Status.Used != nil, nil
		})
		out, code, err := testenv.Run(time.Minute, append([]string{"snapshot", "vcluster", "src"}, at...)...)
		if err != nil || code == 0 || !strings.Contains(out, "exceeded quota") {
			t.Fatalf("a snapshot over the quota: exit %d, %v:\n%s", code, err, out)
		}
	})
}

// writeForeignSnapshot writes a snapshot made with another platform's key.
func writeForeignSnapshot(t *testing.T, path, ns string) {
	t.Helper()
	k, err := snapshot.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sublet-data-dir.json"), []byte(`{"datastore":"sqlite"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := snapshot.Write(f, snapshot.Manifest{Name: "foreign", Source: snapshot.Source{Namespace: ns, Name: "src"}, Datastore: "sqlite", Created: time.Now()}, k, dir); err != nil {
		t.Fatal(err)
	}
}

// writeCraftedSnapshot writes to path the snapshot at from, with the
// platform's key, after edit changed its data dir.
func writeCraftedSnapshot(t *testing.T, from, path string, edit func(dir string)) {
	t.Helper()
	keys, err := snapshot.LoadKeyring(context.Background(), host.Client, "sublet-system")
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dir := filepath.Join(t.TempDir(), "data")
	m, err := snapshot.Extract(in, keys.Current, dir)
	if err != nil {
		t.Fatal(err)
	}
	edit(dir)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := snapshot.Write(f, m, keys.Current, dir); err != nil {
		t.Fatal(err)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func snapshotObject(t *testing.T, ns, name string) *storagev1.VirtualClusterSnapshot {
	t.Helper()
	out := kubectl(t, host.Kubeconfig, "", "get", "virtualclustersnapshot", name, "-n", ns, "-o", "json")
	s := &storagev1.VirtualClusterSnapshot{}
	if err := json.Unmarshal([]byte(out), s); err != nil {
		t.Fatal(err)
	}
	return s
}

// clusterID is the UID of kube-system.
func clusterID(t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	ns, err := cs.CoreV1().Namespaces().Get(context.Background(), "kube-system", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return string(ns.UID)
}

// serviceAccountToken asks for a token of default/default.
func serviceAccountToken(t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	var tr *authenticationv1.TokenRequest
	poll(t, time.Minute, "a token of default/default", func(ctx context.Context) (bool, error) {
		var err error
		tr, err = cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, "default", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		return err == nil, nil
	})
	return tr.Status.Token
}

// directConfig is the virtual API server's address and CA, from the admin
// kubeconfig the agent published, without credentials.
func directConfig(t *testing.T, ns, name string) *rest.Config {
	t.Helper()
	return directConfigFrom(t, host, ns, name)
}

// directConfigFrom is directConfig for a virtual cluster of cluster c.
func directConfigFrom(t *testing.T, c *testenv.Process, ns, name string) *rest.Config {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", publishedKubeconfigFrom(t, c, ns, name))
	if err != nil {
		t.Fatal(err)
	}
	return &rest.Config{Host: cfg.Host, TLSClientConfig: rest.TLSClientConfig{CAData: cfg.CAData, CAFile: cfg.CAFile}}
}

// tokenValid reports whether the virtual API server at cfg takes token.
func tokenValid(t *testing.T, cfg *rest.Config, token string) bool {
	t.Helper()
	c := rest.CopyConfig(cfg)
	c.BearerToken = token
	cs := kubernetes.NewForConfigOrDie(c)
	_, err := cs.CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{})
	switch {
	case err == nil, apierrors.IsForbidden(err):
		return true
	case apierrors.IsUnauthorized(err):
		return false
	}
	t.Fatalf("ask the virtual API server with a token: %v", err)
	return false
}

// waitTokenSecret waits until secret default/legacy holds a token other
// than not, and returns it.
func waitTokenSecret(t *testing.T, cs kubernetes.Interface, not string) string {
	t.Helper()
	var token string
	poll(t, time.Minute, "the token controller to fill secret legacy", func(ctx context.Context) (bool, error) {
		s, err := cs.CoreV1().Secrets("default").Get(ctx, "legacy", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		token = string(s.Data[corev1.ServiceAccountTokenKey])
		return token != "" && token != not, nil
	})
	return token
}

// waitHostPod waits until virtual pod default/pod of virtual cluster vc has
// its host pod.
func waitHostPod(t *testing.T, ns, vc, pod string) {
	t.Helper()
	poll(t, time.Minute, "host pod of "+vc+"/"+pod, func(ctx context.Context) (bool, error) {
		list, err := host.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: translate.LabelCopyOf + "=" + vc})
		if err != nil {
			return false, nil
		}
		for _, p := range list.Items {
			if p.Name == (translate.Translator{VCluster: vc, HostNamespace: ns}).HostName("default", pod) {
				return true, nil
			}
		}
		return false, nil
	})
}

// writeTemp writes content to a file of the test's and returns its path.
func writeTemp(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "object.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSnapshotsEtcd: a cluster on etcd is snapshotted through etcd's
// snapshot API while it runs and from its stopped member's database while
// it sleeps, and both restore: a fork of the first has its objects and a
// new cluster ID, a restore of the second its objects and the same one.
func TestSnapshotsEtcd(t *testing.T) {
	needHost(t)
	_, _, ns := agentWithNamespace(t, "snap-etcd")
	hk := host.Kubeconfig
	apply := func(kind, name, rest string) {
		t.Helper()
		kubectl(t, hk, fmt.Sprintf("apiVersion: storage.loft.sh/v1\nkind: %s\nmetadata:\n  name: %s\n  namespace: %s\n%s", kind, name, ns, rest), "apply", "-f", "-")
	}
	completed := func(name string) *storagev1.VirtualClusterSnapshot {
		t.Helper()
		var s *storagev1.VirtualClusterSnapshot
		poll(t, time.Minute, "snapshot "+name, func(context.Context) (bool, error) {
			s = snapshotObject(t, ns, name)
			if s.Status.Phase == storagev1.SnapshotFailed {
				return false, fmt.Errorf("snapshot %s failed: %s", name, s.Status.Message)
			}
			return s.Status.Phase == storagev1.SnapshotCompleted, nil
		})
		return s
	}
	client := func(name string) kubernetes.Interface {
		t.Helper()
		waitVCPhase(t, ns, name, storagev1.PhaseReady, 2*time.Minute)
		return kubernetes.NewForConfigOrDie(restConfigOf(t, publishedKubeconfig(t, ns, name)))
	}
	apply("VirtualCluster", "ed", "spec:\n  helmRelease:\n    values: |\n      virtualCluster:\n        extraArgs: [--datastore=etcd]\n")
	ed := client("ed")
	ctx := context.Background()
	if _, err := ed.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "data"}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	id := clusterID(t, ed)

	apply("VirtualClusterSnapshot", "ed-live", "spec: {virtualCluster: ed}\n")
	if s := completed("ed-live"); s.Status.Datastore != "etcd" || s.Status.SourceSleeping {
		t.Fatalf("snapshot of the running etcd cluster: %+v", s.Status)
	}
	apply("VirtualCluster", "ed-fork", "  annotations: {storage.loft.sh/fork-from: ed-live}\nspec:\n  helmRelease:\n    values: |\n      virtualCluster:\n        extraArgs: [--datastore=etcd]\n")
	fork := client("ed-fork")
	if cm, err := fork.CoreV1().ConfigMaps("default").Get(ctx, "data", metav1.GetOptions{}); err != nil || cm.Data["k"] != "v" {
		t.Fatalf("the etcd fork's configmap: %v %+v", err, cm)
	}
	if clusterID(t, fork) == id {
		t.Fatal("the etcd fork kept the source's cluster ID")
	}

	kubectl(t, hk, "", "annotate", "virtualcluster", "ed", "-n", ns, storagev1.AnnotationForceSleep+"=true")
	waitVCPhase(t, ns, "ed", storagev1.PhaseSleeping, 2*time.Minute)
	apply("VirtualClusterSnapshot", "ed-asleep", "spec: {virtualCluster: ed}\n")
	if s := completed("ed-asleep"); !s.Status.SourceSleeping {
		t.Fatalf("snapshot of the sleeping etcd cluster: %+v", s.Status)
	}
	kubectl(t, hk, "", "delete", "virtualcluster", "ed", "-n", ns, "--timeout=60s")
	apply("VirtualCluster", "ed", "  annotations: {storage.loft.sh/restore-from: ed-asleep}\nspec:\n  helmRelease:\n    values: |\n      virtualCluster:\n        extraArgs: [--datastore=etcd]\n")
	restored := client("ed")
	if cm, err := restored.CoreV1().ConfigMaps("default").Get(ctx, "data", metav1.GetOptions{}); err != nil || cm.Data["k"] != "v" {
		t.Fatalf("the restored etcd cluster's configmap: %v %+v", err, cm)
	}
	if got := clusterID(t, restored); got != id {
		t.Fatalf("cluster ID %s after the restore, want %s", got, id)
	}
}

// snapshotGone reports whether snapshot ns/name no longer exists.
func snapshotGone(t *testing.T, ns, name string) (string, bool) {
	t.Helper()
	out, err := exec.Command("kubectl", "--kubeconfig", host.Kubeconfig, "get", "virtualclustersnapshot", name, "-n", ns, "--ignore-not-found", "-o", "name").Output()
	if err != nil {
		t.Fatal(err)
	}
	return string(out), strings.TrimSpace(string(out)) == ""
}

// startRegistry serves an OCI registry on loopback for the test and
// returns its HOST:PORT.
func startRegistry(t *testing.T) string {
	t.Helper()
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	return strings.TrimPrefix(reg.URL, "http://")
}
