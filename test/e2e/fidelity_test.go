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

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sublet-dev/sublet/internal/platformapi"
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

	// The CLI writes the kube-context: the platform's address alone, and a
	// key of dana's scoped to the virtual cluster, which the server routes
	// there. The server-name and path forms serve it too.
	kc := p.useAsCLI(t, dana, ns, "fid")
	server := kubectl(t, kc, "", "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}")
	serverName := kubectl(t, kc, "", "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.tls-server-name}")
	if server != p.url || serverName != "" {
		t.Fatalf("kube-context server %q tls-server-name %q, want %q and none", server, serverName, p.url)
	}
	scoped := kubectl(t, kc, "", "config", "view", "--minify", "--raw", "-o", "jsonpath={.users[0].user.token}")
	if scoped == dana || !strings.HasPrefix(scoped, platformapi.KeyPrefix) {
		t.Fatalf("the kube-context's token is not a key of its own (dana's key: %v)", scoped == dana)
	}
	f := &fidelity{p: p, ns: ns, dana: dana, kc: kc, scoped: scoped, sa: "system:serviceaccount:default:tester"}
	f.wantName = fmt.Sprintf("fid.%s.%s.vcluster.sublet.invalid", ns, p.cluster)
	f.byName = p.serverNameKubeconfig(t, f.wantName, scoped)
	seed := p.seedKubeconfig(t, ns, "fid", dana)
	f.forms = map[string]string{"scoped key": kc, "server name": f.byName, "path": seed}

	step(t, "identity", func(t *testing.T) { fidelityIdentity(t, f) })
	step(t, "impersonation in the virtual cluster", func(t *testing.T) { fidelityVirtualImpersonation(t, f) })
	step(t, "impersonation on the host", func(t *testing.T) { fidelityHostImpersonation(t, f) })
	step(t, "kubectl proxy", func(t *testing.T) { fidelityKubectlProxy(t, f) })
	step(t, "scoped key", func(t *testing.T) { fidelityScopedKey(t, f) })
	step(t, "audit", func(t *testing.T) { fidelityAudit(t, f) })
	step(t, "keys made with a revoked key", func(t *testing.T) { fidelityRevokedParent(t, f) })
	step(t, "deleting the virtual cluster revokes its keys", func(t *testing.T) { fidelityDeleteRevokes(t, f) })
}

// fidelity is what the steps of TestPlatformFidelity share: the platform,
// virtual cluster fid in namespace ns, dana's key, the kube-context the CLI
// wrote (kc, with its scoped key), the same cluster by server name
// (byName, TLS server name wantName), the three forms by name, and the
// service account sa impersonated in the virtual cluster.
type fidelity struct {
	p                        *platform
	ns, dana, kc, scoped, sa string
	wantName, byName         string
	forms                    map[string]string
}

// fidelityIdentity: without --as, every form is dana, cluster-admin, no
// group listed twice.
func fidelityIdentity(t *testing.T, f *fidelity) {
	for form, k := range f.forms {
		w := authWhoami(t, k)
		g := w.Status.UserInfo.Groups
		if w.Status.UserInfo.Username != "dana" || strings.Join(g, ",") != "system:masters,system:authenticated" {
			t.Errorf("%s form: whoami %q %v, want dana [system:masters system:authenticated]", form, w.Status.UserInfo.Username, g)
		}
	}
}

