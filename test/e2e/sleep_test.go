package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/testenv"
	"github.com/sublet-dev/sublet/internal/translate"
)

// hostPodsOf lists the host pods the syncer of virtual cluster name made.
func hostPodsOf(t *testing.T, ns, name string) []corev1.Pod {
	t.Helper()
	list, err := host.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: translate.LabelCopyOf + "=" + name})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// TestSleepMode: a virtual cluster with a sleep-after of a few seconds
// sleeps (its control plane stops, its host pods go, everything else
// stays); kubectl through the platform wakes it and just works, with every
// object and pod back; many requests during a wake share one wake; an open
// watch keeps it awake and the ignore header neither counts nor wakes;
// sleep and wakeup by hand; an agent restarted while it sleeps keeps it
// asleep; a bad annotation is reported and changes nothing;
// delete-after deletes a cluster and cleans its host objects.
func TestSleepMode(t *testing.T) {
	needHost(t)
	p := startPlatform(t)
	hk := host.Kubeconfig
	ns := createNamespace(t, host.Client, "sleep")
	kubectl(t, hk, fmt.Sprintf("apiVersion: storage.loft.sh/v1\nkind: VirtualCluster\nmetadata: {name: nap, namespace: %s}\n", ns), "apply", "-f", "-")
	admin := accessKey(t, "e2e-sleeper", "sleeper", nil)
	kubectl(t, hk, "", "create", "role", "vc-sleeper", "-n", ns, "--verb=get,list,watch,patch", "--resource=virtualclusters.storage.loft.sh")
	kubectl(t, hk, "", "create", "rolebinding", "sleeper", "-n", ns, "--role=vc-sleeper", "--user=sleeper")
	kubectl(t, hk, "", "wait", "--for=jsonpath={.status.phase}=Ready", "virtualcluster/nap", "-n", ns, "--timeout=120s")

	kc := p.useAsCLI(t, admin, ns, "nap")

	// Workloads and objects that must survive sleep.
	kubectl(t, kc, "", "create", "deployment", "web", "--image=nginx", "--replicas=2")
	kubectl(t, kc, "", "run", "solo", "--image=busybox")
	kubectl(t, kc, "", "create", "configmap", "keep", "--from-literal=k=v")
	kubectl(t, kc, "", "wait", "--for=condition=Ready", "pod", "--all", "--timeout=90s")
	podUIDs := func() map[string]string {
		out := kubectl(t, kc, "", "get", "pods", "-o", `jsonpath={range .items[*]}{.metadata.name}={.metadata.uid} {end}`)
		m := map[string]string{}
		for _, f := range strings.Fields(out) {
			k, v, _ := strings.Cut(f, "=")
			m[k] = v
		}
		return m
	}
	before := podUIDs()
	if len(before) != 3 || len(hostPodsOf(t, ns, "nap")) != 3 {
		t.Fatalf("want 3 virtual and 3 host pods, have %v and %d", before, len(hostPodsOf(t, ns, "nap")))
	}

	// A bad annotation: a condition naming it, nothing else changes.
	kubectl(t, hk, "", "annotate", "virtualcluster/nap", "-n", ns, storagev1.AnnotationSleepSchedule+"=at dusk")
	poll(t, 30*time.Second, "SleepModeValid=False naming the annotation", func(context.Context) (bool, error) {
		vc := vcStatus(t, ns, "nap")
		for _, c := range vc.Status.Conditions {
			if c.Type == storagev1.ConditionSleepModeValid && c.Status == metav1.ConditionFalse &&
				strings.Contains(c.Message, storagev1.AnnotationSleepSchedule) && strings.Contains(c.Message, "at dusk") {
				return vc.Status.Phase == storagev1.PhaseReady, nil
			}
		}
		return false, nil
	})
	kubectl(t, hk, "", "annotate", "virtualcluster/nap", "-n", ns, storagev1.AnnotationSleepSchedule+"-")

	// Sleep after 3 s without a request.
	kubectl(t, hk, "", "annotate", "virtualcluster/nap", "-n", ns, storagev1.AnnotationSleepAfter+"=3")
	vc := waitVCPhase(t, ns, "nap", storagev1.PhaseSleeping, 60*time.Second)
	if vc.Status.SleepingSince == nil || vc.Annotations[storagev1.AnnotationSleepingSince] == "" {
		t.Errorf("sleeping without sleepingSince: %+v %v", vc.Status, vc.Annotations)
	}
	if pods := hostPodsOf(t, ns, "nap"); len(pods) != 0 {
		t.Errorf("asleep, but %d host pods remain", len(pods))
	}
	dataDir := filepath.Join(p.stateDir, "vclusters", ns, "nap", "data")
	if n := processesWith(dataDir); n != 0 {
		t.Errorf("asleep, but %d processes run the control plane", n)
	}
	if _, err := host.Client.CoreV1().Secrets(ns).Get(context.Background(), "vc-nap", metav1.GetOptions{}); err != nil {
		t.Errorf("asleep: the kubeconfig secret went: %v", err)
	}
	if out := kubectl(t, hk, "", "get", "virtualclusters", "-n", ns); !strings.Contains(out, "ASLEEP") || !strings.Contains(out, "Sleeping") {
		t.Errorf("kubectl get virtualclusters does not show the sleep:\n%s", out)
	}
	if out := sublet(t, "list", "vclusters"); !strings.Contains(out, "Sleeping (") {
		t.Errorf("sublet list vclusters does not show how long it slept:\n%s", out)
	}

	// The ignore header neither wakes nor counts: the server answers at
	// once (that answer is the sign it decided), and nothing was written.
	lastBefore := vcStatus(t, ns, "nap").Annotations[storagev1.AnnotationLastActivity]
	path := fmt.Sprintf("/kubernetes/virtualcluster/%s/%s/nap/api/v1/namespaces", p.cluster, ns)
	if code, body := p.getBody(t, path, admin, storagev1.HeaderSleepModeIgnore, "true"); code != http.StatusServiceUnavailable || !strings.Contains(body, "does not wake it") {
		t.Errorf("ignored request to a sleeping cluster: HTTP %d %s", code, body)
	}
	if vc := vcStatus(t, ns, "nap"); vc.Status.Phase != storagev1.PhaseSleeping || vc.Annotations[storagev1.AnnotationLastActivity] != lastBefore {
		t.Errorf("the ignored request woke it or counted: phase %s, last-activity %q → %q", vc.Status.Phase, lastBefore, vc.Annotations[storagev1.AnnotationLastActivity])
	}

	// The agent restarted while it sleeps keeps it asleep.
	p.agent.Kill()
	p.agent = startAgent(t, p.stateDir)
	poll(t, 60*time.Second, "the new agent keeps nap asleep", func(context.Context) (bool, error) {
		for _, line := range strings.Split(p.agent.Output(), "\n") {
			if strings.Contains(line, "keeping virtual cluster asleep") && strings.Contains(line, ns+"/nap") {
				return true, nil
			}
		}
		return false, nil
	})
	if n := processesWith(dataDir); n != 0 || vcStatus(t, ns, "nap").Status.Phase != storagev1.PhaseSleeping {
		t.Errorf("after an agent restart: %d control plane processes, phase %s", n, vcStatus(t, ns, "nap").Status.Phase)
	}

	// kubectl through the platform wakes it and just works.
	start := time.Now()
	if out, err := exec.Command("kubectl", "--kubeconfig", kc, "get", "configmap", "keep", "-o", "jsonpath={.data.k}").CombinedOutput(); err != nil || string(out) != "v" {
		t.Fatalf("kubectl get against the sleeping cluster: %v\n%s\nagent:\n%s", err, out, testenv.Tail(p.agent.Output(), 4000))
	}
	t.Logf("kubectl get against a sleeping cluster answered after %.1f s", time.Since(start).Seconds())
	after := podUIDs()
	for name, uid := range before {
		if after[name] != uid {
			t.Errorf("pod %s: uid %s before sleeping, %q after", name, uid, after[name])
		}
	}
	poll(t, 90*time.Second, "the host pods back and Running", func(context.Context) (bool, error) {
		pods := hostPodsOf(t, ns, "nap")
		running := 0
		for _, p := range pods {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running == 3 && len(pods) == 3, nil
	})

	// Put to sleep by hand, then many requests at once: all answered, one wake.
	kubectl(t, hk, "", "annotate", "virtualcluster/nap", "-n", ns, storagev1.AnnotationSleepAfter+"-")
	if out := sublet(t, "sleep", "vcluster", "nap", "--cluster", p.cluster, "--space", ns); !strings.Contains(out, "asleep since") {
		t.Errorf("sublet sleep output:\n%s", out)
	}
	manyRequestsOneWake(t, ns, kc)

	// With --prevent-wakeup a request does not wake it; sublet wakeup does.
	sublet(t, "sleep", "vcluster", "nap", "--cluster", p.cluster, "--space", ns, "--prevent-wakeup")
	if code, body := p.getBody(t, path, admin); code != http.StatusServiceUnavailable || !strings.Contains(body, "sublet wakeup vcluster nap") {
		t.Errorf("request to a cluster asleep with --prevent-wakeup: HTTP %d %s", code, body)
	}
	sublet(t, "wakeup", "vcluster", "nap", "--cluster", p.cluster, "--space", ns)
	if out := kubectl(t, kc, "", "get", "namespaces"); !strings.Contains(out, "kube-system") {
		t.Errorf("after wakeup:\n%s", out)
	}

	watchKeepsAwake(t, ns, kc)

	deleteAfterDeletes(t, ns)
}

// countEvents counts the occurrences of reason on virtual cluster name.
func countEvents(t *testing.T, ns, name, reason string) int {
	t.Helper()
	list, err := host.Client.EventsV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "regarding.name=" + name + ",reason=" + reason})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range list.Items {
		if e.Series != nil && e.Series.Count > 1 {
			n += int(e.Series.Count)
		} else {
			n++
		}
	}
	return n
}

