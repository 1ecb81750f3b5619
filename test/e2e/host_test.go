package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sublet-dev/sublet/internal/pki"
)

func TestHostDeploymentRunsOnSimulatedNodes(t *testing.T) {
	needHost(t)
	ctx := context.Background()
	cs := host.Client
	ns := createNamespace(t, cs, "host-deploy")

	dep := deployment("web", "nginx", 3)
	// Spread so both nodes get pods, as a real scheduler would be asked to.
	dep.Spec.Template.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{
		MaxSkew: 1, TopologyKey: "kubernetes.io/hostname",
		WhenUnsatisfiable: corev1.DoNotSchedule,
		LabelSelector:     dep.Spec.Selector,
	}}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	var pods []corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false, err
		}
		pods = list.Items
		running := 0
		for _, p := range pods {
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
				running++
			}
		}
		return running == 3 && len(pods) == 3, nil
	})
	if err != nil {
		t.Fatalf("want 3 Running pods with IPs: %v; pods: %s", err, describePods(pods))
	}
	ips, nodes := map[string]bool{}, map[string]bool{}
	for _, p := range pods {
		ips[p.Status.PodIP] = true
		nodes[p.Spec.NodeName] = true
	}
	if len(ips) != 3 {
		t.Errorf("pod IPs not distinct: %s", describePods(pods))
	}
	if len(nodes) != 2 {
		t.Errorf("pods not spread over both nodes: %s", describePods(pods))
	}

	out, err := exec.Command("kubectl", "--kubeconfig", host.Kubeconfig, "logs", "-n", ns, pods[0].Name).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "simulated container started") {
		t.Errorf("kubectl logs: %v\n%s", err, out)
	}

	deleteAndWaitNoPods(t, cs, cs, ns, "web", ns)
}

func TestHostKubectlExec(t *testing.T) {
	needHost(t)
	ctx := context.Background()
	ns := createNamespace(t, host.Client, "host-exec")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "shell", Namespace: ns},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "shell", Image: "busybox"}}},
	}
	if _, err := host.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodRunning(t, host, ns, "shell")
	out, err := exec.Command("kubectl", "--kubeconfig", host.Kubeconfig, "exec", "-n", ns, "shell", "--", "echo", "hello-from-exec").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "hello-from-exec" {
		t.Errorf("kubectl exec: %v\n%s", err, out)
	}
}

// TestHostKubeletEndpointServesOnlyTheAPIServer attacks the simulated nodes'
// kubelet endpoint from the machine: only the host API server's
// kubelet-client certificate gets an answer. Plain HTTP, no certificate and
// another certificate the host's CA signed (its cluster-admin one) are all
// refused; kubectl logs and exec through the API server keep working (the
// other tests of this file).
func TestHostKubeletEndpointServesOnlyTheAPIServer(t *testing.T) {
	needHost(t)
	ctx := context.Background()
	nodes, err := host.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) == 0 {
		t.Fatalf("list nodes: %v (%d)", err, len(nodes.Items))
	}
	addr := fmt.Sprintf("127.0.0.1:%d", nodes.Items[0].Status.DaemonEndpoints.KubeletEndpoint.Port)
	p := pki.Dir{Path: filepath.Join(host.DataDir, "pki")}
	keyPair := func(name string) []tls.Certificate {
		c, err := tls.LoadX509KeyPair(p.ClientCert(name), p.ClientKey(name))
		if err != nil {
			t.Fatal(err)
		}
		return []tls.Certificate{c}
	}
	get := func(certs []tls.Certificate, url string) (int, string, error) {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			Certificates: certs, InsecureSkipVerify: true}}} //nolint:gosec // the attacker's side
		resp, err := c.Get(url)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}

	// The positive control: the API server's own identity is answered, so
	// the refusals below are the endpoint's doing, not a wrong address.
	if code, body, err := get(keyPair(pki.APIServerKubeletClient), "https://"+addr+"/healthz"); err != nil || code != http.StatusOK || body != "ok" {
		t.Fatalf("the kubelet-client certificate at %s: HTTP %d %q, %v", addr, code, body, err)
	}

	logs := "/containerLogs/default/any/c"
	for _, attack := range []struct {
		name  string
		certs []tls.Certificate
		url   string
	}{
		{"plain HTTP", nil, "http://" + addr + logs},
		{"TLS without a client certificate", nil, "https://" + addr + logs},
		{"the host's cluster-admin certificate", keyPair(pki.Admin), "https://" + addr + logs},
	} {
		code, body, err := get(attack.certs, attack.url)
		switch {
		case err == nil && code == http.StatusBadRequest && strings.Contains(body, "HTTPS server"):
			// Go's TLS server answering an HTTP request: nothing served.
		case err != nil && (strings.Contains(err.Error(), "certificate") || strings.Contains(err.Error(), "tls")):
		default:
			t.Errorf("%s: want a refusal in the TLS handshake, got HTTP %d %q, %v", attack.name, code, body, err)
		}
	}
}
