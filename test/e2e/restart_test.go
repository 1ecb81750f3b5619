package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sublet-dev/sublet/internal/testenv"
	"github.com/sublet-dev/sublet/internal/translate"
)

// TestVClusterKilledWhileCreatingPods: SIGKILL `vcluster run` while a
// deployment's 200 pods are being synced, start it again on the same data:
// both sides converge with no lost, duplicated or orphaned objects.
func TestVClusterKilledWhileCreatingPods(t *testing.T) {
	needHost(t)
	const replicas = 200
	ctx := context.Background()
	hostNS := createNamespace(t, host.Client, "vc-restart")
	dataDir := t.TempDir()
	args := []string{"vcluster", "run", "--name", "crash", "--host-kubeconfig", host.Kubeconfig, "--host-namespace", hostNS}
	vc, err := testenv.Start(ctx, dataDir, args...)
	if err != nil {
		t.Fatal(err)
	}
	waitDefaultServiceAccount(t, vc.Client, "default")
	if _, err := vc.Client.AppsV1().Deployments("default").Create(ctx, deployment("burst", "nginx", replicas), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	hostCount := 0
	poll(t, 60*time.Second, "the first host pods", func(ctx context.Context) (bool, error) {
		list, err := host.Client.CoreV1().Pods(hostNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		hostCount = len(list.Items)
		return hostCount >= 20, nil
	})
	vc.Kill()
	t.Logf("killed with %d of %d host pods created", hostCount, replicas)

	vc, err = testenv.Start(ctx, dataDir, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vc.Kill)

	var problem string
	poll(t, 3*time.Minute, "both sides converge", func(ctx context.Context) (bool, error) {
		vpods, err := vc.Client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		hpods, err := host.Client.CoreV1().Pods(hostNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		secrets, err := host.Client.CoreV1().Secrets(hostNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		problem = convergence(vpods.Items, hpods.Items, secrets.Items, replicas)
		return problem == "", nil
	})
	if problem != "" {
		t.Fatal(problem)
	}
}

// convergence returns "" if every virtual pod is Running with exactly one
// host pod copying it (same uid, same IP), no host pod copies a pod that is
// gone, and each host pod has exactly its own identity secret; else what is
// still wrong.
func convergence(vpods, hpods []corev1.Pod, secrets []corev1.Secret, want int) string {
	if len(vpods) != want {
		return fmt.Sprintf("%d virtual pods, want %d", len(vpods), want)
	}
	byUID := map[string]*corev1.Pod{}
	for i := range vpods {
		byUID[string(vpods[i].UID)] = &vpods[i]
	}
	seen := map[string]bool{}
	hostNames := map[string]bool{}
	for _, h := range hpods {
		uid := h.Annotations[translate.AnnotationObjectUID]
		v, ok := byUID[uid]
		switch {
		case !ok:
			return fmt.Sprintf("host pod %s copies no existing virtual pod (orphan)", h.Name)
		case seen[uid]:
			return fmt.Sprintf("virtual pod %s has two host pods", v.Name)
		case v.Status.Phase != corev1.PodRunning || v.Status.PodIP != h.Status.PodIP:
			return fmt.Sprintf("virtual pod %s is %s with IP %q; host pod %s/%q", v.Name, v.Status.Phase, v.Status.PodIP, h.Status.Phase, h.Status.PodIP)
		}
		seen[uid] = true
		hostNames[h.Name] = true
	}
	if len(seen) != want {
		return fmt.Sprintf("%d of %d virtual pods have a host pod", len(seen), want)
	}
	identities := 0
	for _, s := range secrets {
		if !strings.HasSuffix(s.Name, "-identity") {
			continue
		}
		if !hostNames[strings.TrimSuffix(s.Name, "-identity")] {
			return fmt.Sprintf("identity secret %s belongs to no host pod", s.Name)
		}
		identities++
	}
	if identities != want {
		return fmt.Sprintf("%d identity secrets for %d host pods", identities, want)
	}
	return ""
}
