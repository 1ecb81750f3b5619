package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/sublet-dev/sublet/internal/testenv"
)

// Helpers shared by the tests of this package: running kubectl and sublet,
// polling, namespaces, pods, manifests and the processes a test leaves.
// Starting virtual clusters and agents is in helpers_vcluster_test.go, the
// platform (server and agent) in helpers_platform_test.go, charts/sublet in
// helpers_chart_test.go, the isolation probes in helpers_isolation_test.go;
// the shared host is started by TestMain (main_test.go).

// kubectl runs kubectl against kubeconfig and returns its output, failing
// the test on error.
func kubectl(t *testing.T, kubeconfig, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
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

// sublet runs the CLI and returns its combined output, failing on error.
func sublet(t *testing.T, args ...string) string {
	t.Helper()
	out, code, err := testenv.Run(5*time.Minute, args...)
	if err != nil || code != 0 {
		t.Fatalf("sublet %s: exit %d, %v\n%s", strings.Join(args, " "), code, err, out)
	}
	return out
}

// failFast runs sublet with args, expecting a quick non-zero exit with one
// line of output that contains every string in want.
func failFast(t *testing.T, want []string, args ...string) {
	t.Helper()
	start := time.Now()
	out, code, err := testenv.Run(30*time.Second, args...)
	if err != nil {
		t.Fatalf("sublet %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if code == 0 {
		t.Fatalf("sublet %s exited 0, want an error\n%s", strings.Join(args, " "), out)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %s to fail; want a fast failure", d)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Errorf("want a one-line error, got %d lines:\n%s", len(lines), out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("error %q does not mention %q", strings.TrimSpace(out), w)
		}
	}
}

// poll polls cond every 100ms until it holds, failing the test with what
// after timeout.
func poll(t *testing.T, timeout time.Duration, what string, cond wait.ConditionWithContextFunc) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, cond); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// waitEvent waits until the cluster has an event with reason about the
// object kind ns/name whose message contains text: the sign that a
// component has processed a change, for checks that something did not
// happen.
func waitEvent(t *testing.T, cs kubernetes.Interface, ns, kind, name, reason, text string) {
	t.Helper()
	poll(t, 60*time.Second, fmt.Sprintf("event %s on %s %s/%s", reason, kind, ns, name), func(ctx context.Context) (bool, error) {
		list, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name + ",reason=" + reason})
		if err != nil {
			return false, nil
		}
		for _, e := range list.Items {
			if e.InvolvedObject.Kind == kind && strings.Contains(e.Message, text) {
				return true, nil
			}
		}
		return false, nil
	})
}

// createNamespace creates a namespace named after prefix and deletes it when
// the test ends.
func createNamespace(t *testing.T, cs kubernetes.Interface, prefix string) string {
	t.Helper()
	ns, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	waitDefaultServiceAccount(t, cs, ns.Name)
	return ns.Name
}

// waitDefaultServiceAccount waits for the service account without which pods
// in ns are not admitted.
func waitDefaultServiceAccount(t *testing.T, cs kubernetes.Interface, ns string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("namespace %s has no default service account: %v", ns, err)
	}
}

func waitPodRunning(t *testing.T, p *testenv.Process, ns, name string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		pod, err = p.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		return pod.Status.Phase == corev1.PodRunning, nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s not Running: %v (%+v)", ns, name, err, pod)
	}
	return pod
}

func describePods(pods []corev1.Pod) string {
	var b strings.Builder
	for _, p := range pods {
		fmt.Fprintf(&b, "\n  %s phase=%s ip=%s node=%s", p.Name, p.Status.Phase, p.Status.PodIP, p.Spec.NodeName)
	}
	return b.String()
}

// deleteAndWaitNoPods deletes a deployment with foreground propagation and
// waits until namespace ns has no pods left.
func deleteAndWaitNoPods(t *testing.T, cs kubernetes.Interface, deploymentCS kubernetes.Interface, depNS, depName, ns string) {
	t.Helper()
	ctx := context.Background()
	if err := deploymentCS.AppsV1().Deployments(depNS).Delete(ctx, depName, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}); err != nil {
		t.Fatal(err)
	}
	var left []corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		left = list.Items
		return len(left) == 0, nil
	})
	if err != nil {
		t.Fatalf("pods left in %s after deleting deployment %s: %v%s", ns, depName, err, describePods(left))
	}
}

// deployment returns a Deployment of replicas pods labelled app=name.
func deployment(name, image string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: image}}},
			},
		},
	}
}

// seedManifest is the seed's vcluster.yaml with its placeholders filled.
func seedManifest(name, namespace, serviceCIDR string) string {
	return fmt.Sprintf(`apiVersion: storage.loft.sh/v1
kind: VirtualCluster
metadata:
  name: %s # REPLACE THIS
  namespace: %s # REPLACE THIS
spec:
  helmRelease:
    values: >-
      virtualCluster:
        image: rancher/k3s:v1.21.2-k3s1
        extraArgs:
          - --service-cidr=%s # REPLACE THIS
`, name, namespace, serviceCIDR)
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = prefix + lines[i]
	}
	return strings.Join(lines, "\n") + "\n"
}

// killChildren ends every virtual cluster process under stateDir, warm
// pool members included.
func killChildren(stateDir string) {
	pids, _ := filepath.Glob(filepath.Join(stateDir, "vclusters", "*", "*", "pid"))
	members, _ := filepath.Glob(filepath.Join(stateDir, "pool", "*", "pid"))
	for _, f := range append(pids, members...) {
		b, _ := os.ReadFile(f)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// processesWith counts running processes whose command line contains s.
func processesWith(s string) int {
	n := 0
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err == nil && strings.Contains(string(b), s) && !strings.Contains(string(b), "go\x00test") {
			n++
		}
	}
	return n
}

// step runs f as subtest name of t, one behaviour of a test whose steps
// build on each other: if f stops (t.Fatal), so does t, as it would have
// within one test function; if f only reports errors, the next step runs.
// What outlives a step (processes, t.Setenv, t.TempDir, cleanups) belongs
// to t, not to the subtest.
func step(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	finished := false
	t.Run(name, func(t *testing.T) {
		f(t)
		finished = true
	})
	if !finished {
		t.FailNow()
	}
}
