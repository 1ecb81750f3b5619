package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sublet-dev/sublet/internal/testenv"
)

// whoami is what `kubectl auth whoami -o json` prints.
type whoami struct {
	Status struct {
		UserInfo struct {
			Username string   `json:"username"`
			Groups   []string `json:"groups"`
		} `json:"userInfo"`
	} `json:"status"`
}

func authWhoami(t *testing.T, kubeconfig string, args ...string) whoami {
	t.Helper()
	var w whoami
	out := kubectl(t, kubeconfig, "", append([]string{"auth", "whoami", "-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &w); err != nil {
		t.Fatalf("kubectl auth whoami: %v\n%s", err, out)
	}
	return w
}

// kubectlFails runs kubectl expecting it to fail and returns its output.
func kubectlFails(t *testing.T, kubeconfig string, args ...string) string {
	t.Helper()
	out, err := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
	if err == nil {
		t.Errorf("kubectl %s succeeded, want a refusal:\n%s", strings.Join(args, " "), out)
	}
	return string(out)
}

// TestPlatformFidelity: through the platform, a virtual cluster behaves like
// a cluster reached directly. Impersonation (kubectl --as) is served as the
// impersonated identity when the target cluster allows it and refused with
// the API server's 403 when not, on the virtual cluster and on the host;
// the kube-context the CLI writes (server name, no path) serves kubectl
// proxy without flags; the seed's path form keeps working.
func TestPlatformFidelity(t *testing.T) {
	needHost(t)
	p := startPlatform(t)
	hk := host.Kubeconfig
	ns := createNamespace(t, host.Client, "fidelity")
	kubectl(t, hk, fmt.Sprintf("apiVersion: storage.loft.sh/v1\nkind: VirtualCluster\nmetadata: {name: fid, namespace: %s}\n", ns), "apply", "-f", "-")
	// dana may use that virtual cluster and nothing else on the host.
	kubectl(t, hk, "", "create", "role", "vc-user", "-n", ns, "--verb=get", "--resource=virtualclusters.storage.loft.sh")
	kubectl(t, hk, "", "create", "rolebinding", "dana", "-n", ns, "--role=vc-user", "--user=dana")
	dana := accessKey(t, "e2e-dana", "dana", nil)
	kubectl(t, hk, "", "wait", "--for=jsonpath={.status.phase}=Ready", "virtualcluster/fid", "-n", ns, "--timeout=120s")

	// The CLI writes the kube-context: the platform's address, the virtual
	// cluster's TLS server name.
	kc := p.useAsCLI(t, dana, ns, "fid")
	server := kubectl(t, kc, "", "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}")
	serverName := kubectl(t, kc, "", "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.tls-server-name}")
	wantName := fmt.Sprintf("fid.%s.%s.vcluster.sublet.invalid", ns, p.cluster)
	if server != p.url || serverName != wantName {
		t.Fatalf("kube-context server %q tls-server-name %q, want %q and %q", server, serverName, p.url, wantName)
	}
	seed := p.seedKubeconfig(t, ns, "fid", dana)

	// Without --as: dana, cluster-admin, no group listed twice.
	for form, k := range map[string]string{"server name": kc, "path": seed} {
		w := authWhoami(t, k)
		g := w.Status.UserInfo.Groups
		if w.Status.UserInfo.Username != "dana" || strings.Join(g, ",") != "system:masters,system:authenticated" {
			t.Errorf("%s form: whoami %q %v, want dana [system:masters system:authenticated]", form, w.Status.UserInfo.Username, g)
		}
	}

	// With --as: the virtual cluster sees the service account, with the
	// groups the API server gives it, through either form.
	sa := "system:serviceaccount:default:tester"
	for form, k := range map[string]string{"server name": kc, "path": seed} {
		w := authWhoami(t, k, "--as", sa)
		if w.Status.UserInfo.Username != sa || strings.Join(w.Status.UserInfo.Groups, ",") != "system:serviceaccounts,system:serviceaccounts:default,system:authenticated" {
			t.Errorf("%s form: whoami --as %s: %q %v", form, sa, w.Status.UserInfo.Username, w.Status.UserInfo.Groups)
		}
	}
	if out := kubectlFails(t, kc, "auth", "can-i", "list", "configmaps", "--as", sa); strings.TrimSpace(out) != "no" {
		t.Errorf("can-i list configmaps --as %s before any grant: %q, want no", sa, out)
	}
	kubectl(t, kc, "", "create", "role", "cm-reader", "-n", "default", "--verb=list,get", "--resource=configmaps")
	kubectl(t, kc, "", "create", "rolebinding", "tester-cm", "-n", "default", "--role=cm-reader", "--serviceaccount=default:tester")
	poll(t, 30*time.Second, "tester may list configmaps", func(context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", kc, "auth", "can-i", "list", "configmaps", "--as", sa).CombinedOutput()
		return err == nil && strings.TrimSpace(string(out)) == "yes", nil
	})
	if out := kubectl(t, kc, "", "get", "configmaps", "-n", "default", "--as", sa, "-o", "name"); !strings.Contains(out, "kube-root-ca.crt") {
		t.Errorf("get configmaps --as %s:\n%s", sa, out)
	}
	if out := kubectlFails(t, kc, "auth", "can-i", "list", "secrets", "--as", sa); strings.TrimSpace(out) != "no" {
		t.Errorf("can-i list secrets --as %s: %q, want no", sa, out)
	}
	out := kubectlFails(t, kc, "get", "secrets", "-n", "default", "--as", sa)
	if !strings.Contains(out, `User "system:serviceaccount:default:tester" cannot list resource "secrets"`) {
		t.Errorf("get secrets --as %s: want the API server's Forbidden naming the service account:\n%s", sa, out)
	}

	// The host, through /kubernetes/cluster: its RBAC decides whether dana
	// may impersonate. Refused first, with the API server's message.
	hostKC := p.kubeconfig(t, "/kubernetes/cluster/"+p.cluster, dana)
	hostSA := "system:serviceaccount:" + ns + ":default"
	// (kubectl hides a refused discovery request behind "unknown": ask
	// as kubectl would, and read the answer itself.)
	podsPath := "/kubernetes/cluster/" + p.cluster + "/api/v1/namespaces/" + ns + "/pods"
	code, body := p.getBody(t, podsPath, dana, "Impersonate-User", hostSA)
	if code != http.StatusForbidden || !strings.Contains(body, fmt.Sprintf(`serviceaccounts \"default\" is forbidden: User \"dana\" cannot impersonate resource \"serviceaccounts\" in API group \"\" in the namespace \"%s\"`, ns)) {
		t.Errorf("dana impersonating %s on the host without the right: want the API server's 403, got HTTP %d\n%s", hostSA, code, body)
	}
	kubectl(t, hk, "", "create", "role", "impersonate-default", "-n", ns, "--verb=impersonate", "--resource=serviceaccounts", "--resource-name=default")
	kubectl(t, hk, "", "create", "rolebinding", "dana-impersonates", "-n", ns, "--role=impersonate-default", "--user=dana")
	poll(t, 30*time.Second, "dana may impersonate "+hostSA+" on the host", func(context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", hostKC, "auth", "whoami", "--as", hostSA, "-o", "jsonpath={.status.userInfo.username}").CombinedOutput()
		return err == nil && string(out) == hostSA, nil
	})
	// As that service account, the host's RBAC is the service account's.
	out = kubectlFails(t, hostKC, "get", "pods", "-n", ns, "--as", hostSA)
	if !strings.Contains(out, fmt.Sprintf(`User %q cannot list resource "pods"`, hostSA)) {
		t.Errorf("get pods --as %s on the host: want Forbidden for the service account:\n%s", hostSA, out)
	}
	// Another service account stays out of reach.
	code, body = p.getBody(t, podsPath, dana, "Impersonate-User", "system:serviceaccount:"+ns+":other")
	if code != http.StatusForbidden || !strings.Contains(body, `cannot impersonate resource \"serviceaccounts\"`) {
		t.Errorf("dana impersonating another service account: want 403, got HTTP %d\n%s", code, body)
	}

	// kubectl proxy with the CLI's kube-context and no path flags.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	proxy := exec.CommandContext(ctx, "kubectl", "--kubeconfig", kc, "proxy", "--port=0")
	stdout, _ := proxy.StdoutPipe()
	proxy.Stderr = os.Stderr
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = proxy.Wait() }()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		re := regexp.MustCompile(`Starting to serve on (\S+)`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
				return
			}
		}
		close(addr)
	}()
	var base string
	select {
	case a, ok := <-addr:
		if !ok {
			t.Fatal("kubectl proxy exited without serving")
		}
		base = "http://" + a
	case <-ctx.Done():
		t.Fatal("kubectl proxy did not start")
	}
	for path, want := range map[string]string{
		"/api/":                                 `"versions"`,
		"/api/v1/namespaces/default/configmaps": "kube-root-ca.crt",
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("kubectl proxy %s: HTTP %d\n%s", path, resp.StatusCode, testenv.Tail(string(body), 400))
		}
	}

	// The audit record tells both identities and the server name.
	audit, err := os.ReadFile(p.auditLog)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(audit), `"serverName":"`+wantName+`"`) || !strings.Contains(string(audit), `"impersonatedUser":"`+sa+`"`) {
		t.Errorf("audit log lacks the server name or the impersonated user:\n%s", testenv.Tail(string(audit), 2000))
	}
}
