package agent

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/config/crd"
	"github.com/sublet-dev/sublet/internal/syncer/kinds"
	"github.com/sublet-dev/sublet/internal/testenv"
)

// customRights reads vc's custom rows' Role, RoleBinding, ClusterRole and
// ClusterRoleBinding; a missing one is nil.
type customRights struct {
	role    *rbacv1.Role
	binding *rbacv1.RoleBinding
	cluster *rbacv1.ClusterRole
	cbind   *rbacv1.ClusterRoleBinding
}

// requestCounter counts the requests a client sends, and those other than
// GET (the API server takes an unchanged update without a trace, so the
// test counts the requests).
type requestCounter struct {
	next          http.RoundTripper
	all, nonReads *atomic.Int64
}

func (c requestCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	c.all.Add(1)
	if req.Method != http.MethodGet {
		c.nonReads.Add(1)
	}
	return c.next.RoundTrip(req)
}

// countingClient is a client of cfg's server, as cfg's user, whose
// requests (all, other than GET) are counted.
func countingClient(cfg *rest.Config) (kubernetes.Interface, *atomic.Int64, *atomic.Int64) {
	var all, nonReads atomic.Int64
	cfg = rest.CopyConfig(cfg)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return requestCounter{rt, &all, &nonReads} }
	return kubernetes.NewForConfigOrDie(cfg), &all, &nonReads
}

func readCustomRights(ctx context.Context, t *testing.T, host kubernetes.Interface, vc *storagev1.VirtualCluster) customRights {
	t.Helper()
	var c customRights
	check := func(what string, err error) {
		t.Helper()
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatalf("read %s: %v", what, err)
		}
	}
	var err error
	role, cluster := customRoleName(vc), customClusterRoleName(vc)
	if c.role, err = host.RbacV1().Roles(vc.Namespace).Get(ctx, role, metav1.GetOptions{}); err != nil {
		c.role = nil
	}
	check("role", err)
	if c.binding, err = host.RbacV1().RoleBindings(vc.Namespace).Get(ctx, role, metav1.GetOptions{}); err != nil {
		c.binding = nil
	}
	check("role binding", err)
	if c.cluster, err = host.RbacV1().ClusterRoles().Get(ctx, cluster, metav1.GetOptions{}); err != nil {
		c.cluster = nil
	}
	check("cluster role", err)
	if c.cbind, err = host.RbacV1().ClusterRoleBindings().Get(ctx, cluster, metav1.GetOptions{}); err != nil {
		c.cbind = nil
	}
	check("cluster role binding", err)
	return c
}

// expectRights checks that vc's syncer is granted exactly the rights of
// rows, bound to its ServiceAccount and labelled as vc's.
func expectRights(t *testing.T, c customRights, vc *storagev1.VirtualCluster, rows []kinds.Custom) {
	t.Helper()
	subjects := []rbacv1.Subject{{Kind: "ServiceAccount", Name: storagev1.SyncerName(vc.Name), Namespace: vc.Namespace}}
	labelled := func(what string, o metav1.Object) {
		t.Helper()
		if l := o.GetLabels(); l[storagev1.LabelManagedBy] != storagev1.AgentName || l[storagev1.LabelVirtualCluster] != vc.Name {
			t.Errorf("%s labels %v", what, l)
		}
	}
	hostRules, clusterRules := kinds.CustomHostRules(rows), kinds.CustomClusterRules(rows)
	switch {
	case len(hostRules) == 0 && (c.role != nil || c.binding != nil):
		t.Errorf("rows %v need no namespaced rights, yet role %v, binding %v", rows, c.role, c.binding)
	case len(hostRules) > 0 && (c.role == nil || c.binding == nil):
		t.Errorf("rows %v: role %v, binding %v; want both", rows, c.role, c.binding)
	case len(hostRules) > 0:
		labelled("role", c.role)
		if !apiequality.Semantic.DeepEqual(c.role.Rules, hostRules) {
			t.Errorf("role rules %v, want %v", c.role.Rules, hostRules)
		}
		if ref := c.binding.RoleRef; ref.Kind != "Role" || ref.Name != c.role.Name || !apiequality.Semantic.DeepEqual(c.binding.Subjects, subjects) {
			t.Errorf("role binding %v to %v, want %v to role %s", c.binding.Subjects, ref, subjects, c.role.Name)
		}
	}
	switch {
	case len(clusterRules) == 0 && (c.cluster != nil || c.cbind != nil):
		t.Errorf("no rows, yet cluster role %v, binding %v", c.cluster, c.cbind)
	case len(clusterRules) > 0 && (c.cluster == nil || c.cbind == nil):
		t.Errorf("rows %v: cluster role %v, binding %v; want both", rows, c.cluster, c.cbind)
	case len(clusterRules) > 0:
		labelled("cluster role", c.cluster)
		if !apiequality.Semantic.DeepEqual(c.cluster.Rules, clusterRules) {
			t.Errorf("cluster role rules %v, want %v", c.cluster.Rules, clusterRules)
		}
		if ref := c.cbind.RoleRef; ref.Kind != "ClusterRole" || ref.Name != c.cluster.Name || !apiequality.Semantic.DeepEqual(c.cbind.Subjects, subjects) {
			t.Errorf("cluster role binding %v to %v, want %v to cluster role %s", c.cbind.Subjects, ref, subjects, c.cluster.Name)
		}
	}
}

