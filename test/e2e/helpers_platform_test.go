package e2e

import (
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
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sublet-dev/sublet/internal/platformapi"
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
	return startPlatformAgent(t, nil, serverArgs...)
}

// startPlatformAgent starts the platform with agentArgs, extra flags of
// `sublet agent`.
func startPlatformAgent(t *testing.T, agentArgs []string, serverArgs ...string) *platform {
	t.Helper()
	p := &platform{stateDir: t.TempDir(), cluster: "e2e-local"}
	p.auditLog = filepath.Join(p.stateDir, "audit.log")
	t.Cleanup(func() { killChildren(p.stateDir) })
	p.agent = startAgent(t, p.stateDir, agentArgs...)
	t.Cleanup(func() { dumpOnFailure(t, "the agent", p.agent) })
	srv, url, err := testenv.StartUntil(context.Background(), "Sublet server is running at ", append([]string{
		"server", "--kubeconfig", host.Kubeconfig, "--listen", "127.0.0.1:0", "--state-dir", p.stateDir, "--audit-log", p.auditLog}, serverArgs...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Kill)
	t.Cleanup(func() { dumpOnFailure(t, "the server", srv) })
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
	key, err := platformapi.NewKey()
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
`, name, user, platformapi.HashKey(key), exp), "apply", "-f", "-")
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

// dumpOnFailure logs, when t failed, the last lines process p logged and
// the stacks of its goroutines that run our code or a registry client's,
// to tell where it waits.
func dumpOnFailure(t *testing.T, name string, p *testenv.Process) {
	if !t.Failed() {
		return
	}
	_ = syscall.Kill(p.Pid(), syscall.SIGQUIT)
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end) && !strings.Contains(p.Output(), "\ngoroutine "); {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // the rest of the dump
	logs, stacks, _ := strings.Cut(p.Output(), "SIGQUIT: quit")
	var ours []string
	for _, g := range strings.Split(stacks, "\n\n") {
		if strings.Contains(g, "sublet-dev/sublet/") || strings.Contains(g, "go-containerregistry") {
			ours = append(ours, g)
		}
	}
	t.Logf("%s's last output:\n%s\n\n%s's goroutines in our code:\n%s", name, lastLines(logs, 200), name, strings.Join(ours, "\n\n"))
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