// fidelityVirtualImpersonation: with --as, the virtual cluster sees the
// service account, with the groups the API server gives it, through every
// form, and its RBAC is the service account's.
func fidelityVirtualImpersonation(t *testing.T, f *fidelity) {
	kc, sa := f.kc, f.sa
	for form, k := range f.forms {
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
}

// fidelityHostImpersonation: the host, through /kubernetes/cluster: its
// RBAC decides whether dana may impersonate. Refused first, with the API
// server's message.
func fidelityHostImpersonation(t *testing.T, f *fidelity) {
	p, ns, dana, hk := f.p, f.ns, f.dana, host.Kubeconfig
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
	out := kubectlFails(t, hostKC, "get", "pods", "-n", ns, "--as", hostSA)
	if !strings.Contains(out, fmt.Sprintf(`User %q cannot list resource "pods"`, hostSA)) {
		t.Errorf("get pods --as %s on the host: want Forbidden for the service account:\n%s", hostSA, out)
	}
	// Another service account stays out of reach.
	code, body = p.getBody(t, podsPath, dana, "Impersonate-User", "system:serviceaccount:"+ns+":other")
	if code != http.StatusForbidden || !strings.Contains(body, `cannot impersonate resource \"serviceaccounts\"`) {
		t.Errorf("dana impersonating another service account: want 403, got HTTP %d\n%s", code, body)
	}
}

// fidelityKubectlProxy: kubectl proxy with the CLI's kube-context and no
// path flags.
func fidelityKubectlProxy(t *testing.T, f *fidelity) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	proxy := exec.CommandContext(ctx, "kubectl", "--kubeconfig", f.kc, "proxy", "--port=0")
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
}

// fidelityScopedKey: clients that replace the server, or know only a
// host, a CA and a token, reach the virtual cluster with the
// kube-context's key, which is good for nothing else; dana's own key at
// the root is told how to name a virtual cluster.
func fidelityScopedKey(t *testing.T, f *fidelity) {
	p, ns, scoped := f.p, f.ns, f.scoped
	if out := kubectl(t, f.kc, "", "--server", p.url, "get", "configmaps", "-n", "default", "-o", "name"); !strings.Contains(out, "kube-root-ca.crt") {
		t.Errorf("kubectl --server %s get configmaps:\n%s", p.url, out)
	}
	ca, err := os.ReadFile(p.caFile)
	if err != nil {
		t.Fatal(err)
	}
	bare := kubernetes.NewForConfigOrDie(&rest.Config{Host: p.url, BearerToken: scoped, TLSClientConfig: rest.TLSClientConfig{CAData: ca}})
	if _, err := bare.CoreV1().Services("default").Get(context.Background(), "kubernetes", metav1.GetOptions{}); err != nil {
		t.Errorf("a client with only host, CA and the scoped key: get service default/kubernetes: %v", err)
	}
	for path, want := range map[string]string{
		"/kubernetes/cluster/" + p.cluster + "/api":                                "is scoped to virtual cluster " + p.cluster + "/" + ns + "/fid",
		"/api/v1/accesskeys":                                                       "is scoped to virtual cluster " + p.cluster + "/" + ns + "/fid",
		"/kubernetes/virtualcluster/" + p.cluster + "/" + ns + "/other/api":        "is not good for virtual cluster " + ns + "/other",
		"/kubernetes/virtualcluster/" + p.cluster + "/" + ns + "-other/fid/api/v1": "is not good for virtual cluster " + ns + "-other/fid",
	} {
		if code, body := p.getBody(t, path, scoped); code != http.StatusForbidden || !strings.Contains(body, want) {
			t.Errorf("GET %s with the scoped key: HTTP %d %s, want 403 with %q", path, code, body, want)
		}
	}
	if code, body := p.getBody(t, "/api/v1/namespaces", f.dana); code != http.StatusNotFound || !strings.Contains(body, "Sublet platform server") ||
		!strings.Contains(body, "/kubernetes/virtualcluster/CLUSTER/NAMESPACE/NAME") || !strings.Contains(body, "sublet create accesskey --vcluster NAME") {
		t.Errorf("a root request with dana's own key: HTTP %d %s, want the explanatory 404", code, body)
	}
}