// TestCustomResourceRights: the syncer's rights of custom rows follow
// the rows, are written only when they differ, and go with the syncer's
// account; an agent that lacks them says so on the VirtualCluster and
// proceeds once it holds them.
func TestCustomResourceRights(t *testing.T) {
	if testing.Short() {
		t.Skip("needs an API server; skipped with -short")
	}
	ctx := context.Background()
	cp, err := testenv.StartControlPlane(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Kill()
	host := cp.Client
	if _, err := host.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Run("follow rows", func(t *testing.T) { testCustomRightsFollowRows(ctx, t, cp.Config) })
	t.Run("reconciled", func(t *testing.T) { testReconcileCustomRights(ctx, t, cp.Config) })
}

func testCustomRightsFollowRows(ctx context.Context, t *testing.T, admin *rest.Config) {
	host, _, writes := countingClient(admin)
	vc := &storagev1.VirtualCluster{ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "team"}}
	certs := kinds.Custom{CRD: "certificates.cert-manager.io", References: []kinds.Reference{{Path: "spec.secretName", Kind: "Secret", Returned: true}}}
	issuers := kinds.Custom{CRD: "issuers.cert-manager.io"}
	clusterIssuers := kinds.Custom{CRD: "clusterissuers.cert-manager.io", FromHost: true}
	steps := []struct {
		name string
		rows []kinds.Custom
	}{
		{"to and from the host", []kinds.Custom{certs, clusterIssuers}},
		{"one more to the host", []kinds.Custom{certs, issuers, clusterIssuers}},
		{"only from the host: no role", []kinds.Custom{clusterIssuers}},
		{"to the host again", []kinds.Custom{issuers}},
	}
	for _, s := range steps {
		if err := ensureCustomRights(ctx, host, vc, s.rows); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		expectRights(t, readCustomRights(ctx, t, host, vc), vc, s.rows)
		// Again with the same rows: nothing is written.
		before := writes.Load()
		if err := ensureCustomRights(ctx, host, vc, s.rows); err != nil {
			t.Fatalf("%s, again: %v", s.name, err)
		}
		if n := writes.Load() - before; n != 0 {
			t.Errorf("%s: %d writes again with the same rows, want none", s.name, n)
		}
	}
	if err := ensureCustomRights(ctx, host, vc, nil); err != nil {
		t.Fatal(err)
	}
	expectRights(t, readCustomRights(ctx, t, host, vc), vc, nil)

	// A role edited on the host is put back.
	rows := []kinds.Custom{certs, clusterIssuers}
	if err := ensureCustomRights(ctx, host, vc, rows); err != nil {
		t.Fatal(err)
	}
	edited := readCustomRights(ctx, t, host, vc).role
	edited.Rules = edited.Rules[:0]
	if _, err := host.RbacV1().Roles(vc.Namespace).Update(ctx, edited, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := ensureCustomRights(ctx, host, vc, rows); err != nil {
		t.Fatal(err)
	}
	expectRights(t, readCustomRights(ctx, t, host, vc), vc, rows)

	// Deleting the syncer's account takes them too.
	if err := deleteSyncerAccount(ctx, host, vc); err != nil {
		t.Fatal(err)
	}
	expectRights(t, readCustomRights(ctx, t, host, vc), vc, nil)
}

// testReconcileCustomRights reconciles a VirtualCluster whose default
// template turns on custom rows, as an agent that may write RBAC but does
// not hold the rows' rights: Kubernetes refuses the grant, and the
// VirtualCluster says what to set. Given the rights, the agent grants
// them, writes nothing more while the rows stay, takes them back when the
// rows go, and removes them with the cluster.
func testReconcileCustomRights(ctx context.Context, t *testing.T, admin *rest.Config) {
	if err := crd.Install(ctx, admin); err != nil {
		t.Fatal(err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := storagev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(admin, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	adminHost := kubernetes.NewForConfigOrDie(admin)
	rows := []kinds.Custom{{CRD: "certificates.cert-manager.io"}, {CRD: "clusterissuers.cert-manager.io", FromHost: true}}
	agentRules := []rbacv1.PolicyRule{{APIGroups: []string{rbacv1.GroupName},
		Resources: []string{"roles", "rolebindings", "clusterroles", "clusterrolebindings"},
		Verbs:     []string{"get", "list", "watch", "create", "update", "patch", "delete"}}}
	agentRole := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "agent"}, Rules: agentRules}
	if _, err := adminHost.RbacV1().ClusterRoles().Create(ctx, agentRole, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = adminHost.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "agent"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "agent", Namespace: "sublet-system"}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "agent"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	asAgent := rest.CopyConfig(admin)
	asAgent.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:sublet-system:agent"}
	tmpl := &storagev1.VirtualClusterTemplate{ObjectMeta: metav1.ObjectMeta{Name: "certs"}}
	withRows := "sync:\n  toHost:\n    customResources:\n      certificates.cert-manager.io:\n        enabled: true\n" +
		"  fromHost:\n    customResources:\n      clusterissuers.cert-manager.io:\n        enabled: true\n"
	tmpl.Spec.Template.HelmRelease.Values = withRows
	if err := cl.Create(ctx, tmpl); err != nil {
		t.Fatal(err)
	}
	recorder := events.NewFakeRecorder(100)
	rt := &scriptedRuntime{state: State{Message: "starting"}}
	agentHost, requests, writes := countingClient(asAgent)
	r := &reconciler{client: cl, host: agentHost, runtime: rt, recorder: recorder,
		defaultTemplate: "certs", clock: time.Now, log: klog.Background()}
	vc := &storagev1.VirtualCluster{ObjectMeta: metav1.ObjectMeta{Name: "certs", Namespace: "team"}}
	if err := cl.Create(ctx, vc); err != nil {
		t.Fatal(err)
	}
	req := ctrl.Request{NamespacedName: types.NamespacedName{Namespace: vc.Namespace, Name: vc.Name}}
	reconcile := func() (*storagev1.VirtualCluster, error) {
		t.Helper()
		_, rerr := r.Reconcile(ctx, req)
		got := &storagev1.VirtualCluster{}
		if err := cl.Get(ctx, req.NamespacedName, got); err != nil {
			t.Fatal(err)
		}
		return got, rerr
	}

	got, err := reconcile()
	if !apierrors.IsForbidden(err) {
		t.Fatalf("reconcile: %v, want the host's Forbidden", err)
	}
	c := meta.FindStatusCondition(got.Status.Conditions, storagev1.ConditionCustomResourceRightsGranted)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonAgentLacksRights {
		t.Fatalf("condition %s = %+v, want False with reason %s", storagev1.ConditionCustomResourceRightsGranted, c, ReasonAgentLacksRights)
	}
	for _, want := range []string{"agent lacks", "agent.customResources.toHost: [certificates.cert-manager.io]",
		"agent.customResources.fromHost: [clusterissuers.cert-manager.io]"} {
		if !strings.Contains(c.Message, want) || !strings.Contains(got.Status.Message, want) {
			t.Errorf("condition message %q / status message %q lacks %q", c.Message, got.Status.Message, want)
		}
	}
	if got.Status.Phase != storagev1.PhaseFailed {
		t.Errorf("phase %s, want Failed", got.Status.Phase)
	}
	select {
	case e := <-recorder.Events:
		if !strings.Contains(e, ReasonAgentLacksRights) {
			t.Errorf("event %q, want %s", e, ReasonAgentLacksRights)
		}
	default:
		t.Errorf("no %s event", ReasonAgentLacksRights)
	}
	if len(rt.ensured) != 0 {
		t.Errorf("the runtime ran a syncer without its rights: %v", rt.ensured)
	}

	// The platform chart's agent.customResources gives the agent the rows'
	// rights; the next reconcile grants them and runs the cluster.
	agentRole.Rules = append(append(agentRules, kinds.CustomHostRules(rows)...), kinds.CustomClusterRules(rows)...)
	if _, err := adminHost.RbacV1().ClusterRoles().Update(ctx, agentRole, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, err = reconcile(); err != nil {
		t.Fatalf("reconcile with the rights: %v", err)
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, storagev1.ConditionCustomResourceRightsGranted); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("condition %s = %+v, want True", storagev1.ConditionCustomResourceRightsGranted, c)
	}
	if len(rt.ensured) != 1 || got.Status.Phase != storagev1.PhaseDeploying {
		t.Errorf("phase %s, runtime asked %d times; want Deploying, once", got.Status.Phase, len(rt.ensured))
	}
	expectRights(t, readCustomRights(ctx, t, adminHost, vc), vc, rows)
	before := writes.Load()
	if _, err := reconcile(); err != nil {
		t.Fatal(err)
	}
	if n := writes.Load() - before; n != 0 {
		t.Errorf("%d host writes reconciling unchanged rows, want none", n)
	}

	// The template drops its rows: the rights go, and then the reconciler
	// asks the host nothing about them.
	setValues := func(v string) {
		t.Helper()
		if err := cl.Get(ctx, types.NamespacedName{Name: tmpl.Name}, tmpl); err != nil {
			t.Fatal(err)
		}
		tmpl.Spec.Template.HelmRelease.Values = v
		if err := cl.Update(ctx, tmpl); err != nil {
			t.Fatal(err)
		}
	}
	setValues("")
	if got, err = reconcile(); err != nil {
		t.Fatal(err)
	}
	expectRights(t, readCustomRights(ctx, t, adminHost, vc), vc, nil)
	if c := meta.FindStatusCondition(got.Status.Conditions, storagev1.ConditionCustomResourceRightsGranted); c != nil {
		t.Errorf("condition %+v without rows", c)
	}
	before = requests.Load()
	if _, err := reconcile(); err != nil {
		t.Fatal(err)
	}
	if n := requests.Load() - before; n != 0 {
		t.Errorf("%d host requests reconciling a cluster without rows, want none", n)
	}
	setValues(withRows)
	if _, err := reconcile(); err != nil {
		t.Fatal(err)
	}
	expectRights(t, readCustomRights(ctx, t, adminHost, vc), vc, rows)

	// Deleted with a runtime that keeps no account (the pod runtime's
	// release): the reconciler removes them.
	r.host = adminHost
	if err := cl.Delete(ctx, got); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatalf("reconcile the deletion: %v", err)
	}
	if err := cl.Get(ctx, req.NamespacedName, &storagev1.VirtualCluster{}); !apierrors.IsNotFound(err) {
		t.Errorf("the VirtualCluster is still there after its deletion: %v", err)
	}
	expectRights(t, readCustomRights(ctx, t, adminHost, vc), vc, nil)
}
