package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/sublet-dev/sublet/charts"
	"github.com/sublet-dev/sublet/internal/testenv"
)

// runcRelease is the test's release of charts/vcluster, so the virtual
// cluster's name.
const runcRelease = "rc"

// TestImageUnderRunc runs the image `make image` builds under runc, with
// no container daemon, as charts/vcluster runs it: the StatefulSet's
// command, args, env, user, security context and volumes, the service
// account token of the chart's own ServiceAccount minted on the local host
// at the in-cluster paths, and the host's network namespace (the chart's
// fixed ports 8443 and 1053 on this machine). It checks that the chart's
// readiness probe passes, that a Deployment of the virtual cluster runs its
// pod in the host namespace under the translated name, that the DNS
// listener answers, and that SIGTERM stops the container cleanly within
// the chart's grace period. It logs the image's size and start → ready,
// against the same figure for the same args run as a plain process.
func TestImageUnderRunc(t *testing.T) {
	needHost(t)
	ctx := context.Background()
	bin, err := testenv.Binary()
	if err != nil {
		t.Fatal(err)
	}
	runc := needRunc(t, bin)

	ns := createNamespace(t, host.Client, "runc")
	sts, rbac := renderVClusterChart(t, runcRelease, ns)
	pod := statefulSetPod(sts, ns, nodeIP(t))
	pod.checkHardening(t)
	probe := pod.probeURL(t)
	pod.refusePortsInUse(t)
	applyChartRBAC(t, rbac)

	dir := t.TempDir()
	img, size := buildImage(t, bin, filepath.Join(dir, "sublet-image.tar"))
	t.Logf("image archive: %.1f MiB", float64(size)/(1<<20))
	bundle := filepath.Join(dir, "bundle")
	unpackRootFS(t, img, filepath.Join(bundle, "rootfs"))
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	writeJSON(t, filepath.Join(bundle, "config.json"), pod.ociSpec(t, cf.Config, "rootfs", dir, data))

	c := runc.start(t, "sublet-e2e-"+strconv.Itoa(os.Getpid()), bundle)
	waitReady(t, probe, c.exited, c.output)
	t.Logf("runc: container start → %s 200 in %s", probe, time.Since(c.started).Round(10*time.Millisecond))

	// The chart's --kubeconfig-secret: written with the chart's rights.
	poll(t, 30*time.Second, "host Secret vc-"+runcRelease+" (--kubeconfig-secret)", func(ctx context.Context) (bool, error) {
		_, err := host.Client.CoreV1().Secrets(ns).Get(ctx, "vc-"+runcRelease, metav1.GetOptions{})
		return err == nil, nil
	})
	vc := virtualClient(t, filepath.Join(data, "admin.kubeconfig"), "https://"+net.JoinHostPort(pod.ip, pod.port(t, "https")))
	checkPodOnHost(t, vc, ns, runcRelease)
	svc, err := vc.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dnsAddr := net.JoinHostPort(pod.ip, pod.port(t, "dns"))
	if got := strings.Join(answers(query(t, dnsAddr, "kubernetes.default.svc.cluster.local", dns.TypeA)), ","); got != "A "+svc.Spec.ClusterIP {
		t.Errorf("the DNS listener on %s answers kubernetes.default.svc.cluster.local with %q, want A %s", dnsAddr, got, svc.Spec.ClusterIP)
	}

	grace := time.Duration(*pod.spec().TerminationGracePeriodSeconds) * time.Second
	stopped := c.stop(t, grace)
	t.Logf("runc: SIGTERM → exit in %s (grace period %s)", stopped.Round(10*time.Millisecond), grace)

	// The same args as a plain process on this machine, for comparison.
	args := pod.processArgs(t, filepath.Join(dir, "process-data"), tokenKubeconfig(t, "syncer", mintToken(t, ns, pod.spec().ServiceAccountName)))
	start := time.Now()
	p, _, err := testenv.StartUntil(ctx, "Admin kubeconfig: ", args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	waitReady(t, probe, nil, p.Output)
	t.Logf("process: start → %s 200 in %s", probe, time.Since(start).Round(10*time.Millisecond))
}

// renderVClusterChart renders charts/vcluster with its default values for
// release in ns, as the agent's pod runtime installs it, and returns its
// StatefulSet and the YAML of its ServiceAccount and RBAC objects.
func renderVClusterChart(t *testing.T, release, ns string) (*appsv1.StatefulSet, []string) {
	t.Helper()
	c, err := charts.VCluster()
	if err != nil {
		t.Fatal(err)
	}
	vals, err := chartutil.ToRenderValues(c, map[string]interface{}{}, chartutil.ReleaseOptions{Name: release, Namespace: ns, IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	files, err := engine.Render(c, vals)
	if err != nil {
		t.Fatalf("render charts/vcluster: %v", err)
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var sts *appsv1.StatefulSet
	var rbac []string
	for _, p := range paths {
		for _, doc := range releaseutil.SplitManifests(files[p]) {
			var meta metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			switch meta.Kind {
			case "StatefulSet":
				sts = &appsv1.StatefulSet{}
				if err := yaml.UnmarshalStrict([]byte(doc), sts); err != nil {
					t.Fatalf("%s: %v", p, err)
				}
			case "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding":
				rbac = append(rbac, doc)
			}
		}
	}
	if sts == nil || len(sts.Spec.Template.Spec.Containers) != 1 {
		t.Fatal("charts/vcluster renders no StatefulSet with one container")
	}
	return sts, rbac
}

// checkHardening fails the test where the chart does not run the
// container as non-root, with a read-only root, without privilege
// escalation and with the runtime's default seccomp profile, as the
// restricted Pod Security Standard asks (capabilities: see process): the container runs with exactly
// what the chart sets, so without this check a looser chart would pass.
func (p chartPod) checkHardening(t *testing.T) {
	t.Helper()
	psc, sc := p.spec().SecurityContext, p.container().SecurityContext
	if psc == nil || !ptr.Deref(psc.RunAsNonRoot, false) || ptr.Deref(psc.RunAsUser, 0) == 0 {
		t.Error(p.from + ": the pod does not set runAsNonRoot and a non-root runAsUser")
	}
	if sc == nil || !ptr.Deref(sc.ReadOnlyRootFilesystem, false) {
		t.Error(p.from + ": the container does not set readOnlyRootFilesystem: true")
	}
	if sc == nil || ptr.Deref(sc.AllowPrivilegeEscalation, true) {
		t.Error(p.from + ": the container does not set allowPrivilegeEscalation: false")
	}
	if p.seccompProfile(t) != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error(p.from + ": neither the pod nor the container sets seccompProfile type RuntimeDefault")
	}
}

// applyChartRBAC creates the chart's ServiceAccount and its rights on the
// host, so a token of it has exactly the chart's rights.
func applyChartRBAC(t *testing.T, docs []string) {
	t.Helper()
	manifest := strings.Join(docs, "\n---\n")
	kubectl(t, host.Kubeconfig, manifest, "apply", "-f", "-")
	t.Cleanup(func() {
		// The namespace's deletion takes the rest; the ClusterRole(Binding) stay otherwise.
		cmd := exec.Command("kubectl", "--kubeconfig", host.Kubeconfig, "delete", "--ignore-not-found", "-f", "-")
		cmd.Stdin = strings.NewReader(manifest)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("delete the chart's RBAC: %v\n%s", err, out)
		}
	})
}

// mintToken returns a token of service account sa in ns, as the kubelet
// projects it.
func mintToken(t *testing.T, ns, sa string) string {
	t.Helper()
	return strings.TrimSpace(kubectl(t, host.Kubeconfig, "", "create", "token", sa, "-n", ns, "--duration", "1h"))
}

// nodeIP is this machine's first non-loopback IPv4 address: the pod IP of
// a container in the host's network namespace, as the kubelet reports it
// for a host-network pod. Loopback will not do: the virtual API server
// refuses to advertise a 127.0.0.0/8 address. It is an address of this
// very machine, so traffic to it stays here, on the kernel's local route,
// as traffic to loopback does.
func nodeIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			return ipn.IP.String()
		}
	}
	t.Fatal("this machine has no non-loopback IPv4 address to give the container as its pod IP")
	return ""
}

