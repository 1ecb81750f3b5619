package e2e

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sublet-dev/sublet/internal/testenv"
)

func TestVClusterRunsPodsOnHost(t *testing.T) {
	needHost(t)
	ctx := context.Background()
	hostNS := createNamespace(t, host.Client, "vc-pods")
	vc := startVCluster(t, "alpha", hostNS)
	vns := createNamespace(t, vc.Client, "team")

	if _, err := vc.Client.AppsV1().Deployments(vns).Create(ctx, deployment("web", "nginx", 3), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Virtual pods run as host pods with translated names; status comes back.
	var vpods []corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := vc.Client.CoreV1().Pods(vns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		vpods = list.Items
		running := 0
		for _, p := range vpods {
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && p.Spec.NodeName != "" {
				running++
			}
		}
		return running == 3 && len(vpods) == 3, nil
	})
	if err != nil {
		t.Fatalf("virtual pods not Running: %v%s", err, describePods(vpods))
	}
	for _, vp := range vpods {
		hp, err := host.Client.CoreV1().Pods(hostNS).Get(ctx, fmt.Sprintf("%s-x-%s-x-alpha", vp.Name, vns), metav1.GetOptions{})
		if err != nil {
			t.Fatalf("host pod of %s: %v", vp.Name, err)
		}
		if hp.Status.PodIP != vp.Status.PodIP || hp.Spec.NodeName != vp.Spec.NodeName {
			t.Errorf("%s: virtual ip/node %s/%s, host %s/%s", vp.Name, vp.Status.PodIP, vp.Spec.NodeName, hp.Status.PodIP, hp.Spec.NodeName)
		}
		if hp.Labels["app"] != "" {
			t.Errorf("host pod carries the tenant's label app=%s untranslated", hp.Labels["app"])
		}
	}
	// kubectl get nodes in the virtual cluster lists the host nodes its pods use.
	wantNodes := map[string]bool{}
	for _, vp := range vpods {
		wantNodes["node/"+vp.Spec.NodeName] = true
	}
	poll(t, 30*time.Second, "virtual nodes = nodes of the pods", func(ctx context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", vc.Kubeconfig, "get", "nodes", "-o", "name").Output()
		if err != nil {
			return false, nil
		}
		got := strings.Fields(string(out))
		if len(got) != len(wantNodes) {
			return false, nil
		}
		for _, n := range got {
			if !wantNodes[n] {
				return false, nil
			}
		}
		return true, nil
	})

	// kubectl get events in the virtual cluster shows the host's scheduling.
	poll(t, 30*time.Second, "Scheduled events in the virtual cluster", func(ctx context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", vc.Kubeconfig, "get", "events", "-n", vns,
			"--field-selector", "reason=Scheduled", "-o", "jsonpath={.items[*].involvedObject.name}").Output()
		if err != nil {
			return false, nil
		}
		named := map[string]bool{}
		for _, n := range strings.Fields(string(out)) {
			named[n] = true
		}
		for _, vp := range vpods {
			if !named[vp.Name] {
				return false, nil
			}
		}
		return true, nil
	})

	hostEventRetold(t, vc, hostNS, vns, vpods[0].Name)

	// Namespaces and deployments stay virtual.
	if _, err := host.Client.CoreV1().Namespaces().Get(ctx, vns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("virtual namespace %s exists on the host (err=%v)", vns, err)
	}
	if deps, _ := host.Client.AppsV1().Deployments(hostNS).List(ctx, metav1.ListOptions{}); len(deps.Items) > 0 {
		t.Errorf("deployment synced to the host: %v", deps.Items[0].Name)
	}

	// A host pod deleted out of band: its virtual pod goes too and the
	// ReplicaSet replaces it.
	gone := vpods[0]
	if err := host.Client.CoreV1().Pods(hostNS).Delete(ctx, fmt.Sprintf("%s-x-%s-x-alpha", gone.Name, vns), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := vc.Client.CoreV1().Pods(vns).Get(ctx, gone.Name, metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			return false, nil
		}
		list, err := host.Client.CoreV1().Pods(hostNS).List(ctx, metav1.ListOptions{})
		return err == nil && len(list.Items) == 3, nil
	})
	if err != nil {
		t.Fatalf("out-of-band host deletion did not converge: %v", err)
	}

	// Deleting the deployment removes every host pod.
	deleteAndWaitNoPods(t, host.Client, vc.Client, vns, "web", hostNS)
	poll(t, 30*time.Second, "virtual nodes removed once unused", func(ctx context.Context) (bool, error) {
		nodes, err := vc.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		return err == nil && len(nodes.Items) == 0, nil
	})

	checkAPIServerMetrics(t, vc)

	// The endpoint reconciler of the virtual API server runs at a longer
	// period than upstream's; its lease must still keep the API server's
	// address in the kubernetes endpoints, which in-cluster clients use.
	ep, err := vc.Client.CoreV1().Endpoints("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ep.Subsets) != 1 || len(ep.Subsets[0].Addresses) != 1 || len(ep.Subsets[0].Ports) != 1 {
		t.Fatalf("kubernetes endpoints of the virtual cluster: %+v, want one address and port", ep.Subsets)
	}
}

