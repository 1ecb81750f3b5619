package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/release"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/testenv"
)

// TestChartInstall: charts/sublet installs into the host with the Helm SDK;
// the API server accepts every object (the namespace enforces restricted
// pod security, so the pods pass it), the simulated nodes run the agent
// and server pods, the hook creates the admin AccessKey for the generated
// key, an upgrade keeps the generated CA and key, and a TLS Secret that
// does not exist fails the install naming the value.
func TestChartInstall(t *testing.T) {
	needHost(t)
	ctx := context.Background()

	// Checked against the real cluster (lookup), before anything exists.
	missing := action.NewInstall(helmConfig(t))
	missing.ReleaseName, missing.Namespace, missing.DryRun, missing.DryRunOption = chartRelease, chartNamespace, true, "server"
	_, err := missing.RunWithContext(ctx, subletChart(t), chartValues(map[string]interface{}{
		"server": map[string]interface{}{"tls": map[string]interface{}{"secretName": "no-such-secret"}},
	}))
	if err == nil || !strings.Contains(err.Error(), "server.tls.secretName") || !strings.Contains(err.Error(), "no-such-secret") {
		t.Errorf("install with a TLS Secret that does not exist: %v, want an error naming server.tls.secretName", err)
	}

	cfg, rel := installChart(t, nil)
	if rel.Info.Status != release.StatusDeployed {
		t.Fatalf("release %s", rel.Info.Status)
	}
	for _, want := range []string{"kind: Deployment", "kind: Service\n", "kind: ClusterRole\n", "kind: CustomResourceDefinition"} {
		if !strings.Contains(rel.Manifest, want) {
			t.Errorf("the release lacks %q", strings.TrimSpace(want))
		}
	}
	for _, name := range []string{"sublet-agent", "sublet-server"} {
		poll(t, 60*time.Second, "a Running pod of "+name, func(ctx context.Context) (bool, error) {
			pods, err := host.Client.CoreV1().Pods(chartNamespace).List(ctx, metav1.ListOptions{
				LabelSelector: "app.kubernetes.io/instance=sublet,app.kubernetes.io/component=" + strings.TrimPrefix(name, "sublet-")})
			if err != nil {
				return false, nil
			}
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodRunning {
					return true, nil
				}
			}
			return false, nil
		})
	}
	key := adminKeyOf(t)
	ak := &storagev1.AccessKey{}
	getAccessKey(t, "sublet-admin-key", ak)
	if sum := sha256.Sum256([]byte(key)); ak.Spec.KeySHA256 != hex.EncodeToString(sum[:]) || ak.Spec.User != "admin" {
		t.Errorf("AccessKey %+v does not hold the hash of the generated key for user admin", ak.Spec)
	}
	ca := secretData(t, "sublet-server-ca")

	upgrade := action.NewUpgrade(cfg)
	upgrade.Namespace = chartNamespace
	if _, err := upgrade.RunWithContext(ctx, chartRelease, subletChart(t), chartValues(map[string]interface{}{
		"server": map[string]interface{}{"ingress": map[string]interface{}{
			"enabled": true, "host": "sublet.example.com", "annotations": map[string]interface{}{"cert-manager.io/cluster-issuer": "letsencrypt"}}},
	})); err != nil {
		t.Fatalf("helm upgrade: %v", err)
	}
	if got := adminKeyOf(t); got != key {
		t.Error("helm upgrade changed the admin access key")
	}
	if got := secretData(t, "sublet-server-ca"); string(got["ca.key"]) != string(ca["ca.key"]) {
		t.Error("helm upgrade changed the server's CA")
	}
	ann := kubectl(t, host.Kubeconfig, "", "get", "ingress", "sublet-server", "-n", chartNamespace, "-o", "jsonpath={.metadata.annotations}")
	if !strings.Contains(ann, "letsencrypt") {
		t.Errorf("ingress annotations %s lack the user's", ann)
	}
}

func getAccessKey(t *testing.T, name string, ak *storagev1.AccessKey) {
	t.Helper()
	out := kubectl(t, host.Kubeconfig, "", "get", "accesskey", name, "-o", "json")
	if err := json.Unmarshal([]byte(out), ak); err != nil {
		t.Fatal(err)
	}
}

// serviceAccountKubeconfig mints a token for one of the chart's
// ServiceAccounts (TokenRequest, as the kubelet would for its pod).
func serviceAccountKubeconfig(t *testing.T, name string) string {
	t.Helper()
	tr, err := host.Client.CoreV1().ServiceAccounts(chartNamespace).CreateToken(context.Background(), name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tokenKubeconfig(t, name, tr.Status.Token)
}

// startChartAgent runs `sublet agent` as the pod would (flags of the
// chart's Deployment), outside the cluster with the agent's token.
func startChartAgent(t *testing.T, kubeconfig, runtime string) *testenv.Process {
	t.Helper()
	stateDir := t.TempDir()
	args := []string{"agent", "--kubeconfig", kubeconfig, "--state-dir", stateDir, "--runtime", runtime,
		"--install-crds=false", "--leader-elect=true", "--leader-election-namespace", chartNamespace, "--metrics-bind-address", "0"}
	if runtime == "pod" {
		args = append(args, "--image", "registry.local:5000/sublet:e2e")
	}
	p, _, err := testenv.StartUntil(context.Background(), "Sublet agent is running", args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Kill()
		killChildren(stateDir)
		if t.Failed() {
			t.Logf("agent (%s runtime) output:\n%s", runtime, testenv.Tail(p.Output(), 60))
		}
	})
	return p
}