// chartPod is a pod of a chart's workload, as this test runs it.
type chartPod struct {
	// from names the chart and workload, for messages.
	from string
	// name is the pod's name; subdomain the StatefulSet's service, if any.
	name, subdomain string
	template        corev1.PodTemplateSpec
	// claims are the StatefulSet's volume claim templates.
	claims []corev1.PersistentVolumeClaim
	ns     string
	// ip is the pod IP: this machine's, whose network the container shares.
	ip string
}

// statefulSetPod is pod 0 of charts/vcluster's StatefulSet sts.
func statefulSetPod(sts *appsv1.StatefulSet, ns, ip string) chartPod {
	return chartPod{from: "charts/vcluster StatefulSet " + sts.Name, name: sts.Name + "-0", subdomain: sts.Spec.ServiceName,
		template: sts.Spec.Template, claims: sts.Spec.VolumeClaimTemplates, ns: ns, ip: ip}
}

func (p chartPod) spec() corev1.PodSpec { return p.template.Spec }

// hostCA is the local host's API server CA.
func hostCA(t *testing.T) []byte {
	t.Helper()
	if len(host.Config.CAData) > 0 {
		return host.Config.CAData
	}
	ca, err := os.ReadFile(host.Config.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// refusePortsInUse fails the test when one of the container's fixed ports
// is taken on this machine: the container shares its network namespace.
func (p chartPod) refusePortsInUse(t *testing.T) {
	t.Helper()
	for _, cp := range p.container().Ports {
		refusePortInUse(t, p.from, cp)
	}
}

func refusePortInUse(t *testing.T, from string, p corev1.ContainerPort) {
	t.Helper()
	addr := ":" + strconv.Itoa(int(p.ContainerPort))
	var err error
	if p.Protocol == corev1.ProtocolUDP {
		var c net.PacketConn
		if c, err = net.ListenPacket("udp", addr); err == nil {
			c.Close()
		}
	} else {
		var l net.Listener
		if l, err = net.Listen("tcp", addr); err == nil {
			l.Close()
		}
	}
	if err != nil {
		t.Fatalf("%s/%s is in use on this machine (%v): %s fixes port %s, and the container shares the host's network; stop what listens there (ss -lntup | grep %d)",
			addr, p.Protocol, err, from, p.Name, p.ContainerPort)
	}
}

// probeURL is the URL of the container's readiness probe.
func (p chartPod) probeURL(t *testing.T) string {
	t.Helper()
	probe := p.container().ReadinessProbe
	if probe == nil || probe.HTTPGet == nil {
		t.Fatal(p.from + ": the container has no HTTP readiness probe")
	}
	port := probe.HTTPGet.Port.String()
	if probe.HTTPGet.Port.IntValue() == 0 {
		port = p.port(t, port)
	}
	return strings.ToLower(string(probe.HTTPGet.Scheme)) + "://" + net.JoinHostPort(p.ip, port) + probe.HTTPGet.Path
}

// port is the number of the container's port name.
func (p chartPod) port(t *testing.T, name string) string {
	t.Helper()
	for _, cp := range p.container().Ports {
		if cp.Name == name {
			return strconv.Itoa(int(cp.ContainerPort))
		}
	}
	t.Fatalf("%s: the container has no port %q", p.from, name)
	return ""
}

// waitReady polls probe as the kubelet does (TLS not verified) until it
// answers 200; exited, when closed, means the process is gone.
func waitReady(t *testing.T, probe string, exited <-chan struct{}, output func() string) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(testenv.StartTimeout)
	last := "no answer"
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			t.Fatalf("exited before %s answered 200 (last: %s):\n%s", probe, last, testenv.Tail(output(), 40))
		default:
		}
		resp, err := client.Get(probe)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, testenv.Tail(string(body), 5))
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not answer 200 within %s (last: %s):\n%s", probe, testenv.StartTimeout, last, testenv.Tail(output(), 40))
}

