package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/sublet-dev/sublet/internal/testenv"
)

// TestServerRBACGateAndIsolation: the seed's kubeconfig with an access key
// reaches a virtual cluster only if the host lets the user get that
// VirtualCluster; missing, unknown, expired and revoked keys get 401.
func TestServerRBACGateAndIsolation(t *testing.T) {
	needHost(t)
	p := startPlatform(t)
	hk := host.Kubeconfig
	nsA := createNamespace(t, host.Client, "tenant-a")
	nsB := createNamespace(t, host.Client, "tenant-b")
	for ns, name := range map[string]string{nsA: "a", nsB: "b"} {
		kubectl(t, hk, fmt.Sprintf("apiVersion: storage.loft.sh/v1\nkind: VirtualCluster\nmetadata: {name: %s, namespace: %s}\n", name, ns), "apply", "-f", "-")
	}
	for ns, name := range map[string]string{nsA: "a", nsB: "b"} {
		kubectl(t, hk, "", "wait", "--for=jsonpath={.status.phase}=Ready", "virtualcluster/"+name, "-n", ns, "--timeout=120s")
	}
	// alice: a Role in tenant-a; bob: a ClusterRole everywhere; carol: nothing.
	kubectl(t, hk, "", "create", "role", "vc-user", "-n", nsA, "--verb=get", "--resource=virtualclusters.storage.loft.sh")
	kubectl(t, hk, "", "create", "rolebinding", "alice", "-n", nsA, "--role=vc-user", "--user=alice")
	kubectl(t, hk, "", "create", "clusterrole", "e2e-vc-viewer", "--verb=get,list", "--resource=virtualclusters.storage.loft.sh")
	kubectl(t, hk, "", "create", "clusterrolebinding", "e2e-bob", "--clusterrole=e2e-vc-viewer", "--user=bob")
	t.Cleanup(func() {
		_ = exec.Command("kubectl", "--kubeconfig", hk, "delete", "clusterrolebinding", "e2e-bob").Run()
		_ = exec.Command("kubectl", "--kubeconfig", hk, "delete", "clusterrole", "e2e-vc-viewer").Run()
	})
	alice, bob, carol := accessKey(t, "e2e-alice", "alice", nil), accessKey(t, "e2e-bob", "bob", nil), accessKey(t, "e2e-carol", "carol", nil)
	past := time.Now().Add(-time.Hour)
	expired := accessKey(t, "e2e-expired", "alice", &past)

	vcPath := func(ns, name string) string {
		return fmt.Sprintf("/kubernetes/virtualcluster/%s/%s/%s/api/v1/namespaces", p.cluster, ns, name)
	}
	for _, tc := range []struct {
		who, key, ns, name string
		want               int
	}{
		{"alice in her namespace", alice, nsA, "a", 200},
		{"alice in another namespace", alice, nsB, "b", 403},
		{"bob with a ClusterRole", bob, nsA, "a", 200},
		{"bob with a ClusterRole, elsewhere", bob, nsB, "b", 200},
		{"carol without RBAC", carol, nsA, "a", 403},
		{"no key", "", nsA, "a", 401},
		{"unknown key", "slk_not-a-key", nsA, "a", 401},
		{"expired key", expired, nsA, "a", 401},
		{"bob, unknown virtual cluster", bob, nsA, "nope", 404},
	} {
		if got := p.get(t, vcPath(tc.ns, tc.name), tc.key); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.who, got, tc.want)
		}
	}
	if got := p.get(t, "/kubernetes/virtualcluster/no-such-cluster/"+nsA+"/a/api/v1/namespaces", bob); got != 404 {
		t.Errorf("unknown cluster: %d, want 404", got)
	}
	// The host proxy: the host's RBAC decides (alice may not list nodes).
	if got := p.get(t, "/kubernetes/cluster/"+p.cluster+"/api/v1/nodes", alice); got != 403 {
		t.Errorf("alice listing host nodes through the cluster proxy: %d, want 403", got)
	}
	if got := p.get(t, "/kubernetes/cluster/"+p.cluster+"/api/v1/namespaces/"+nsB+"/pods", alice); got != 403 {
		t.Errorf("alice listing tenant b's host namespace through the cluster proxy: %d, want 403", got)
	}
	if got := p.get(t, "/kubernetes/cluster/"+p.cluster+"/apis/storage.loft.sh/v1/namespaces/"+nsA+"/virtualclusters/a", alice); got != 200 {
		t.Errorf("alice getting her VirtualCluster through the cluster proxy: %d, want 200", got)
	}

	// The seed's kubeconfig, with kubectl.
	kc := p.seedKubeconfig(t, nsA, "a", alice)
	out := kubectl(t, kc, "", "get", "namespaces")
	if !strings.Contains(out, "kube-system") {
		t.Errorf("kubectl get namespaces through the proxy:\n%s", out)
	}
	who := kubectl(t, kc, "", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
	if who != "alice" {
		t.Errorf("the virtual cluster sees user %q, want alice", who)
	}
	denied := p.seedKubeconfig(t, nsB, "b", alice)
	if out, err := exec.Command("kubectl", "--kubeconfig", denied, "get", "namespaces").CombinedOutput(); err == nil || !strings.Contains(string(out), "Forbidden") {
		t.Errorf("alice reached tenant b's virtual cluster, or the error does not name the permission: %v\n%s", err, out)
	}

	// Streaming: kubectl get -w through the proxy sees a new object, of a
	// resource with a watch cache (pods) and of one served by the datastore
	// (configmaps).
	kubectlWatchSees(t, kc, "pods", "", "streamed", func() { kubectl(t, kc, "", "run", "streamed", "--image=nginx") })
	kubectlWatchSees(t, kc, "configmaps", "kube-root-ca.crt", "streamed", func() {
		kubectl(t, kc, "", "create", "configmap", "streamed", "--from-literal=k=v")
	})

	kubectlLogsFollows(t, kc, "streamed")

	// kubectl exec (a protocol upgrade) through the proxy.
	if out := kubectl(t, kc, "", "exec", "streamed", "--", "echo", "through-the-platform"); !strings.Contains(out, "through-the-platform") {
		t.Errorf("kubectl exec through the proxy: %q", out)
	}

	forgedKubeconfigRefused(t, p, nsA, bob, vcPath(nsA, "a"))

	// Revoking a key takes effect at once.
	revoked := accessKey(t, "e2e-revoked", "alice", nil)
	if got := p.get(t, vcPath(nsA, "a"), revoked); got != 200 {
		t.Fatalf("fresh key: %d", got)
	}
	kubectl(t, hk, "", "delete", "accesskey", "e2e-revoked")
	deadline := time.Now().Add(2 * time.Second)
	for p.get(t, vcPath(nsA, "a"), revoked) != 401 {
		if time.Now().After(deadline) {
			t.Fatal("a deleted access key still works after 2 s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Every request is in the audit log, as JSON with user, verb, path, status.
	audit, err := os.ReadFile(p.auditLog)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(audit), `"user":"alice"`) || !strings.Contains(string(audit), `"status":403`) || !strings.Contains(string(audit), `"verb":"watch"`) {
		t.Errorf("audit log (%d bytes) lacks expected records:\n%s", len(audit), testenv.Tail(string(audit), 5))
	}
}

// kubectlWatchSees runs `kubectl get RESOURCE -w` in the default namespace
// and fails the test unless a line for name follows create. With listed
// set, create waits until the line of that existing object shows the
// initial list done, so name can only come from the watch; with listed
// empty, it waits until kubectl logs its watch request answered.
func kubectlWatchSees(t *testing.T, kc, resource, listed, name string, create func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	watch := exec.CommandContext(ctx, "kubectl", "--kubeconfig", kc, "get", resource, "-n", "default", "-w", "--no-headers", "-v=6")
	stdout, _ := watch.StdoutPipe()
	stderr, _ := watch.StderrPipe()
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = watch.Wait() }()
	lines, errLines := make(chan string), make(chan string)
	for _, p := range []struct {
		r   io.Reader
		out chan string
	}{{stdout, lines}, {stderr, errLines}} {
		go func() {
			defer close(p.out)
			sc := bufio.NewScanner(p.r)
			for sc.Scan() {
				select {
				case p.out <- sc.Text():
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	created := false
	for {
		select {
		case line, ok := <-errLines:
			// With nothing to list, kubectl prints nothing; at -v=6 it
			// logs its watch request once the response headers came, and
			// that watch starts from the list, so what is created now is
			// streamed.
			if !ok {
				errLines = nil
			} else if listed == "" && !created && strings.Contains(line, "watch=true") && strings.Contains(line, " 200 OK") {
				create()
				created = true
			}
		case line, ok := <-lines:
			if !ok {
				t.Errorf("kubectl get %s -w ended without %s", resource, name)
				return
			}
			switch {
			case created && strings.HasPrefix(line, name+" "):
				return
			case !created && strings.HasPrefix(line, listed+" "):
				create()
				created = true
			}
		case <-ctx.Done():
			t.Errorf("kubectl get %s -w through the proxy did not stream the new %s", resource, name)
			return
		}
	}
}

// kubectlLogsFollows: kubectl logs -f through the proxy streams the log of
// pod name, once it runs.
func kubectlLogsFollows(t *testing.T, kc, name string) {
	t.Helper()
	poll(t, 60*time.Second, name+" pod Running", func(ctx context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", kc, "get", "pod", name, "-o", "jsonpath={.status.phase}").Output()
		return err == nil && string(out) == "Running", nil
	})
	lctx, lcancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer lcancel()
	logs := exec.CommandContext(lctx, "kubectl", "--kubeconfig", kc, "logs", "-f", name)
	lout, _ := logs.StdoutPipe()
	if err := logs.Start(); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(lout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
	}()
	select {
	case l, ok := <-line:
		if !ok || l == "" {
			t.Error("kubectl logs -f through the proxy ended without a line")
		}
	case <-lctx.Done():
		t.Error("kubectl logs -f through the proxy streamed nothing")
	}
	lcancel()
	_ = logs.Wait()
}

// forgedKubeconfigRefused: a Secret in the tenant's host namespace nsA
// posing as the agent's kubeconfig of virtual cluster "a" (its label, a
// controller reference to the VirtualCluster) with an exec plugin: the
// server refuses it and never runs the plugin. The agent is stopped first,
// or it would put its own kubeconfig back. key may use the virtual cluster
// at path.
func forgedKubeconfigRefused(t *testing.T, p *platform, nsA, key, path string) {
	t.Helper()
	p.agent.Kill()
	marker := filepath.Join(t.TempDir(), "plugin-ran")
	secrets := host.Client.CoreV1().Secrets(nsA)
	real, err := secrets.Get(context.Background(), "vc-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	forged, err := clientcmd.Load(real.Data["config"])
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range forged.AuthInfos {
		*a = clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{APIVersion: "client.authentication.k8s.io/v1", Command: "sh",
			Args: []string{"-c", "touch " + marker}, InteractiveMode: clientcmdapi.NeverExecInteractiveMode}}
	}
	original := real.Data["config"]
	if real.Data["config"], err = clientcmd.Write(*forged); err != nil {
		t.Fatal(err)
	}
	if real, err = secrets.Update(context.Background(), real, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The server has read the forged Secret once it refuses it by name.
	poll(t, 30*time.Second, "the server refuses the forged kubeconfig", func(context.Context) (bool, error) {
		code, body := p.getBody(t, path, key)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "exec plugin"), nil
	})
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("the server ran an exec plugin from a Secret in the tenant's namespace")
	}
	real.Data["config"] = original
	if _, err := secrets.Update(context.Background(), real, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 30*time.Second, "the real kubeconfig serves again", func(context.Context) (bool, error) {
		code, _ := p.getBody(t, path, key)
		return code == http.StatusOK, nil
	})
}