// manyRequestsOneWake: 20 requests at once to sleeping virtual cluster
// ns/nap (through kubeconfig kc) are all answered, with one wake.
func manyRequestsOneWake(t *testing.T, ns, kc string) {
	t.Helper()
	wakesBefore := countEvents(t, ns, "nap", "WakingUp")
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 100, 100
	cs := kubernetes.NewForConfigOrDie(cfg)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := cs.CoreV1().ConfigMaps("default").Get(context.Background(), "keep", metav1.GetOptions{}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a request during the wake failed: %v", err)
	}
	if n := countEvents(t, ns, "nap", "WakingUp") - wakesBefore; n != 1 {
		t.Errorf("%d wakes for 20 concurrent requests, want 1", n)
	}
}

// watchKeepsAwake: an open watch keeps ns/nap awake past its sleep-after:
// the agent records activity well beyond it and the cluster stays Ready;
// closing the watch lets it sleep. (The sleep-after is set, and seen to
// work, before the watch starts; the watch wakes the cluster.)
func watchKeepsAwake(t *testing.T, ns, kc string) {
	t.Helper()
	hk := host.Kubeconfig
	kubectl(t, hk, "", "annotate", "virtualcluster/nap", "-n", ns, storagev1.AnnotationSleepAfter+"=6")
	waitVCPhase(t, ns, "nap", storagev1.PhaseSleeping, 60*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	watch := exec.CommandContext(ctx, "kubectl", "--kubeconfig", kc, "get", "pods", "-w")
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	waitVCPhase(t, ns, "nap", storagev1.PhaseReady, 60*time.Second)
	watchStart := time.Now()
	poll(t, 60*time.Second, "activity recorded 3 sleep-afters into the watch", func(context.Context) (bool, error) {
		vc := vcStatus(t, ns, "nap")
		if vc.Status.Phase != storagev1.PhaseReady {
			return false, fmt.Errorf("phase %s (%s) while a watch is open", vc.Status.Phase, vc.Status.Message)
		}
		return vc.Status.LastActivity != nil && vc.Status.LastActivity.After(watchStart.Add(18*time.Second)), nil
	})
	cancel()
	_ = watch.Wait()
	waitVCPhase(t, ns, "nap", storagev1.PhaseSleeping, 60*time.Second)
}

// deleteAfterDeletes: delete-after, set by the template the cluster uses,
// deletes a cluster in ns and its host objects.
func deleteAfterDeletes(t *testing.T, ns string) {
	t.Helper()
	hk := host.Kubeconfig
	t.Cleanup(func() {
		_ = exec.Command("kubectl", "--kubeconfig", hk, "delete", "virtualclustertemplate", "e2e-short-lived", "--ignore-not-found").Run()
	})
	kubectl(t, hk, fmt.Sprintf("apiVersion: storage.loft.sh/v1\nkind: VirtualClusterTemplate\nmetadata:\n  name: e2e-short-lived\n  annotations: {%s: \"12\"}\nspec: {}\n", storagev1.AnnotationDeleteAfter), "apply", "-f", "-")
	kubectl(t, hk, fmt.Sprintf("apiVersion: storage.loft.sh/v1\nkind: VirtualCluster\nmetadata: {name: brief, namespace: %s}\nspec:\n  templateRef: {name: e2e-short-lived}\n", ns), "apply", "-f", "-")
	kubectl(t, hk, "", "wait", "--for=jsonpath={.status.phase}=Ready", "virtualcluster/brief", "-n", ns, "--timeout=120s")
	kubectl(t, hk, "", "wait", "--for=delete", "virtualcluster/brief", "-n", ns, "--timeout=60s")
	if _, err := host.Client.CoreV1().Secrets(ns).Get(context.Background(), "vc-brief", metav1.GetOptions{}); err == nil {
		t.Error("delete-after left the kubeconfig secret of brief")
	}
	if pods := hostPodsOf(t, ns, "brief"); len(pods) != 0 {
		t.Errorf("delete-after left %d host pods", len(pods))
	}
	waitEvent(t, host.Client, ns, "VirtualCluster", "brief", "DeletedAfterInactivity", "deleting")
}
