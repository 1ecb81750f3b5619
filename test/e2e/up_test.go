package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/sublet-dev/sublet/internal/testenv"
)

// keyInfo is what `sublet create|list accesskey(s) -o json` print per key.
type keyInfo struct {
	Name       string `json:"name"`
	Key        string `json:"key"`
	Expiration string `json:"expiration"`
}

// currentKubectl runs kubectl with the user's kubeconfig ($KUBECONFIG).
func currentKubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("kubectl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestUpAndCLIWorkflows: `sublet up` on a machine with nothing brings up
// the platform and a demo virtual cluster kubectl is switched to; the
// seed's CLI workflows (create, use, delete) work against it; Ctrl-C stops
// everything and a second `sublet up` resumes.
func TestUpAndCLIWorkflows(t *testing.T) {
	needHost(t) // not used, but this is an end-to-end test of the same weight
	dir := t.TempDir()
	t.Setenv("SUBLET_CONFIG", filepath.Join(dir, "cli.json"))
	t.Setenv("KUBECONFIG", filepath.Join(dir, "kubeconfig"))
	e := &upMachine{dir: dir, stateDir: filepath.Join(dir, "state")}
	e.p = e.up(t)
	// Ctrl-C, as a user stops it, then whatever virtual cluster is left
	// (they run in sessions of their own and outlive a killed `up`).
	t.Cleanup(func() {
		_ = e.p.Stop()
		killChildren(filepath.Join(e.stateDir, "agent"))
	})
	bin, err := testenv.Binary()
	if err != nil {
		t.Fatal(err)
	}
	e.bin = bin

	step(t, "demo", upDemo)
	step(t, "exec refused", upExecRefused)
	step(t, "create", func(t *testing.T) { upCreate(t, e) })
	step(t, "use", upUse)
	step(t, "bad input", func(t *testing.T) { upBadInput(t, e) })
	step(t, "interrupted create", func(t *testing.T) { upInterruptedCreate(t, e) })
	step(t, "delete", func(t *testing.T) { upDelete(t, e) })
	step(t, "access keys", func(t *testing.T) { upAccessKeys(t, e) })
	step(t, "keys made with keys", func(t *testing.T) { upKeysMadeWithKeys(t, e) })
	step(t, "login", func(t *testing.T) { upLogin(t, e) })
	step(t, "connect clusters", func(t *testing.T) { upConnectClusters(t, e) })
	step(t, "stop and resume", func(t *testing.T) { upStopAndResume(t, e) })
}

// upMachine is the machine of TestUpAndCLIWorkflows: the CLI's config and
// kubeconfig in dir, `sublet up` with state in stateDir.
type upMachine struct {
	dir, stateDir string
	bin           string
	p             *testenv.Process
	// server is the platform's address the CLI logged in to; platform
	// reaches it with its CA (set by upAccessKeys).
	server   string
	platform *platform
}

// up runs `sublet up` until it says it is up.
func (e *upMachine) up(t *testing.T) *testenv.Process {
	start := time.Now()
	p, _, err := testenv.StartUntil(context.Background(), "Sublet is up.", "up", "--state-dir", e.stateDir, "--listen", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sublet up → demo ready and kubectl switched: %.1f s", time.Since(start).Seconds())
	return p
}

// upDemo: kubectl is switched to the demo virtual cluster.
func upDemo(t *testing.T) {
	if out := currentKubectl(t, "get", "namespaces"); !strings.Contains(out, "kube-system") {
		t.Fatalf("kubectl get namespaces in demo:\n%s", out)
	}
	if ctx := strings.TrimSpace(currentKubectl(t, "config", "current-context")); ctx != "sublet_local_vcluster-demo_demo" {
		t.Errorf("current context %q", ctx)
	}
}

// upExecRefused: a tenant's exec runs nothing on this machine: the local
// host answers with an error unless an admin started it with
// --simulate-exec.
func upExecRefused(t *testing.T) {
	currentKubectl(t, "run", "probe", "--image=busybox")
	currentKubectl(t, "wait", "--for=condition=Ready", "pod/probe", "--timeout=60s")
	marker := filepath.Join(os.TempDir(), fmt.Sprintf("sublet-exec-marker-%d", time.Now().UnixNano()))
	if execOut, err := exec.Command("kubectl", "exec", "probe", "--", "sh", "-c", "touch "+marker).CombinedOutput(); err == nil {
		t.Errorf("kubectl exec into a simulated pod succeeded under sublet up:\n%s", execOut)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		os.Remove(marker)
		t.Errorf("kubectl exec ran a tenant's command on this machine (%s exists)", marker)
	}
}

// upCreate: create waits until ready, adds and switches the kube-context,
// which reaches the new cluster with a key scoped to it; a key scoped to it
// by hand reaches it and nothing else.
func upCreate(t *testing.T, e *upMachine) {
	stateDir := e.stateDir
	out := sublet(t, "create", "vcluster", "team-a")
	if !strings.Contains(out, "is ready") {
		t.Errorf("create output:\n%s", out)
	}
	if ctx := strings.TrimSpace(currentKubectl(t, "config", "current-context")); ctx != "sublet_local_vcluster-team-a_team-a" {
		t.Errorf("after create, current context %q", ctx)
	}
	// The host namespace Sublet made for it carries the cluster's pod
	// security level, so the host's own admission backs up the syncer.
	poll(t, 30*time.Second, "host namespace vcluster-team-a labelled baseline", func(context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", filepath.Join(stateDir, "host", "admin.kubeconfig"), "get", "namespace", "vcluster-team-a",
			"-o", `jsonpath={.metadata.labels.pod-security\.kubernetes\.io/enforce}`).Output()
		return err == nil && string(out) == "baseline", nil
	})
	currentKubectl(t, "create", "namespace", "only-in-team-a")
	// The kube-context reaches it at the root of the platform's address,
	// with a key scoped to it that the server routes there.
	server := currentKubectl(t, "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}")
	serverName := currentKubectl(t, "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.tls-server-name}")
	if strings.Contains(server, "/kubernetes/") || serverName != "" {
		t.Errorf("kube-context server %q, tls-server-name %q: want the platform's address alone", server, serverName)
	}
	if keys := sublet(t, "list", "accesskeys"); !strings.Contains(keys, "vcluster local/vcluster-team-a/team-a") {
		t.Errorf("sublet list accesskeys lacks the key scoped to team-a:\n%s", keys)
	}
	// Using it again keeps the kube-context's key: no key per use.
	ctxKey := currentKubectl(t, "config", "view", "--minify", "--raw", "-o", "jsonpath={.users[0].user.token}")
	sublet(t, "use", "vcluster", "team-a")
	if again := currentKubectl(t, "config", "view", "--minify", "--raw", "-o", "jsonpath={.users[0].user.token}"); again != ctxKey {
		t.Errorf("use vcluster team-a again made a new key for its kube-context")
	}
	// A key scoped to it by hand: kubectl with the address, the CA and the
	// key alone reaches team-a, and nothing else of the platform.
	var scoped struct {
		Key            string `json:"key"`
		VirtualCluster *struct {
			Cluster, Namespace, Name string
		} `json:"virtualCluster"`
	}
	if err := json.Unmarshal([]byte(sublet(t, "create", "accesskey", "--vcluster", "team-a", "--ttl", "1h", "-o", "json")), &scoped); err != nil {
		t.Fatal(err)
	}
	if sc := scoped.VirtualCluster; sc == nil || sc.Cluster != "local" || sc.Namespace != "vcluster-team-a" || sc.Name != "team-a" {
		t.Fatalf("create accesskey --vcluster team-a: scope %+v", sc)
	}
	empty := filepath.Join(e.dir, "empty.kubeconfig")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	bare := []string{"--server", server, "--token", scoped.Key, "--certificate-authority", filepath.Join(stateDir, "server", "pki", "ca.crt")}
	if out := kubectl(t, empty, "", append(bare, "get", "namespaces")...); !strings.Contains(out, "only-in-team-a") {
		t.Errorf("kubectl with the address, the CA and team-a's scoped key:\n%s", out)
	}
	if out := kubectlFails(t, empty, append(bare, "get", "--raw", "/kubernetes/cluster/local/api")...); !strings.Contains(out, "is scoped to virtual cluster local/vcluster-team-a/team-a") {
		t.Errorf("the scoped key on the host proxy:\n%s", out)
	}
}

// upUse: without a name it lists; with one it switches; --path-form
// writes the seed's form, which works the same.
func upUse(t *testing.T) {
	list := sublet(t, "use", "vcluster")
	if !strings.Contains(list, "demo") || !strings.Contains(list, "team-a") {
		t.Errorf("use vcluster list:\n%s", list)
	}
	sublet(t, "use", "vcluster", "demo", "--path-form")
	server := currentKubectl(t, "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}")
	if !strings.HasSuffix(server, "/kubernetes/virtualcluster/local/vcluster-demo/demo") {
		t.Errorf("use --path-form: kube-context server %q is not the seed's form", server)
	}
	if out := currentKubectl(t, "get", "namespaces"); strings.Contains(out, "only-in-team-a") || !strings.Contains(out, "kube-system") {
		t.Errorf("after use demo, kubectl does not talk to demo:\n%s", out)
	}
}

// upBadInput: a clear error, nothing created.
func upBadInput(t *testing.T, e *upMachine) {
	dir, stateDir := e.dir, e.stateDir
	dupValues := filepath.Join(dir, "dup-values.yaml")
	if err := os.WriteFile(dupValues, []byte("virtualCluster:\n  image: rancher/k3s:v1.35.0-k3s1\n  image: rancher/k3s:v1.36.0-k3s1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	twoDocs := filepath.Join(dir, "two-docs.yaml")
	if err := os.WriteFile(twoDocs, []byte("sync: {}\n---\nsync: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"create", "vcluster", strings.Repeat("a", 41)}, "may have at most 40"},
		{[]string{"create", "vcluster", "x.y"}, "must not contain dots"},
		{[]string{"create", "vcluster", "x", "--space", "team.a"}, `--space "team.a" is not a namespace name`},
		{[]string{"create", "vcluster", "x", "--values", dupValues}, "virtualCluster.image: given twice (lines 2 and 3)"},
		{[]string{"create", "vcluster", "x", "-f", twoDocs}, "2 YAML documents"},
		{[]string{"create", "vcluster", "x", "--set", "virtualCluster.image=rancher/k3s:v1.35.0-k3s1", "--set", "virtualCluster.image=rancher/k3s:v1.36.0-k3s1"}, "sets virtualCluster.image twice"},
		{[]string{"create", "vcluster", "x", "--set", "virtualCluster.imag=rancher/k3s:v1.35.0-k3s1"}, "virtualCluster.imag"},
		{[]string{"create", "vcluster", "x", "--cluster", "nope"}, `cluster "nope" is not connected`},
		{[]string{"delete", "vcluster", "never-made"}, "does not exist"},
		{[]string{"create", "vcluster", "x", "--bogus"}, "unknown flag"},
	} {
		out, code, err := testenv.Run(time.Minute, bad.args...)
		if err != nil || code == 0 || !strings.Contains(out, bad.want) {
			t.Errorf("sublet %s: exit %d (%v), want an error naming %q:\n%s", strings.Join(bad.args, " "), code, err, bad.want, out)
		}
	}

	if out := kubectl(t, filepath.Join(stateDir, "host", "admin.kubeconfig"), "", "get", "virtualclusters", "-A", "-o", "name"); strings.Contains(out, "/x") || strings.Contains(out, "aaaa") {
		t.Errorf("a refused create left a virtual cluster:\n%s", out)
	}
}

// upInterruptedCreate: Ctrl-C while create waits: it says so, and that the
// cluster keeps starting; the object stays and comes up.
func upInterruptedCreate(t *testing.T, e *upMachine) {
	create := exec.Command(e.bin, "create", "vcluster", "interrupted")
	stdout, err := create.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	create.Stderr = &stderr
	if err := create.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "Creating virtual cluster interrupted") {
	}
	_ = create.Process.Signal(os.Interrupt)
	for sc.Scan() {
	}
	if err := create.Wait(); err == nil || !strings.Contains(stderr.String(), "interrupted while waiting: virtual cluster interrupted keeps starting in the background") {
		t.Errorf("create interrupted by Ctrl-C: %v\n%s", err, stderr.String())
	}
	kubectl(t, filepath.Join(e.stateDir, "host", "admin.kubeconfig"), "", "wait", "--for=jsonpath={.status.phase}=Ready", "virtualcluster/interrupted", "-n", "vcluster-interrupted", "--timeout=120s")
	sublet(t, "delete", "vcluster", "interrupted")
}

// upDelete: the virtual cluster, its host objects and its kube-context go.
func upDelete(t *testing.T, e *upMachine) {
	sublet(t, "delete", "vcluster", "team-a")
	if out := currentKubectl(t, "config", "get-contexts", "-o", "name"); strings.Contains(out, "team-a") {
		t.Errorf("kube-context of the deleted virtual cluster left:\n%s", out)
	}
	hostKC := filepath.Join(e.stateDir, "host", "admin.kubeconfig")
	if out := kubectl(t, hostKC, "", "get", "virtualclusters,pods,secrets", "-n", "vcluster-team-a", "-o", "name"); strings.Contains(out, "team-a") {
		t.Errorf("host objects of the deleted virtual cluster left:\n%s", out)
	}
}

// upAccessKeys: one for another user, printed alone on stdout, works, is
// listed, and is revoked at once.
func upAccessKeys(t *testing.T, e *upMachine) {
	keyOut, err := exec.Command(e.bin, "create", "accesskey", "--user", "dave", "--ttl", "1h").Output()
	if err != nil {
		t.Fatalf("create accesskey: %v", err)
	}
	key := strings.TrimSpace(string(keyOut))
	if strings.Contains(key, "\n") || !strings.HasPrefix(key, "slk_") {
		t.Fatalf("create accesskey stdout is not the key alone: %q", keyOut)
	}
	var cfg struct {
		Server string `json:"server"`
	}
	data, _ := os.ReadFile(filepath.Join(e.dir, "cli.json"))
	_ = json.Unmarshal(data, &cfg)
	p2 := &platform{url: cfg.Server, caFile: filepath.Join(e.stateDir, "server", "pki", "ca.crt")}
	e.server, e.platform = cfg.Server, p2
	if got := p2.get(t, "/api/v1/whoami", key); got != 200 {
		t.Errorf("new key: whoami %d", got)
	}
	var keys []map[string]interface{}
	if err := json.Unmarshal([]byte(sublet(t, "list", "accesskeys", "-o", "json")), &keys); err != nil {
		t.Fatal(err)
	}
	daveKey := ""
	for _, k := range keys {
		if k["user"] == "dave" {
			daveKey, _ = k["name"].(string)
		}
	}
	if daveKey == "" {
		t.Fatalf("list accesskeys lacks dave's key: %v", keys)
	}
	sublet(t, "delete", "accesskey", daveKey)
	if got := p2.get(t, "/api/v1/whoami", key); got != 401 {
		t.Errorf("revoked key: whoami %d, want 401", got)
	}
}

// upKeysMadeWithKeys: a key made with an expiring key never outlives it,
// and is revoked with it at once.
func upKeysMadeWithKeys(t *testing.T, e *upMachine) {
	dir, bin, p2 := e.dir, e.bin, e.platform
	expiring := func() (name, key string) {
		t.Helper()
		out, err := exec.Command(bin, "create", "accesskey", "--ttl", "1h", "-o", "json").Output()
		if err != nil {
			t.Fatalf("create accesskey --ttl 1h: %v", err)
		}
		var info keyInfo
		if err := json.Unmarshal(out, &info); err != nil {
			t.Fatalf("create accesskey -o json: %v\n%s", err, out)
		}
		return info.Name, info.Key
	}
	parentName, parentKey := expiring()
	parentCfg := filepath.Join(dir, "parent.json")
	data, _ := json.Marshal(map[string]string{"server": e.server, "accessKey": parentKey, "certificateAuthority": p2.caFile})
	if err := os.WriteFile(parentCfg, data, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SUBLET_CONFIG", parentCfg)
	childOut, err := exec.Command(bin, "create", "accesskey", "-o", "json").Output()
	t.Setenv("SUBLET_CONFIG", filepath.Join(dir, "cli.json"))
	if err != nil {
		t.Fatalf("create accesskey with an expiring key: %v", err)
	}
	var child keyInfo
	if err := json.Unmarshal(childOut, &child); err != nil {
		t.Fatalf("%v\n%s", err, childOut)
	}
	var all []keyInfo
	if err := json.Unmarshal([]byte(sublet(t, "list", "accesskeys", "-o", "json")), &all); err != nil {
		t.Fatal(err)
	}
	parentExpires := ""
	for _, k := range all {
		if k.Name == parentName {
			parentExpires = k.Expiration
		}
	}
	if child.Expiration == "" || parentExpires == "" || child.Expiration > parentExpires {
		t.Errorf("a key made with a key expiring %q expires %q", parentExpires, child.Expiration)
	}
	if got := p2.get(t, "/api/v1/whoami", child.Key); got != 200 {
		t.Errorf("child key: whoami %d", got)
	}
	sublet(t, "delete", "accesskey", parentName)
	if got := p2.get(t, "/api/v1/whoami", child.Key); got != 401 {
		t.Errorf("key made with a revoked key: whoami %d, want 401", got)
	}
}

// upLogin: logging out and in again with the admin key; a bad key or an
// untrusted certificate is a clear error.
func upLogin(t *testing.T, e *upMachine) {
	adminKey, err := os.ReadFile(filepath.Join(e.stateDir, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	sublet(t, "logout")
	if out, code, _ := testenv.Run(time.Minute, "list", "vclusters"); code == 0 || !strings.Contains(out, "not logged in") {
		t.Errorf("list after logout: exit %d\n%s", code, out)
	}
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"login", e.server, "--access-key", "slk_wrong", "--ca-file", e.platform.caFile}, "valid access key is required"},
		{[]string{"login", e.server, "--access-key", strings.TrimSpace(string(adminKey))}, "--ca-file"},
		{[]string{"login", strings.TrimPrefix(e.server, "https://"), "--access-key", "x"}, "must start with https://"},
	} {
		if out, code, _ := testenv.Run(time.Minute, bad.args...); code == 0 || !strings.Contains(out, bad.want) {
			t.Errorf("sublet %s: exit %d, want an error naming %q:\n%s", strings.Join(bad.args, " "), code, bad.want, out)
		}
	}
	if out := sublet(t, "login", e.server, "--access-key", strings.TrimSpace(string(adminKey)), "--ca-file", e.platform.caFile); !strings.Contains(out, "as admin") {
		t.Errorf("login: %s", out)
	}
}

// upConnectClusters: connecting a second cluster makes --cluster needed; a
// kubeconfig with an exec plugin runs that plugin on the platform server,
// so it is refused unless the admin says --allow-exec-plugin.
func upConnectClusters(t *testing.T, e *upMachine) {
	sublet(t, "connect", "cluster", "second", "--kubeconfig", host.Kubeconfig)
	if out := sublet(t, "list", "clusters"); !strings.Contains(out, "second") || !strings.Contains(out, "local") || !strings.Contains(out, "Ready") {
		t.Errorf("list clusters:\n%s", out)
	}
	out, code, _ := testenv.Run(time.Minute, "create", "vcluster", "y")
	if code == 0 || !strings.Contains(out, "pass --cluster, one of: local, second") {
		t.Errorf("create without --cluster and two clusters: exit %d\n%s", code, out)
	}

	token := strings.TrimSpace(kubectl(t, host.Kubeconfig, "", "create", "token", "default", "-n", "default"))
	plugin := filepath.Join(e.dir, "token-plugin.sh")
	if err := os.WriteFile(plugin, []byte(fmt.Sprintf("#!/bin/sh\necho '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{\"token\":\"%s\"}}'\n", token)), 0o755); err != nil {
		t.Fatal(err)
	}
	hostCfg, err := clientcmd.LoadFromFile(host.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range hostCfg.AuthInfos {
		*a = clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{APIVersion: "client.authentication.k8s.io/v1", Command: plugin, InteractiveMode: clientcmdapi.NeverExecInteractiveMode}}
	}
	execKubeconfig := filepath.Join(e.dir, "exec.kubeconfig")
	if err := clientcmd.WriteToFile(*hostCfg, execKubeconfig); err != nil {
		t.Fatal(err)
	}
	if out, code, _ := testenv.Run(time.Minute, "connect", "cluster", "plugged", "--kubeconfig", execKubeconfig); code == 0 || !strings.Contains(out, "--allow-exec-plugin") {
		t.Errorf("connect with an exec plugin: exit %d, want a refusal naming --allow-exec-plugin:\n%s", code, out)
	}
	sublet(t, "connect", "cluster", "plugged", "--kubeconfig", execKubeconfig, "--allow-exec-plugin")
	poll(t, 60*time.Second, "the exec-plugin cluster Ready in the list", func(context.Context) (bool, error) {
		out, _, _ := testenv.Run(time.Minute, "list", "clusters")
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "plugged ") && strings.Contains(l, "Ready") {
				return true, nil
			}
		}
		return false, nil
	})
}

// upStopAndResume: Ctrl-C stops everything; up again resumes.
func upStopAndResume(t *testing.T, e *upMachine) {
	if err := e.p.Stop(); err != nil {
		t.Fatalf("sublet up did not stop cleanly: %v\n%s", err, e.p.Output())
	}
	if n := processesWith(e.stateDir); n != 0 {
		t.Errorf("%d processes of the stopped platform still run", n)
	}
	e.p = e.up(t)
	if out := currentKubectl(t, "get", "namespaces"); !strings.Contains(out, "kube-system") {
		t.Errorf("after resuming, kubectl get namespaces in demo:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(e.stateDir, "admin.key")); err != nil {
		t.Errorf("admin key not kept: %v", err)
	}
}
