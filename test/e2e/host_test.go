package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
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