func TestVClusterBadInput(t *testing.T) {
	needHost(t)
	failFast(t, []string{"host namespace \"does-not-exist\" does not exist", "kubectl create namespace"},
		"vcluster", "run", "--name", "x", "--host-kubeconfig", host.Kubeconfig, "--host-namespace", "does-not-exist", "--data-dir", t.TempDir())
	failFast(t, []string{"--name", "at most 40"},
		"vcluster", "run", "--name", "a-name-that-is-far-too-long-for-a-virtual-cluster-name", "--host-kubeconfig", host.Kubeconfig, "--host-namespace", "default", "--data-dir", t.TempDir())
	failFast(t, []string{"--listen", "HOST:PORT"},
		"vcluster", "run", "--name", "x", "--host-kubeconfig", host.Kubeconfig, "--host-namespace", "default", "--listen", "8443", "--data-dir", t.TempDir())
	failFast(t, []string{"--pod-dns", "not an IP"},
		"vcluster", "run", "--name", "x", "--host-kubeconfig", host.Kubeconfig, "--host-namespace", "default", "--pod-dns", "dns.local", "--data-dir", t.TempDir())
	failFast(t, []string{"--dns-listen", "not HOST:PORT"},
		"vcluster", "run", "--name", "x", "--host-kubeconfig", host.Kubeconfig, "--host-namespace", "default", "--dns-listen", "1053", "--data-dir", t.TempDir())
	failFast(t, []string{"--runtime \"vm\"", "process or pod"}, "agent", "--kubeconfig", host.Kubeconfig, "--runtime", "vm", "--state-dir", t.TempDir())
	failFast(t, []string{"read --kubeconfig"}, "agent", "--kubeconfig", "/nonexistent/kubeconfig", "--state-dir", t.TempDir(), "--metrics-bind-address", "0")
	failFast(t, []string{"unknown resource \"gadgets\""},
		"vcluster", "run", "--name", "x", "--host-kubeconfig", host.Kubeconfig, "--host-namespace", "default", "--disable-sync-resources", "gadgets", "--data-dir", t.TempDir())
}

// TestVClusterPodWithNodeName: a tenant may set spec.nodeName itself; the pod
// still runs on the host and is not mistaken for one whose host pod is gone.
func TestVClusterPodWithNodeName(t *testing.T) {
	needHost(t)
	ctx := context.Background()
	hostNS := createNamespace(t, host.Client, "vc-nodename")
	server := "https://pinned." + hostNS + ".svc:443"
	vc := startVCluster(t, "pinned", hostNS, "--kubeconfig-secret", "vc-pinned", "--kubeconfig-server", server)
	// The admin kubeconfig is published for runtimes without a shared disk,
	// pointing at the service, whose name the certificate holds.
	s, err := host.Client.CoreV1().Secrets(hostNS).Get(ctx, "vc-pinned", metav1.GetOptions{})
	if err != nil || !strings.Contains(string(s.Data["config"]), "server: "+server) {
		t.Errorf("kubeconfig secret: %v\n%s", err, s.Data["config"])
	}
	crt, err := os.ReadFile(filepath.Join(vc.DataDir, "pki", "apiserver.crt"))
	if err != nil || !strings.Contains(certNames(t, crt), "pinned."+hostNS+".svc") {
		t.Errorf("serving certificate lacks the service name (%v): %s", err, certNames(t, crt))
	}
	waitDefaultServiceAccount(t, vc.Client, "default")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "pinned"},
		Spec:       corev1.PodSpec{NodeName: "some-node", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
	if _, err := vc.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodRunning(t, vc, "default", "pinned")
	if _, err := host.Client.CoreV1().Pods(hostNS).Get(ctx, "pinned-x-default-x-pinned", metav1.GetOptions{}); err != nil {
		t.Errorf("host pod: %v", err)
	}
}

