package syncer

import (
	"context"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"

	"github.com/sublet-dev/sublet/internal/translate"
)

// TestOwnedAddresses: the index answers from the host's own objects, as the
// syncer's host informers see them: this cluster's running pods and its
// services, not another cluster's, not a host-network pod (its address is
// its node's), not an object that only carries the cluster's label.
func TestOwnedAddresses(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a host cluster; skipped with -short")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := host.Client
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "owned-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	tr := translate.Translator{VCluster: "addrs", HostNamespace: ns.Name}
	mine := stateEnv{t: tr, ns: "team"}
	theirs := stateEnv{t: translate.Translator{VCluster: "other", HostNamespace: ns.Name}, ns: "team"}
	forged := metav1.ObjectMeta{Name: "forged", Labels: tr.OwnerLabels("team")} // no owner annotations

	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		t.Fatal("no default service account in the host namespace")
	}
	pods := map[string]metav1.ObjectMeta{"mine": mine.owned("web"), "hostnet": mine.owned("agent"), "theirs": theirs.owned("web")}
	for key, meta := range pods {
		spec := podSpec()
		spec.HostNetwork = key == "hostnet"
		if _, err := cs.CoreV1().Pods(ns.Name).Create(ctx, &corev1.Pod{ObjectMeta: meta, Spec: spec}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	services := map[string]metav1.ObjectMeta{"mine": mine.owned("web"), "theirs": theirs.owned("web"), "forged": forged}
	for _, meta := range services {
		svc := &corev1.Service{ObjectMeta: meta, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
		if _, err := cs.CoreV1().Services(ns.Name).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// The informers Run gives the syncers.
	f := informers.NewSharedInformerFactoryWithOptions(cs, 10*time.Hour, informers.WithNamespace(ns.Name),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = translate.LabelCopyOf + "=addrs" }))
	var o OwnedAddresses
	if o.Known() {
		t.Error("known before it watches")
	}
	if err := o.watch(tr, f); err != nil {
		t.Fatal(err)
	}
	f.Start(ctx.Done())
	defer func() { cancel(); f.Shutdown() }()

	ips := map[string]netip.Addr{}
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		for key, meta := range pods {
			p, err := cs.CoreV1().Pods(ns.Name).Get(ctx, meta.Name, metav1.GetOptions{})
			if err != nil || p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
				return false, nil
			}
			ips["pod "+key] = netip.MustParseAddr(p.Status.PodIP)
		}
		for key, meta := range services {
			s, err := cs.CoreV1().Services(ns.Name).Get(ctx, meta.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			ips["service "+key] = netip.MustParseAddr(s.Spec.ClusterIP)
		}
		return o.Known() && o.Owns(ips["pod mine"]), nil
	}); err != nil {
		t.Fatalf("pods running and the index knowing them: %v (%v)", err, ips)
	}
	for what, want := range map[string]bool{"pod mine": true, "service mine": true, "pod hostnet": false,
		"pod theirs": false, "service theirs": false, "service forged": false} {
		if got := o.Owns(ips[what]); got != want {
			t.Errorf("Owns(%s %s) = %v, want %v", what, ips[what], got, want)
		}
	}
	if o.Owns(netip.MustParseAddr("203.0.113.9")) {
		t.Error("an address of nothing is owned")
	}
	if err := cs.CoreV1().Pods(ns.Name).Delete(ctx, pods["mine"].Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return !o.Owns(ips["pod mine"]), nil
	}); err != nil {
		t.Errorf("a deleted pod's address %s is still owned", ips["pod mine"])
	}
}
