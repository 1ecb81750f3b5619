package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sublet-dev/sublet/internal/testenv"
	"github.com/sublet-dev/sublet/internal/translate"
)

// TestNestedVirtualCluster: a virtual cluster whose host is a virtual
// cluster. The inner cluster's pod runs on the real host under a name
// translated twice, its status comes back through both levels, logs and
// exec reach it, and deleting it cleans both levels.
func TestNestedVirtualCluster(t *testing.T) {
	needHost(t)
	ctx := context.Background()
	hostNS := createNamespace(t, host.Client, "vc-outer")
	outer := startVCluster(t, "outer", hostNS)
	innerHostNS := createNamespace(t, outer.Client, "inner-home")
	inner, err := testenv.Start(ctx, t.TempDir(), "vcluster", "run", "--name", "inner",
		"--host-kubeconfig", outer.Kubeconfig, "--host-namespace", innerHostNS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inner.Kill)

	kubectl(t, inner.Kubeconfig, `apiVersion: v1
kind: Pod
metadata: {name: deep, namespace: default}
spec:
  containers: [{name: c, image: busybox}]
`, "apply", "-f", "-")
	kubectl(t, inner.Kubeconfig, "", "wait", "--for=condition=Ready", "pod/deep", "--timeout=90s")

	// Translated once into the outer cluster, once more onto the host.
	outerTr := translate.Translator{VCluster: "inner", HostNamespace: innerHostNS}
	hostTr := translate.Translator{VCluster: "outer", HostNamespace: hostNS}
	middle := outerTr.HostName("default", "deep")
	bottom := hostTr.HostName(innerHostNS, middle)
	if len(bottom) > 63 {
		t.Fatalf("host name %q is longer than 63", bottom)
	}
	phase := kubectl(t, host.Kubeconfig, "", "get", "pod", bottom, "-n", hostNS, "-o", "jsonpath={.status.phase}")
	if phase != "Running" {
		t.Errorf("host pod %s/%s: phase %q", hostNS, bottom, phase)
	}
	hostIP := kubectl(t, host.Kubeconfig, "", "get", "pod", bottom, "-n", hostNS, "-o", "jsonpath={.status.podIP}")
	if innerIP := kubectl(t, inner.Kubeconfig, "", "get", "pod", "deep", "-o", "jsonpath={.status.podIP}"); innerIP != hostIP {
		t.Errorf("the inner pod's IP %q is not the host pod's %q", innerIP, hostIP)
	}

	// Logs and exec through both levels' kubelet proxies.
	if out := kubectl(t, inner.Kubeconfig, "", "logs", "deep"); !strings.Contains(out, "simulated container started") {
		t.Errorf("kubectl logs in the inner cluster:\n%s", out)
	}
	if out := kubectl(t, inner.Kubeconfig, "", "exec", "deep", "--", "echo", "from-the-bottom"); strings.TrimSpace(out) != "from-the-bottom" {
		t.Errorf("kubectl exec in the inner cluster: %q", out)
	}

	// Deleting it cleans both levels.
	kubectl(t, inner.Kubeconfig, "", "delete", "pod", "deep", "--wait=false")
	poll(t, 60*time.Second, "the pod gone from both levels", func(ctx context.Context) (bool, error) {
		_, err1 := outer.Client.CoreV1().Pods(innerHostNS).Get(ctx, middle, metav1.GetOptions{})
		_, err2 := host.Client.CoreV1().Pods(hostNS).Get(ctx, bottom, metav1.GetOptions{})
		return apierrors.IsNotFound(err1) && apierrors.IsNotFound(err2), nil
	})
}

// TestNestedUnderAgent: the agent with a virtual cluster as its host runs a
// VirtualCluster applied there; its pod reaches the real host, and deleting
// the VirtualCluster cleans both levels.
func TestNestedUnderAgent(t *testing.T) {
	needHost(t)
	ctx := context.Background()
	hostNS := createNamespace(t, host.Client, "vc-agent-outer")
	outer := startVCluster(t, "base", hostNS)
	stateDir := t.TempDir()
	t.Cleanup(func() { killChildren(stateDir) })
	agent, _, err := testenv.StartUntil(ctx, "Sublet agent is running",
		"agent", "--kubeconfig", outer.Kubeconfig, "--state-dir", stateDir, "--metrics-bind-address", "0", "--leader-elect=false")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(agent.Kill)
	ns := createNamespace(t, outer.Client, "team")
	kubectl(t, outer.Kubeconfig, "apiVersion: storage.loft.sh/v1\nkind: VirtualCluster\nmetadata: {name: nest, namespace: "+ns+"}\n", "apply", "-f", "-")
	kubectl(t, outer.Kubeconfig, "", "wait", "--for=jsonpath={.status.phase}=Ready", "virtualcluster/nest", "-n", ns, "--timeout=120s")
	kc := publishedKubeconfigFrom(t, outer, ns, "nest")
	kubectl(t, kc, "", "run", "deep", "--image=busybox")
	kubectl(t, kc, "", "wait", "--for=condition=Ready", "pod/deep", "--timeout=90s")
	middle := translate.Translator{VCluster: "nest", HostNamespace: ns}.HostName("default", "deep")
	bottom := translate.Translator{VCluster: "base", HostNamespace: hostNS}.HostName(ns, middle)
	if phase := kubectl(t, host.Kubeconfig, "", "get", "pod", bottom, "-n", hostNS, "-o", "jsonpath={.status.phase}"); phase != "Running" {
		t.Errorf("host pod %s: phase %q", bottom, phase)
	}
	kubectl(t, outer.Kubeconfig, "", "delete", "virtualcluster", "nest", "-n", ns, "--timeout=60s")
	poll(t, 60*time.Second, "the pod gone from both levels", func(ctx context.Context) (bool, error) {
		_, err1 := outer.Client.CoreV1().Pods(ns).Get(ctx, middle, metav1.GetOptions{})
		_, err2 := host.Client.CoreV1().Pods(hostNS).Get(ctx, bottom, metav1.GetOptions{})
		return apierrors.IsNotFound(err1) && apierrors.IsNotFound(err2), nil
	})
}