// certNames lists the DNS names of a PEM certificate.
func certNames(t *testing.T, pemData []byte) string {
	t.Helper()
	block, _ := pem.Decode(pemData)
	if block == nil {
		return ""
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(c.DNSNames, ",")
}

// hostEventRetold: a host event about the host pod of virtual pod
// vns/name that repeats is retold as one virtual event whose count and
// message follow the host's.
func hostEventRetold(t *testing.T, vc *testenv.Process, hostNS, vns, name string) {
	t.Helper()
	ctx := context.Background()
	hp := fmt.Sprintf("%s-x-%s-x-alpha", name, vns)
	he, err := host.Client.CoreV1().Events(hostNS).Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: hp + ".repeated"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: hostNS, Name: hp},
		Reason:         "BackOff", Message: "first try", Type: corev1.EventTypeWarning, Count: 1,
		FirstTimestamp: metav1.Now(), LastTimestamp: metav1.Now(), Source: corev1.EventSource{Component: "kubelet"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitEvent(t, vc.Client, vns, "Pod", name, "BackOff", "first try")
	he.Count, he.Message, he.LastTimestamp = 3, "third try", metav1.NewTime(time.Now().Add(time.Second))
	if _, err := host.Client.CoreV1().Events(hostNS).Update(ctx, he, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 30*time.Second, "the repeated host event retold once, with its count", func(ctx context.Context) (bool, error) {
		list, err := vc.Client.CoreV1().Events(vns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name + ",reason=BackOff"})
		if err != nil || len(list.Items) == 0 {
			return false, nil
		}
		if len(list.Items) > 1 {
			return false, fmt.Errorf("%d virtual events for one host event", len(list.Items))
		}
		e := list.Items[0]
		return e.Count == 3 && e.Message == "third try", nil
	})
}

// checkAPIServerMetrics: of the built-in resources only pods have a watch
// cache in the virtual API server; the rest, whose watches and lists served
// the test, come from the datastore. A resource a new Kubernetes version
// adds shows up here.
func checkAPIServerMetrics(t *testing.T, vc *testenv.Process) {
	t.Helper()
	ctx := context.Background()
	metrics, err := vc.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	caches, err := testenv.Metric(metrics, "apiserver_watch_cache_initializations_total")
	if err != nil {
		t.Fatal(err)
	}
	var cached []string
	for _, c := range caches {
		r := c.Labels["resource"]
		if g := c.Labels["group"]; g != "" {
			r += "." + g
		}
		cached = append(cached, r)
	}
	sort.Strings(cached)
	if strings.Join(cached, ",") != "pods" {
		t.Fatalf("resources with a watch cache in the virtual API server: %v, want only pods (add the others to uncachedResources)", cached)
	}

	// Work-queue metrics (a ticker per queue) are off in a virtual cluster
	// and on in the host.
	if queues, err := testenv.Metric(metrics, "workqueue_adds_total"); err != nil || len(queues) != 0 {
		t.Fatalf("virtual API server exports work-queue metrics for %d queues (err %v), want none", len(queues), err)
	}
	hostMetrics, err := host.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if queues, err := testenv.Metric(hostMetrics, "workqueue_adds_total"); err != nil || len(queues) < 10 {
		t.Fatalf("host API server exports work-queue metrics for %d queues (err %v), want its controllers' queues", len(queues), err)
	}
}