// TestChartRBAC: the rights the chart grants are enough for what the agent
// and the server do. Both run outside the cluster with tokens of the
// chart's ServiceAccounts: the agent's pod runtime installs and uninstalls
// a virtual cluster's release; after a helm upgrade to the process runtime
// the agent brings a VirtualCluster up; the server, with its own token for
// the management cluster and the chart's cluster-access token Secret for
// the connected cluster "local", serves the admin key's user through its
// proxy into that virtual cluster.
func TestChartRBAC(t *testing.T) {
	needHost(t)
	ctx := context.Background()
	cfg, _ := installChart(t, nil)
	agentKC := serviceAccountKubeconfig(t, "sublet-agent")

	// Pod runtime: the vcluster chart's release (StatefulSet, Service,
	// ServiceAccount, Role, ClusterRole and their bindings) is accepted.
	ns := createNamespace(t, host.Client, "chart-pod")
	agent := startChartAgent(t, agentKC, "pod")
	kubectl(t, host.Kubeconfig, seedManifest("podvc", ns, "10.96.0.0/16"), "apply", "-f", "-")
	poll(t, 90*time.Second, "the pod runtime's release installed", func(ctx context.Context) (bool, error) {
		vc := vcStatus(t, ns, "podvc")
		return vc.Status.Runtime == "pod" && strings.Contains(vc.Status.Message, "waiting for the virtual cluster pod"), nil
	})
	if _, err := host.Client.AppsV1().StatefulSets(ns).Get(ctx, "podvc", metav1.GetOptions{}); err != nil {
		t.Errorf("the release's StatefulSet: %v", err)
	}
	kubectl(t, host.Kubeconfig, "", "delete", "virtualcluster", "podvc", "-n", ns, "--timeout=90s")
	if _, err := host.Client.AppsV1().StatefulSets(ns).Get(ctx, "podvc", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("after delete, the release's StatefulSet: %v, want NotFound", err)
	}
	noForbidden(t, "the pod runtime agent", agent.Output())
	agent.Kill()

	// Process runtime: the agent also mints its syncers' tokens.
	upgrade := action.NewUpgrade(cfg)
	upgrade.Namespace = chartNamespace
	if _, err := upgrade.RunWithContext(ctx, chartRelease, subletChart(t), chartValues(map[string]interface{}{
		"agent": map[string]interface{}{"runtime": "process"},
	})); err != nil {
		t.Fatalf("helm upgrade to the process runtime: %v", err)
	}
	ns = createNamespace(t, host.Client, "chart-proc")
	agent = startChartAgent(t, agentKC, "process")
	kubectl(t, host.Kubeconfig, seedManifest("procvc", ns, "10.96.0.0/16"), "apply", "-f", "-")
	waitVCPhase(t, ns, "procvc", storagev1.PhaseReady, 2*time.Minute)

	// The server: its own token for the management cluster (this one).
	stateDir := t.TempDir()
	srv, url, err := testenv.StartUntil(ctx, "Sublet server is running at ",
		"server", "--kubeconfig", serviceAccountKubeconfig(t, "sublet-server"), "--listen", "127.0.0.1:0",
		"--state-dir", stateDir, "--install-crds=false", "--audit-log", filepath.Join(stateDir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Kill()
		if t.Failed() {
			t.Logf("server output:\n%s", testenv.Tail(srv.Output(), 60))
		}
	})
	t.Setenv("SUBLET_CONFIG", filepath.Join(t.TempDir(), "cli.json"))
	sublet(t, "login", url, "--access-key", adminKeyOf(t), "--ca-file", filepath.Join(stateDir, "pki", "ca.crt"))
	const cluster = "chart-local"
	connectChartCluster(t, cluster)
	if out := sublet(t, "list", "vclusters"); !strings.Contains(out, "procvc") {
		t.Errorf("sublet list vclusters through the chart's identities lacks procvc:\n%s", out)
	}
	// Through the proxy into the virtual cluster: access review,
	// VirtualCluster and its kubeconfig Secret read with the chart's rights.
	kc := filepath.Join(t.TempDir(), "vc.kubeconfig")
	t.Setenv("KUBECONFIG", kc)
	sublet(t, "use", "vcluster", "procvc", "--cluster", cluster)
	if out := kubectl(t, kc, "", "get", "namespaces"); !strings.Contains(out, "kube-system") {
		t.Errorf("kubectl get namespaces through the platform:\n%s", out)
	}
	// The server records the cluster's status with its own rights.
	poll(t, 60*time.Second, "cluster "+cluster+" Ready", func(ctx context.Context) (bool, error) {
		c := &storagev1.Cluster{}
		out, err := exec.Command("kubectl", "--kubeconfig", host.Kubeconfig, "get", "cluster.storage.loft.sh", cluster, "-o", "json").Output()
		if err != nil {
			return false, nil
		}
		if err := json.Unmarshal(out, c); err != nil {
			return false, err
		}
		return c.Status.Phase == "Ready", nil
	})
	kubectl(t, host.Kubeconfig, "", "delete", "virtualcluster", "procvc", "-n", ns, "--timeout=90s")
	noForbidden(t, "the process runtime agent", agent.Output())
	noForbidden(t, "the server", srv.Output())
}