// virtualClient is a client of the virtual cluster from its admin
// kubeconfig, at server.
func virtualClient(t *testing.T, kubeconfig, server string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatalf("the container's admin kubeconfig: %v", err)
	}
	for _, c := range cfg.Clusters {
		c.Server = server
	}
	rc, err := clientcmd.NewDefaultClientConfig(*cfg, nil).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	return kubernetes.NewForConfigOrDie(rc)
}

// checkPodOnHost creates a Deployment of one replica in virtual cluster
// vcName and waits until its pod runs in host namespace ns under its
// translated name and the virtual pod sees it Running.
func checkPodOnHost(t *testing.T, vc kubernetes.Interface, ns, vcName string) {
	t.Helper()
	ctx := context.Background()
	if _, err := vc.AppsV1().Deployments("default").Create(ctx, deployment("web", "nginx", 1), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create a Deployment in the virtual cluster: %v", err)
	}
	var seen string
	poll(t, 90*time.Second, "the Deployment's pod Running on the host under its translated name", func(ctx context.Context) (bool, error) {
		pods, err := vc.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil || len(pods.Items) != 1 {
			return false, nil
		}
		vp := pods.Items[0]
		hostName := fmt.Sprintf("%s-x-default-x-%s", vp.Name, vcName)
		if _, err := host.Client.CoreV1().Pods(ns).Get(ctx, hostName, metav1.GetOptions{}); err != nil {
			return false, nil
		}
		seen = hostName
		return vp.Status.Phase == corev1.PodRunning, nil
	})
	t.Logf("virtual Deployment web → host pod %s/%s", ns, seen)
}

// processArgs are the container's args for a plain `sublet` process with
// credentials from kubeconfig and data dir dataDir.
func (p chartPod) processArgs(t *testing.T, dataDir, kubeconfig string) []string {
	t.Helper()
	expand := expander(p.env(t))
	var out []string
	for _, a := range p.container().Args {
		if strings.HasPrefix(a, "--data-dir=") {
			a = "--data-dir=" + dataDir
		}
		out = append(out, expand.Replace(a))
	}
	return append(out, "--host-kubeconfig", kubeconfig)
}
