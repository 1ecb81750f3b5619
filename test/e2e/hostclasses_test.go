package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestAgentHostClasses: the host's classes appear in a virtual cluster as
// the host has them, filtered by the selector in values, follow the host's
// changes, and are read-only for the tenant (cluster-admin, who may also
// impersonate anyone); the host's default StorageClass is the virtual
// cluster's default too.
func TestAgentHostClasses(t *testing.T) {
	needHost(t)
	ctx := context.Background()
	_, _, ns := agentWithNamespace(t, "vc-classes")
	hk := host.Kubeconfig
	gold, bronze, high, shared := ns+"-gold", ns+"-bronze", ns+"-high", ns+"-shared"
	mine := map[string]string{"sublet-test": ns}
	withTier := func(tier string) map[string]string { return map[string]string{"sublet-test": ns, "tier": tier} }
	for _, sc := range []*storagev1.StorageClass{
		{ObjectMeta: metav1.ObjectMeta{Name: gold, Labels: withTier("gold"),
			Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}},
			Provisioner: "example.com/fast", Parameters: map[string]string{"type": "ssd"}},
		{ObjectMeta: metav1.ObjectMeta{Name: bronze, Labels: withTier("bronze")}, Provisioner: "example.com/slow"},
	} {
		if _, err := host.Client.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = host.Client.StorageV1().StorageClasses().Delete(context.Background(), sc.Name, metav1.DeleteOptions{})
		})
	}
	if _, err := host.Client.SchedulingV1().PriorityClasses().Create(ctx, &schedulingv1.PriorityClass{
		ObjectMeta: metav1.ObjectMeta{Name: high, Labels: mine}, Value: 1000}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = host.Client.SchedulingV1().PriorityClasses().Delete(context.Background(), high, metav1.DeleteOptions{})
	})
	if _, err := host.Client.NetworkingV1().IngressClasses().Create(ctx, &networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{Name: shared, Labels: mine}, Spec: networkingv1.IngressClassSpec{Controller: "example.com/ingress"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = host.Client.NetworkingV1().IngressClasses().Delete(context.Background(), shared, metav1.DeleteOptions{})
	})

	kubectl(t, hk, fmt.Sprintf(`apiVersion: storage.loft.sh/v1
kind: VirtualCluster
metadata: {name: classes, namespace: %s}
spec:
  helmRelease:
    values: |
      sync:
        storageclasses:
          selector:
            matchLabels: {sublet-test: %s}
            matchExpressions: [{key: tier, operator: In, values: [gold, silver]}]
`, ns, ns), "apply", "-f", "-")
	kubectl(t, hk, "", "wait", "--for=jsonpath={.status.phase}=Ready", "virtualcluster/classes", "-n", ns, "--timeout=120s")
	vkc := publishedKubeconfig(t, ns, "classes")
	vc := clientOf(t, vkc)

	// The classes arrive as the host has them; the selector leaves bronze
	// out (it was on the host before gold, so gold's arrival shows the
	// syncer has seen it).
	poll(t, 60*time.Second, "the host's classes in the virtual cluster", func(ctx context.Context) (bool, error) {
		_, e1 := vc.StorageV1().StorageClasses().Get(ctx, gold, metav1.GetOptions{})
		_, e2 := vc.SchedulingV1().PriorityClasses().Get(ctx, high, metav1.GetOptions{})
		_, e3 := vc.NetworkingV1().IngressClasses().Get(ctx, shared, metav1.GetOptions{})
		return e1 == nil && e2 == nil && e3 == nil, nil
	})
	sc, err := vc.StorageV1().StorageClasses().Get(ctx, gold, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sc.Provisioner != "example.com/fast" || sc.Parameters["type"] != "ssd" || sc.Labels["tier"] != "gold" ||
		sc.Annotations["storageclass.kubernetes.io/is-default-class"] != "true" || sc.Labels["sublet.dev/from-host"] != "true" {
		t.Errorf("virtual StorageClass %s: provisioner %q parameters %v labels %v annotations %v", gold, sc.Provisioner, sc.Parameters, sc.Labels, sc.Annotations)
	}
	if _, err := vc.StorageV1().StorageClasses().Get(ctx, bronze, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("StorageClass %s, which the selector leaves out, in the virtual cluster: %v", bronze, err)
	}
	if pc, err := vc.SchedulingV1().PriorityClasses().Get(ctx, high, metav1.GetOptions{}); err != nil || pc.Value != 1000 {
		t.Errorf("virtual PriorityClass %s: %+v, %v", high, pc, err)
	}

	// The host's default class is the virtual cluster's default: a claim
	// that names none gets it.
	kubectl(t, vkc, `apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: default}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
`, "apply", "-f", "-")
	if got := kubectl(t, vkc, "", "get", "pvc", "data", "-n", "default", "-o", "jsonpath={.spec.storageClassName}"); got != gold {
		t.Errorf("a claim without class got class %q, want the host's default %q", got, gold)
	}

	// Read-only: the tenant's writes are refused with what to do instead,
	// impersonating anyone (even the syncer's user) does not help.
	for _, args := range [][]string{
		{"delete", "storageclass", gold},
		{"annotate", "storageclass", gold, "storageclass.kubernetes.io/is-default-class=false", "--overwrite"},
		{"label", "priorityclass", high, "tier=mine"},
		{"delete", "ingressclass", shared, "--as", "system:apiserver", "--as-group", "system:masters"},
		{"create", "priorityclass", "tenant-made", "--value", "5"},
	} {
		out := kubectlFails(t, vkc, args...)
		if !strings.Contains(out, "read-only in this virtual cluster") || !strings.Contains(out, "host cluster's admin") {
			t.Errorf("kubectl %s: %s, want the read-only refusal", strings.Join(args, " "), out)
		}
	}
	if sc, err := vc.StorageV1().StorageClasses().Get(ctx, gold, metav1.GetOptions{}); err != nil || sc.Annotations["storageclass.kubernetes.io/is-default-class"] != "true" {
		t.Errorf("after the refused writes, virtual %s: %v, %v", gold, sc, err)
	}

	// The host's changes follow: a label, then the class deleted.
	kubectl(t, hk, "", "label", "storageclass", gold, "team=storage")
	poll(t, 60*time.Second, "the host's new label on the virtual class", func(ctx context.Context) (bool, error) {
		sc, err := vc.StorageV1().StorageClasses().Get(ctx, gold, metav1.GetOptions{})
		return err == nil && sc.Labels["team"] == "storage", nil
	})
	kubectl(t, hk, "", "delete", "priorityclass", high)
	poll(t, 60*time.Second, "the virtual PriorityClass gone with the host's", func(ctx context.Context) (bool, error) {
		_, err := vc.SchedulingV1().PriorityClasses().Get(ctx, high, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})

	// The shared host serves no Gateway API here (TestAgentGatewayRoutes
	// removes the CRDs it installs): the syncer says so, once per route kind.
	waitEvent(t, vc, "default", "Namespace", "default", "HostLacksKind", "httproutes.gateway.networking.k8s.io")
	// So does the VirtualCluster's condition, for the platform's users.
	poll(t, 60*time.Second, "condition HostKindsServed=False naming the route kinds", func(ctx context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", hk, "get", "virtualcluster", "classes", "-n", ns, "-o",
			`jsonpath={.status.conditions[?(@.type=="HostKindsServed")]}`).Output()
		return err == nil && strings.Contains(string(out), `"status":"False"`) && strings.Contains(string(out), `"reason":"HostLacksKind"`) &&
			strings.Contains(string(out), "the host cluster does not serve httproutes, grpcroutes, tlsroutes, gatewayclasses,"), nil
	})

	// The syncer reads classes with its own cluster-wide reader role, and
	// may not write them on the host.
	sa := "system:serviceaccount:" + ns + ":vc-classes-syncer"
	for verb, want := range map[string]string{"list": "yes", "delete": "no"} {
		out, _ := exec.Command("kubectl", "--kubeconfig", hk, "auth", "can-i", verb, "storageclasses", "--as", sa).Output()
		if strings.TrimSpace(string(out)) != want {
			t.Errorf("syncer can-i %s storageclasses on the host: %q, want %s", verb, out, want)
		}
	}
}
