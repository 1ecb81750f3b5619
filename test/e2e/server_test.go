package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/sublet-dev/sublet/internal/server"
	"github.com/sublet-dev/sublet/internal/testenv"
)

// platform is a server and an agent on the shared host, which is both the
// management cluster and the connected cluster named cluster.
type platform struct {
	url, caFile, cluster string
	stateDir, auditLog   string
	agent                *testenv.Process
}

// startPlatform starts the platform; serverArgs are extra flags of
// `sublet server`.
func startPlatform(t *testing.T, serverArgs ...string) *platform {
	t.Helper()
	p := &platform{stateDir: t.TempDir(), cluster: "e2e-local"}
	p.auditLog = filepath.Join(p.stateDir, "audit.log")
	t.Cleanup(func() { killChildren(p.stateDir) })
	p.agent = startAgent(t, p.stateDir)
	srv, url, err := testenv.StartUntil(context.Background(), "Sublet server is running at ", append([]string{
		"server", "--kubeconfig", host.Kubeconfig, "--listen", "127.0.0.1:0", "--state-dir", p.stateDir, "--audit-log", p.auditLog}, serverArgs...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Kill)
	p.url = url
	p.caFile = filepath.Join(p.stateDir, "pki", "ca.crt")
	ns := createNamespace(t, host.Client, "platform")
	kc, err := os.ReadFile(host.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := host.Client.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "cluster-local"}, Data: map[string][]byte{"config": kc}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubectl(t, host.Kubeconfig, fmt.Sprintf(`apiVersion: storage.loft.sh/v1
kind: Cluster
metadata: {name: %s}
spec:
  displayName: Local
  config: {name: cluster-local, namespace: %s}
`, p.cluster, ns), "apply", "-f", "-")
	t.Cleanup(func() {
		_ = exec.Command("kubectl", "--kubeconfig", host.Kubeconfig, "delete", "cluster.storage.loft.sh", p.cluster).Run()
	})
	return p
}

// accessKey creates an AccessKey for user and returns the key.
func accessKey(t *testing.T, name, user string, expires *time.Time) string {
	t.Helper()
	key, err := server.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	exp := ""
	if expires != nil {
		exp = "\n  expiration: " + expires.UTC().Format(time.RFC3339)
	}
	kubectl(t, host.Kubeconfig, fmt.Sprintf(`apiVersion: storage.loft.sh/v1
kind: AccessKey
metadata: {name: %s}
spec:
  user: %s
  keySHA256: %s%s
`, name, user, server.HashKey(key), exp), "apply", "-f", "-")
	t.Cleanup(func() {
		_ = exec.Command("kubectl", "--kubeconfig", host.Kubeconfig, "delete", "accesskey", name, "--ignore-not-found").Run()
	})
	return key
}

// useAsCLI logs the CLI in with key (a config and kubeconfig of the
// test's own) and runs `sublet use vcluster` for ns/name; it returns the
// kubeconfig the CLI wrote.
func (p *platform) useAsCLI(t *testing.T, key, ns, name string) string {
	t.Helper()
	kc := p.loginAsCLI(t, key)
	sublet(t, "use", "vcluster", name, "--cluster", p.cluster, "--space", ns)
	return kc
}

// loginAsCLI logs the CLI in with key, with a config and kubeconfig of the
// test's own; it returns that kubeconfig's path.
func (p *platform) loginAsCLI(t *testing.T, key string) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("SUBLET_CONFIG", filepath.Join(dir, "cli.json"))
	t.Setenv("KUBECONFIG", filepath.Join(dir, "kubeconfig"))
	sublet(t, "login", p.url, "--access-key", key, "--ca-file", p.caFile)
	return filepath.Join(dir, "kubeconfig")
}

// seedKubeconfig writes the seed's hand-written kubeconfig for a virtual
// cluster: the server's virtualcluster path and the access key as token.
func (p *platform) seedKubeconfig(t *testing.T, ns, name, key string) string {
	t.Helper()
	return p.kubeconfig(t, fmt.Sprintf("/kubernetes/virtualcluster/%s/%s/%s", p.cluster, ns, name), key)
}

// kubeconfig writes a kubeconfig for path on the server with the access key
// as token, as the seed writes them by hand.
func (p *platform) kubeconfig(t *testing.T, path, key string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "kubeconfig.yaml")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority: %s
    server: %s%s
  name: loft
contexts:
- context:
    cluster: loft
    user: loft
  name: loft
current-context: loft
users:
- name: loft
  user:
    token: %s
`, p.caFile, p.url, path, key)
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// serverNameKubeconfig writes a kubeconfig for the platform's address
// with TLS server name serverName and the access key as token.
func (p *platform) serverNameKubeconfig(t *testing.T, serverName, key string) string {
	t.Helper()
	file := p.kubeconfig(t, "", key)
	cfg, err := clientcmd.LoadFromFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Clusters["loft"].TLSServerName = serverName
	if err := clientcmd.WriteToFile(*cfg, file); err != nil {
		t.Fatal(err)
	}
	return file
}

// get does GET url with key, returning the status code.
func (p *platform) get(t *testing.T, path, key string) int {
	t.Helper()
	code, _ := p.getBody(t, path, key)
	return code
}

// getBody GETs path with key as bearer token (none if "") and the given
// header names and values, and returns the status code and body.
func (p *platform) getBody(t *testing.T, path, key string, headers ...string) (int, string) {
	t.Helper()
	resp, body := p.request(t, p.httpClient(t), http.MethodGet, path, key, nil, headers...)
	return resp.StatusCode, body
}

// request sends method path with c, with key as bearer token (none if "")
// and the given header names and values; it returns the response and its
// body, read.
func (p *platform) request(t *testing.T, c *http.Client, method, path, key string, body io.Reader, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, p.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, string(data)
}

// httpClient is a client that trusts the server's CA.
func (p *platform) httpClient(t *testing.T) *http.Client {
	t.Helper()
	ca, err := os.ReadFile(p.caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 30 * time.Second}
}

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

	// kubectl logs -f through the proxy streams the pod's log.
	poll(t, 60*time.Second, "streamed pod Running", func(ctx context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", kc, "get", "pod", "streamed", "-o", "jsonpath={.status.phase}").Output()
		return err == nil && string(out) == "Running", nil
	})
	lctx, lcancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer lcancel()
	logs := exec.CommandContext(lctx, "kubectl", "--kubeconfig", kc, "logs", "-f", "streamed")
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

	// kubectl exec (a protocol upgrade) through the proxy.
	if out := kubectl(t, kc, "", "exec", "streamed", "--", "echo", "through-the-platform"); !strings.Contains(out, "through-the-platform") {
		t.Errorf("kubectl exec through the proxy: %q", out)
	}

	// A Secret in the tenant's host namespace posing as the agent's
	// kubeconfig (its label, a controller reference to the VirtualCluster)
	// with an exec plugin: the server refuses it and never runs the plugin.
	// The agent is stopped first, or it would put its own kubeconfig back.
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
		code, body := p.getBody(t, vcPath(nsA, "a"), bob)
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
		code, _ := p.getBody(t, vcPath(nsA, "a"), bob)
		return code == http.StatusOK, nil
	})

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
