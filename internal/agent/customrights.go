package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/syncer/kinds"
	"github.com/sublet-dev/sublet/internal/translate"
)

// ReasonAgentLacksRights is the condition and event reason of a
// VirtualCluster whose custom resource rows need host rights the agent
// does not hold, so it cannot grant them to the syncer.
const ReasonAgentLacksRights = "AgentLacksRights"

// customRoleName names vc's Role and RoleBinding of its custom rows.
func customRoleName(vc *storagev1.VirtualCluster) string { return syncerName(vc) + "-custom" }

// customClusterRoleName names vc's ClusterRole and ClusterRoleBinding of
// its custom rows.
func customClusterRoleName(vc *storagev1.VirtualCluster) string {
	return nodeBindingName(vc) + ":custom"
}

// grantCustomRights gives vc's syncer the host rights of its custom
// resource rows (none: takes them away) and records the outcome in the
// condition CustomResourceRightsGranted. Both runtimes' syncers run as
// storagev1.SyncerName, so one grant serves both. It runs on every
// reconcile, so rows follow the values.
func (r *reconciler) grantCustomRights(ctx context.Context, vc *storagev1.VirtualCluster, rows []kinds.Custom) error {
	if len(rows) == 0 && meta.FindStatusCondition(vc.Status.Conditions, storagev1.ConditionCustomResourceRightsGranted) == nil {
		// Never granted, or taken back already: no request at all for the
		// many clusters without rows. (Rights granted by a reconcile whose
		// status was lost go when the cluster does.)
		return nil
	}
	removed := removedRows(ctx, r.host, vc, rows)
	err := ensureCustomRights(ctx, r.host, vc, rows)
	if err == nil && len(removed) > 0 {
		// The syncer may no longer write them (its role lost the rows), so
		// nothing makes them again: the host copies of rows turned off go.
		err = deleteCustomObjects(ctx, r.host, vc.Namespace, translate.LabelCopyOf+"="+vc.Name, removed)
	}
	switch {
	case err == nil && len(rows) == 0:
		meta.RemoveStatusCondition(&vc.Status.Conditions, storagev1.ConditionCustomResourceRightsGranted)
		return nil
	case err == nil:
		r.setCondition(vc, storagev1.ConditionCustomResourceRightsGranted, true, "Granted",
			"the syncer holds the host rights of its custom resource rows")
		return nil
	case !apierrors.IsForbidden(err):
		r.setCondition(vc, storagev1.ConditionCustomResourceRightsGranted, false, "GrantFailed", err.Error())
		return err
	}
	msg := lacksRightsMessage(rows, err)
	if r.setCondition(vc, storagev1.ConditionCustomResourceRightsGranted, false, ReasonAgentLacksRights, msg) {
		r.recorder.Eventf(vc, nil, corev1.EventTypeWarning, ReasonAgentLacksRights, "Deploy", msg)
	}
	r.setPhase(vc, storagev1.PhaseFailed, ReasonAgentLacksRights, msg)
	// Retried with backoff: upgrading the platform chart fixes it without
	// touching the VirtualCluster.
	return err
}

// removedRows are the to-host rows vc's custom Role grants that rows no
// longer have.
func removedRows(ctx context.Context, host kubernetes.Interface, vc *storagev1.VirtualCluster, rows []kinds.Custom) []kinds.Custom {
	role, err := host.RbacV1().Roles(vc.Namespace).Get(ctx, customRoleName(vc), metav1.GetOptions{})
	if err != nil {
		return nil
	}
	keep := map[string]bool{}
	for _, row := range rows {
		if !row.FromHost {
			keep[row.CRD] = true
		}
	}
	var out []kinds.Custom
	for _, rule := range role.Rules {
		for _, g := range rule.APIGroups {
			for _, res := range rule.Resources {
				if crd := res + "." + g; !keep[crd] {
					out = append(out, kinds.Custom{CRD: crd})
				}
			}
		}
	}
	return out
}

// lacksRightsMessage says that the agent lacks the rights of rows, and
// the platform chart's values that give them to it.
func lacksRightsMessage(rows []kinds.Custom, err error) string {
	var to, from []string
	for _, row := range rows {
		if row.FromHost {
			from = append(from, row.CRD)
		} else {
			to = append(to, row.CRD)
		}
	}
	var add []string
	if len(to) > 0 {
		add = append(add, "agent.customResources.toHost: ["+strings.Join(to, ", ")+"]")
	}
	if len(from) > 0 {
		add = append(add, "agent.customResources.fromHost: ["+strings.Join(from, ", ")+"]")
	}
	return fmt.Sprintf("the agent lacks the host rights of the custom resource rows, and Kubernetes lets it grant the syncer "+
		"only rights it holds (%v); a host admin gives them to the agent by adding %s to the platform chart's values "+
		"(helm upgrade sublet charts/sublet -n sublet-system --reuse-values -f FILE), or turns the rows off", err, strings.Join(add, " and "))
}

