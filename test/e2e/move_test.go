package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/snapshot"
	"github.com/sublet-dev/sublet/internal/testenv"
	"github.com/sublet-dev/sublet/internal/translate"
)

// TestMove: a team moves its virtual cluster between two connected local
// hosts through an OCI registry started here (the platform's move
// registry, or a location the team names). The platform shares its
// snapshot key with both agents; a move that cannot be done (a location
// the agents refuse, a name taken in the target) changes nothing; a move
// whose CLI is killed halfway leaves the source serving, and the next move
// replaces what it left; a move carries objects, identity and pods over,
// and the team's kube-context (same name) reaches the moved cluster.
func TestMove(t *testing.T) {
	needHost(t)
	regHost := startRegistry(t)
	agentArgs := []string{"--snapshot-registries", regHost + "/snaps"}
	p := startPlatformAgent(t, agentArgs, "--move-registry", regHost+"/snaps")
	other, err := testenv.StartHost(context.Background(), t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Kill)
	otherState := t.TempDir()
	t.Cleanup(func() { killChildren(otherState) })
	agent2, _, err := testenv.StartUntil(context.Background(), "Sublet agent is running", append([]string{"agent", "--kubeconfig", other.Kubeconfig,
		"--state-dir", otherState, "--metrics-bind-address", "0", "--leader-elect=false"}, agentArgs...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(agent2.Kill)
	t.Cleanup(func() { dumpOnFailure(t, "the other cluster's agent", agent2) })
	p.connect(t, "e2e-other", other.Kubeconfig)
	tm := newTeam(t, p)
	// The same team, namespace and rights in the other cluster.
	kubectl(t, other.Kubeconfig, "", "create", "namespace", tm.ns)
	kubectl(t, other.Kubeconfig, "", "create", "role", "vc-manager", "-n", tm.ns, "--verb=get,list,watch,create,update,patch,delete",
		"--resource=virtualclusters.storage.loft.sh,virtualclustersnapshots.storage.loft.sh")
	kubectl(t, other.Kubeconfig, "", "create", "rolebinding", "vc-manager", "-n", tm.ns, "--role=vc-manager", "--user="+tm.user)
	kubectl(t, host.Kubeconfig, "", "create", "role", "vc-snapshots", "-n", tm.ns, "--verb=get,list,watch,create,delete",
		"--resource=virtualclustersnapshots.storage.loft.sh")
	kubectl(t, host.Kubeconfig, "", "create", "rolebinding", "vc-snapshots", "-n", tm.ns, "--role=vc-snapshots", "--user="+tm.user)
	waitSharedKey(t, other)

	if out, ok := tm.create(t, "mover"); !ok {
		t.Fatalf("create: %s", out)
	}
	kubectl(t, tm.kubeconfig, "", "create", "configmap", "data", "--from-literal=k=v")
	kubectl(t, tm.kubeconfig, "", "run", "web", "--image=nginx")
	kubectl(t, tm.kubeconfig, "", "wait", "--for=condition=Ready", "pod/web", "--timeout=90s")
	src := tm.client(t)
	id, token := clusterID(t, src), serviceAccountToken(t, src)
	ctxName := fmt.Sprintf("sublet_%s_%s_mover", p.cluster, tm.ns)
	via := fmt.Sprintf("oci://%s/snaps/%s/mover:move", regHost, tm.ns)
	move := []string{"move", "vcluster", "mover", "--cluster", p.cluster, "--space", tm.ns, "--to-cluster", "e2e-other"}
	// The source answers through the team's kube-context (a request wakes
	// it once no move holds it).
	sourceServes := func(t *testing.T) {
		t.Helper()
		poll(t, 2*time.Minute, "the source to answer", func(context.Context) (bool, error) {
			got, err := exec.Command("kubectl", "--kubeconfig", tm.kubeconfig, "--context", ctxName, "get", "configmap", "data", "-o", "jsonpath={.data.k}").Output()
			return err == nil && string(got) == "v", nil
		})
		if vc := vcStatus(t, tm.ns, "mover"); vc.Annotations[storagev1.AnnotationMovingTo] != "" && vc.Annotations[storagev1.AnnotationForceSleep] != "" {
			t.Fatalf("the source answers but is held: %v", vc.Annotations)
		}
	}

	step(t, "moves that cannot be done change nothing", func(t *testing.T) {
		out, code, err := testenv.Run(3*time.Minute, append(move, "--via", "oci://"+regHost+"/elsewhere/"+tm.ns+"/mover:x")...)
		if err != nil || code == 0 || !strings.Contains(out, "is not one snapshots of namespace") || !strings.Contains(out, "keeps serving") {
			t.Fatalf("move via a refused location: exit %d, %v:\n%s", code, err, out)
		}
		failFast(t, []string{`cluster "nowhere" is not connected`}, "move", "vcluster", "mover", "--cluster", p.cluster, "--space", tm.ns, "--to-cluster", "nowhere", "--via", via)
		sourceServes(t)
		if _, err := other.Client.CoreV1().Namespaces().Get(context.Background(), tm.ns, metav1.GetOptions{}); err != nil {
			t.Fatal(err)
		}
		if vcs := virtualClustersIn(t, other, tm.ns); len(vcs) != 0 {
			t.Fatalf("a refused move left %v in the target", vcs)
		}
	})

	step(t, "a move killed halfway leaves the source serving", func(t *testing.T) {
		bin, err := testenv.Binary()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, append(move, "--via", via)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		defer func() {
			if t.Failed() {
				t.Logf("the move's output:\n%s", out.String())
			}
		}()
		poll(t, 2*time.Minute, "the move to make the target", func(context.Context) (bool, error) {
			select {
			case err := <-exited:
				return false, fmt.Errorf("the move exited (%v) before it made the target:\n%s", err, out.String())
			default:
			}
			return len(virtualClustersIn(t, other, tm.ns)) > 0, nil
		})
		// The move holds the source: its requests are answered 503 with
		// Retry-After, and do not wake it.
		res := src.CoreV1().RESTClient().Get().AbsPath("/api/v1/namespaces/default/configmaps/data").MaxRetries(0).Do(context.Background())
		code := 0
		res.StatusCode(&code)
		if err := res.Error(); code != 503 || err == nil || !strings.Contains(err.Error(), "is moving to cluster e2e-other") {
			t.Fatalf("a request to the held source: %d %v", code, err)
		}
		_ = cmd.Process.Kill()
		<-exited
		// The CLI's hold ends within its lease; then a request wakes it.
		sourceServes(t)
	})

	step(t, "move", func(t *testing.T) {
		// A team member writes all along, before, during and after the
		// move: every write that succeeded is in the moved cluster.
		var mu sync.Mutex
		var written []string
		wrote := func() int {
			mu.Lock()
			defer mu.Unlock()
			return len(written)
		}
		stop, stopped := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(stopped)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("during-%d", i)
				if exec.Command("kubectl", "--kubeconfig", tm.kubeconfig, "--context", ctxName, "create", "configmap", name).Run() == nil {
					mu.Lock()
					written = append(written, name)
					mu.Unlock()
				}
			}
		}()
		poll(t, time.Minute, "a write before the move", func(context.Context) (bool, error) { return wrote() > 0, nil })
		// A colleague's kube-context of the source, as 'sublet use
		// vcluster' wrote it: the move does not touch it.
		colleague := filepath.Join(t.TempDir(), "kubeconfig")
		if data, err := os.ReadFile(tm.kubeconfig); err != nil || os.WriteFile(colleague, data, 0o600) != nil {
			t.Fatal(err)
		}
		// As typed: through the platform's move registry.
		out := sublet(t, move...)
		before := wrote()
		poll(t, 2*time.Minute, "a write after the move", func(context.Context) (bool, error) { return wrote() > before, nil })
		close(stop)
		<-stopped
		if !strings.Contains(out, "Moved virtual cluster mover") || !strings.Contains(out, "interrupted move") ||
			!strings.Contains(out, "oci://"+regHost+"/snaps/"+tm.ns+"/mover:move-") {
			t.Fatalf("move:\n%s", out)
		}
		poll(t, time.Minute, "the source to go", func(ctx context.Context) (bool, error) {
			err := host.Client.CoreV1().RESTClient().Get().AbsPath("/apis/storage.loft.sh/v1/namespaces/" + tm.ns + "/virtualclusters/mover").Do(ctx).Error()
			return apierrors.IsNotFound(err), nil
		})
		if got := kubectl(t, tm.kubeconfig, "", "--context", ctxName, "get", "configmap", "data", "-o", "jsonpath={.data.k}"); got != "v" {
			t.Fatalf("through kube-context %s after the move: %q", ctxName, got)
		}
		if !strings.Contains(out, "access keys scoped to it (its kube-contexts) now reach it in cluster e2e-other") {
			t.Fatalf("the move did not give the source's keys to the moved cluster:\n%s", out)
		}
		if got := kubectl(t, colleague, "", "--context", ctxName, "get", "configmap", "data", "-o", "jsonpath={.data.k}"); got != "v" {
			t.Fatalf("through the colleague's unchanged kube-context after the move: %q", got)
		}
		moved := tm.client(t)
		t.Logf("%d configmaps written before and during the move, %d after it", before, len(written)-before)
		for _, name := range written {
			if _, err := moved.CoreV1().ConfigMaps("default").Get(context.Background(), name, metav1.GetOptions{}); err != nil {
				t.Errorf("configmap %s, written during the move, is not in the moved cluster: %v", name, err)
			}
		}
		if got := clusterID(t, moved); got != id {
			t.Fatalf("cluster ID %s after the move, want %s", got, id)
		}
		if !tokenValid(t, directConfigFrom(t, other, tm.ns, "mover"), token) {
			t.Fatal("a token issued before the move is refused after it")
		}
		poll(t, time.Minute, "the host pod in the other cluster", func(ctx context.Context) (bool, error) {
			_, err := other.Client.CoreV1().Pods(tm.ns).Get(ctx, (translate.Translator{VCluster: "mover", HostNamespace: tm.ns}).HostName("default", "web"), metav1.GetOptions{})
			return err == nil, nil
		})
	})
}