// fidelityAudit: the audit record tells both identities, and for each form
// the same user, verb and virtual cluster, and the server name.
func fidelityAudit(t *testing.T, f *fidelity) {
	p, ns := f.p, f.ns
	if code, body := p.getBody(t, "/api", f.scoped); code != http.StatusOK {
		t.Errorf("GET /api with the scoped key: HTTP %d %s", code, body)
	}
	if code, body := p.getBody(t, "/kubernetes/virtualcluster/"+p.cluster+"/"+ns+"/fid/api", f.dana); code != http.StatusOK {
		t.Errorf("GET /api by path: HTTP %d %s", code, body)
	}
	kubectl(t, f.byName, "", "get", "--raw", "/api")
	audit, err := os.ReadFile(p.auditLog)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(audit), `"serverName":"`+f.wantName+`"`) || !strings.Contains(string(audit), `"impersonatedUser":"`+f.sa+`"`) {
		t.Errorf("audit log lacks the server name or the impersonated user:\n%s", testenv.Tail(string(audit), 2000))
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(string(audit), "\n") {
		var rec map[string]interface{}
		if json.Unmarshal([]byte(line), &rec) == nil && rec["user"] == "dana" && rec["verb"] == "get" && rec["virtualCluster"] == p.cluster+"/"+ns+"/fid" {
			seen[fmt.Sprint(rec["form"])] = true
		}
	}
	if !seen["key"] || !seen["serverName"] || !seen["path"] {
		t.Errorf("audit records of dana's gets of %s/fid by form: %v, want key, serverName and path", ns, seen)
	}
}

// fidelityRevokedParent: revoking the key a scoped key was made with
// revokes it at once.
func fidelityRevokedParent(t *testing.T, f *fidelity) {
	p, ns := f.p, f.ns
	var child struct {
		Name string `json:"name"`
		Key  string `json:"key"`
	}
	if err := json.Unmarshal([]byte(sublet(t, "create", "accesskey", "-o", "json")), &child); err != nil {
		t.Fatal(err)
	}
	resp, body := p.request(t, p.httpClient(t), http.MethodPost, "/api/v1/accesskeys", child.Key,
		strings.NewReader(fmt.Sprintf(`{"virtualCluster":{"cluster":%q,"namespace":%q,"name":"fid"}}`, p.cluster, ns)))
	var grandchild struct {
		Key string `json:"key"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal([]byte(body), &grandchild) != nil {
		t.Fatalf("a scoped key made with a child key: HTTP %d %s", resp.StatusCode, body)
	}
	if code, body := p.getBody(t, "/version", grandchild.Key); code != http.StatusOK {
		t.Fatalf("the scoped key made with a child key: HTTP %d %s", code, body)
	}
	sublet(t, "delete", "accesskey", child.Name)
	poll(t, 10*time.Second, "the scoped key made with a revoked key is refused", func(context.Context) (bool, error) {
		code, _ := p.getBody(t, "/version", grandchild.Key)
		return code == http.StatusUnauthorized, nil
	})
}

// fidelityDeleteRevokes: deleting the virtual cluster revokes the keys
// scoped to it.
func fidelityDeleteRevokes(t *testing.T, f *fidelity) {
	p, ns, scoped, hk := f.p, f.ns, f.scoped, host.Kubeconfig
	var keys []platformapi.AccessKeyInfo
	if err := json.Unmarshal([]byte(sublet(t, "list", "accesskeys", "-o", "json")), &keys); err != nil {
		t.Fatal(err)
	}
	scopedName := ""
	for _, k := range keys {
		if k.KeySHA256 == platformapi.HashKey(scoped) && k.VirtualCluster != nil && k.VirtualCluster.Name == "fid" {
			scopedName = k.Name
		}
	}
	if scopedName == "" || !strings.Contains(sublet(t, "list", "accesskeys"), "vcluster "+p.cluster+"/"+ns+"/fid") {
		t.Fatalf("sublet list accesskeys does not show the kube-context's key with its scope: %+v", keys)
	}
	kubectl(t, hk, "", "delete", "virtualcluster", "fid", "-n", ns, "--wait")
	poll(t, 90*time.Second, "the kube-context's key revoked with its virtual cluster", func(context.Context) (bool, error) {
		code, _ := p.getBody(t, "/version", scoped)
		out, err := exec.Command("kubectl", "--kubeconfig", hk, "get", "accesskey", scopedName, "-o", "name").CombinedOutput()
		return code == http.StatusUnauthorized && err != nil && strings.Contains(string(out), "NotFound"), nil
	})
}