// ensureCustomRights makes vc's Role (namespaced rights) and ClusterRole
// (cluster-wide rights) of rows and their bindings to its syncer, writing
// only what differs; with no rows, or no namespaced rights, it deletes
// them.
func ensureCustomRights(ctx context.Context, host kubernetes.Interface, vc *storagev1.VirtualCluster, rows []kinds.Custom) error {
	if len(rows) == 0 {
		return deleteCustomRights(ctx, host, vc)
	}
	labels := map[string]string{storagev1.LabelManagedBy: storagev1.AgentName, storagev1.LabelVirtualCluster: vc.Name}
	subjects := []rbacv1.Subject{{Kind: "ServiceAccount", Name: syncerName(vc), Namespace: vc.Namespace}}
	if err := ensureCustomRole(ctx, host, vc, kinds.CustomHostRules(rows), labels, subjects); err != nil {
		return err
	}
	name := customClusterRoleName(vc)
	meta := metav1.ObjectMeta{Name: name, Labels: labels}
	rules := kinds.CustomClusterRules(rows)
	err := apply(ctx, host.RbacV1().ClusterRoles(), &rbacv1.ClusterRole{ObjectMeta: meta, Rules: rules},
		func(h *rbacv1.ClusterRole) bool { return apiequality.Semantic.DeepEqual(h.Rules, rules) })
	if err != nil {
		return fmt.Errorf("grant the syncer its custom rows' cluster-wide rights: %w", err)
	}
	ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}
	err = apply(ctx, host.RbacV1().ClusterRoleBindings(), &rbacv1.ClusterRoleBinding{ObjectMeta: meta, Subjects: subjects, RoleRef: ref},
		func(h *rbacv1.ClusterRoleBinding) bool {
			return h.RoleRef == ref && apiequality.Semantic.DeepEqual(h.Subjects, subjects)
		})
	if err != nil {
		return fmt.Errorf("bind the syncer to its custom rows' cluster role: %w", err)
	}
	return nil
}

// ensureCustomRole makes vc's Role of rules in its namespace and its
// binding; no rules (only rows from the host): neither.
func ensureCustomRole(ctx context.Context, host kubernetes.Interface, vc *storagev1.VirtualCluster, rules []rbacv1.PolicyRule,
	labels map[string]string, subjects []rbacv1.Subject) error {
	ns, name := vc.Namespace, customRoleName(vc)
	if len(rules) == 0 {
		// Looked up first: rows only from the host are reconciled often.
		_, errB := host.RbacV1().RoleBindings(ns).Get(ctx, name, metav1.GetOptions{})
		_, errR := host.RbacV1().Roles(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(errB) && apierrors.IsNotFound(errR) {
			return nil
		}
		err := deleteAll(
			host.RbacV1().RoleBindings(ns).Delete(ctx, name, metav1.DeleteOptions{}),
			host.RbacV1().Roles(ns).Delete(ctx, name, metav1.DeleteOptions{}))
		if err != nil {
			return fmt.Errorf("remove the syncer's custom rows' role: %w", err)
		}
		return nil
	}
	meta := metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}
	err := apply(ctx, host.RbacV1().Roles(ns), &rbacv1.Role{ObjectMeta: meta, Rules: rules},
		func(h *rbacv1.Role) bool { return apiequality.Semantic.DeepEqual(h.Rules, rules) })
	if err != nil {
		return fmt.Errorf("grant the syncer its custom rows' rights in namespace %s: %w", ns, err)
	}
	ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}
	err = apply(ctx, host.RbacV1().RoleBindings(ns), &rbacv1.RoleBinding{ObjectMeta: meta, Subjects: subjects, RoleRef: ref},
		func(h *rbacv1.RoleBinding) bool {
			return h.RoleRef == ref && apiequality.Semantic.DeepEqual(h.Subjects, subjects)
		})
	if err != nil {
		return fmt.Errorf("bind the syncer to its custom rows' role: %w", err)
	}
	return nil
}

// deleteCustomRights removes what ensureCustomRights made.
func deleteCustomRights(ctx context.Context, host kubernetes.Interface, vc *storagev1.VirtualCluster) error {
	ns, role, cluster := vc.Namespace, customRoleName(vc), customClusterRoleName(vc)
	if err := deleteAll(
		host.RbacV1().ClusterRoleBindings().Delete(ctx, cluster, metav1.DeleteOptions{}),
		host.RbacV1().ClusterRoles().Delete(ctx, cluster, metav1.DeleteOptions{}),
		host.RbacV1().RoleBindings(ns).Delete(ctx, role, metav1.DeleteOptions{}),
		host.RbacV1().Roles(ns).Delete(ctx, role, metav1.DeleteOptions{}),
	); err != nil {
		return fmt.Errorf("remove the syncer's custom rows' rights: %w", err)
	}
	return nil
}

// deleteAll joins the errors of deletes, NotFound ignored.
func deleteAll(errs ...error) error {
	var out []error
	for _, err := range errs {
		if err != nil && !apierrors.IsNotFound(err) {
			out = append(out, err)
		}
	}
	return errors.Join(out...)
}

// objectClient is the part of a typed client apply uses.
type objectClient[T any] interface {
	Get(context.Context, string, metav1.GetOptions) (*T, error)
	Create(context.Context, *T, metav1.CreateOptions) (*T, error)
	Update(context.Context, *T, metav1.UpdateOptions) (*T, error)
	Delete(context.Context, string, metav1.DeleteOptions) error
}

// apply creates want, or, when same says the object of its name differs
// (or its labels do), updates it; an update the API server refuses as
// invalid (an immutable field) deletes and creates it.
func apply[T any, P interface {
	*T
	metav1.Object
}](ctx context.Context, c objectClient[T], want P, same func(have P) bool) error {
	have, err := c.Get(ctx, want.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = c.Create(ctx, want, metav1.CreateOptions{})
		return err
	case err != nil:
		return err
	case same(P(have)) && apiequality.Semantic.DeepEqual(P(have).GetLabels(), want.GetLabels()):
		return nil
	}
	want.SetResourceVersion(P(have).GetResourceVersion())
	_, err = c.Update(ctx, want, metav1.UpdateOptions{})
	if !apierrors.IsInvalid(err) {
		return err
	}
	if err := c.Delete(ctx, want.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	want.SetResourceVersion("")
	_, err = c.Create(ctx, want, metav1.CreateOptions{})
	return err
}
