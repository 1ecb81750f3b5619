package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/config/policy"
	"github.com/sublet-dev/sublet/internal/testenv"
)

// TestPlatformUnderRunc runs the server and the agent of charts/sublet
// under runc as the chart's Deployments run them: the release is installed
// on the local host with the Helm SDK (agent.runtime=process, so the
// virtual cluster runs inside the agent's container), and each
// Deployment's pod (command, args, env, user, security context, the
// chart's volumes and Secrets, a token of the chart's own ServiceAccount)
// runs in a container of the image `make image` builds, in the host's
// network namespace. The agent brings a VirtualCluster up; the CLI, logged
// in to the server in its container with the chart's admin key and CA,
// connects the host with the chart's cluster-access token and reaches the
// virtual cluster through the proxy, where a Deployment's pod then runs on
// the host. Both containers stop cleanly on SIGTERM within their grace
// period.
func TestPlatformUnderRunc(t *testing.T) {
	needHost(t)
	bin, err := testenv.Binary()
	if err != nil {
		t.Fatal(err)
	}
	runc := needRunc(t, bin)
	ip := nodeIP(t)
	_, rel := installChart(t, map[string]interface{}{"agent": map[string]interface{}{"runtime": "process"}})
	server := deploymentPod(t, rel.Manifest, chartRelease+"-server", ip)
	agent := deploymentPod(t, rel.Manifest, chartRelease+"-agent", ip)
	for _, p := range []chartPod{server, agent} {
		p.checkHardening(t)
		p.refusePortsInUse(t)
	}

	// One read-only root for both containers, as a runtime shares an
	// image's layers.
	rootfs, cf := imageRootFS(t, bin)
	dir := t.TempDir()
	start := func(p chartPod) *container {
		bundle := filepath.Join(dir, p.name)
		if err := os.Mkdir(bundle, 0o755); err != nil {
			t.Fatal(err)
		}
		writeJSON(t, filepath.Join(bundle, "config.json"), p.ociSpec(t, cf.Config, rootfs, bundle, ""))
		return runc.start(t, "sublet-e2e-"+p.name+"-"+strconv.Itoa(os.Getpid()), bundle)
	}

	srv := start(server)
	probe := server.probeURL(t)
	waitReady(t, probe, srv.exited, srv.output)
	t.Logf("runc: server container start → %s 200 in %s", probe, time.Since(srv.started).Round(10*time.Millisecond))

	ag := start(agent)
	// The agent is up once it keeps the admission policy's parameter: until
	// then the policy refuses every VirtualCluster.
	poll(t, 60*time.Second, "the agent's ConfigMap "+policy.TemplateIsolation, func(ctx context.Context) (bool, error) {
		select {
		case <-ag.exited:
			t.Fatalf("the agent's container exited:\n%s", testenv.Tail(ag.output(), 40))
		default:
		}
		_, err := host.Client.CoreV1().ConfigMaps(chartNamespace).Get(ctx, policy.TemplateIsolation, metav1.GetOptions{})
		return err == nil, nil
	})
	ns := createNamespace(t, host.Client, "runc-platform")
	const name = "rcvc"
	kubectl(t, host.Kubeconfig, seedManifest(name, ns, "10.96.0.0/16"), "apply", "-f", "-")
	applied := time.Now()
	waitVCPhase(t, ns, name, storagev1.PhaseReady, 2*time.Minute)
	t.Logf("runc: agent container start → VirtualCluster Ready in %s (%s after apply)",
		time.Since(ag.started).Round(10*time.Millisecond), time.Since(applied).Round(10*time.Millisecond))

	// The CLI against the server in its container, as NOTES.txt has an
	// admin log in: the chart's admin key and the chart's CA (127.0.0.1 is
	// among the names the server certifies).
	t.Setenv("SUBLET_CONFIG", filepath.Join(t.TempDir(), "cli.json"))
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, secretData(t, chartRelease+"-server-ca")["ca.crt"], 0o600); err != nil {
		t.Fatal(err)
	}
	sublet(t, "login", "https://127.0.0.1:"+server.port(t, "https"), "--access-key", adminKeyOf(t), "--ca-file", caFile)
	const cluster = "runc-local"
	connectChartCluster(t, cluster)
	kc := filepath.Join(t.TempDir(), "vc.kubeconfig")
	t.Setenv("KUBECONFIG", kc)
	sublet(t, "use", "vcluster", name, "--cluster", cluster)
	if out := kubectl(t, kc, "", "get", "namespaces"); !strings.Contains(out, "kube-system") {
		t.Errorf("kubectl get namespaces through the server's proxy:\n%s", out)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	checkPodOnHost(t, kubernetes.NewForConfigOrDie(cfg), ns, name)

	for _, c := range []struct {
		pod chartPod
		ctr *container
	}{{server, srv}, {agent, ag}} {
		grace := 30 * time.Second // the API server's default
		if g := c.pod.spec().TerminationGracePeriodSeconds; g != nil {
			grace = time.Duration(*g) * time.Second
		}
		t.Logf("runc: %s SIGTERM → exit in %s (grace period %s)", c.pod.name, c.ctr.stop(t, grace).Round(10*time.Millisecond), grace)
	}
	noForbidden(t, "the server's container", srv.output())
	noForbidden(t, "the agent's container", ag.output())
}

// deploymentPod is a pod of Deployment name in the release's manifest,
// with this machine's address ip.
func deploymentPod(t *testing.T, manifest, name, ip string) chartPod {
	t.Helper()
	for _, doc := range releaseutil.SplitManifests(manifest) {
		d := &appsv1.Deployment{}
		if err := yaml.Unmarshal([]byte(doc), d); err != nil {
			t.Fatal(err)
		}
		if d.Kind != "Deployment" || d.Name != name {
			continue
		}
		if len(d.Spec.Template.Spec.Containers) != 1 {
			t.Fatalf("charts/sublet: Deployment %s has %d containers, want 1", name, len(d.Spec.Template.Spec.Containers))
		}
		return chartPod{from: "charts/sublet Deployment " + name, name: name + "-runc", template: d.Spec.Template, ns: d.Namespace, ip: ip}
	}
	t.Fatalf("charts/sublet renders no Deployment %s", name)
	return chartPod{}
}