// connect connects cluster name (kubeconfig) to the platform.
func (p *platform) connect(t *testing.T, name, kubeconfig string) {
	t.Helper()
	ns := createNamespace(t, host.Client, "connect")
	kc, err := os.ReadFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := host.Client.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "cluster"}, Data: map[string][]byte{"config": kc}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubectl(t, host.Kubeconfig, fmt.Sprintf("apiVersion: storage.loft.sh/v1\nkind: Cluster\nmetadata: {name: %s}\nspec:\n  config: {name: cluster, namespace: %s}\n", name, ns), "apply", "-f", "-")
	t.Cleanup(func() {
		_ = exec.Command("kubectl", "--kubeconfig", host.Kubeconfig, "delete", "cluster.storage.loft.sh", name).Run()
	})
}

// waitSharedKey waits until the platform has given cluster c its snapshot
// key (the management cluster's).
func waitSharedKey(t *testing.T, c *testenv.Process) {
	t.Helper()
	poll(t, 2*time.Minute, "the platform to share its snapshot key", func(ctx context.Context) (bool, error) {
		mine, err := host.Client.CoreV1().Secrets("sublet-system").Get(ctx, snapshot.KeySecret, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		theirs, err := c.Client.CoreV1().Secrets("sublet-system").Get(ctx, snapshot.KeySecret, metav1.GetOptions{})
		return err == nil && bytes.Equal(mine.Data["key"], theirs.Data["key"]), nil
	})
}

func virtualClustersIn(t *testing.T, c *testenv.Process, ns string) []string {
	t.Helper()
	out, err := exec.Command("kubectl", "--kubeconfig", c.Kubeconfig, "get", "virtualclusters", "-n", ns, "-o", "name").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(out))
}
