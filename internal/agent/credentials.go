package agent

import (
	"context"
	"fmt"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/syncer/kinds"
)

// nodeReaderRole is the cluster role that lets syncers read what they read
// cluster-wide on the host (kinds.HostClusterRules): nodes, other
// namespaces' ingresses, the host's classes. Its name predates the classes.
const nodeReaderRole = "sublet:syncer-node-reader"

// syncerName names the ServiceAccount, Role and RoleBinding of vc's syncer.
func syncerName(vc *storagev1.VirtualCluster) string { return storagev1.SyncerName(vc.Name) }

// nodeBindingName names vc's ClusterRoleBinding to nodeReaderRole.
func nodeBindingName(vc *storagev1.VirtualCluster) string {
	return "sublet:vc:" + vc.Namespace + ":" + vc.Name
}

// ensureSyncerAccount creates vc's least-privilege host identity and mints
// a token for it, valid for lifetime seconds.
func ensureSyncerAccount(ctx context.Context, host kubernetes.Interface, vc *storagev1.VirtualCluster, lifetime int64) (string, error) {
	ns, name := vc.Namespace, syncerName(vc)
	labels := map[string]string{storagev1.LabelManagedBy: storagev1.AgentName, storagev1.LabelVirtualCluster: vc.Name}
	create := func(what string, err error) error {
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create %s for the syncer: %w", what, err)
		}
		return nil
	}
	meta := metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}
	_, err := host.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: meta}, metav1.CreateOptions{})
	if err := create("service account", err); err != nil {
		return "", err
	}
	// The rights of every kind the syncer can sync, in this namespace only.
	role := &rbacv1.Role{ObjectMeta: meta, Rules: kinds.HostRules()}
	if _, err := host.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		if _, err := host.RbacV1().Roles(ns).Update(ctx, role, metav1.UpdateOptions{}); err != nil {
			return "", fmt.Errorf("update the syncer's role: %w", err)
		}
	} else if err != nil {
		return "", fmt.Errorf("create the syncer's role: %w", err)
	}
	subjects := []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}}
	_, err = host.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: meta, Subjects: subjects,
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}}, metav1.CreateOptions{})
	if err := create("role binding", err); err != nil {
		return "", err
	}
	// Shared by every syncer; an agent of an older table updates it.
	reader := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: nodeReaderRole, Labels: map[string]string{storagev1.LabelManagedBy: storagev1.AgentName}},
		Rules:      kinds.HostClusterRules(),
	}
	if _, err := host.RbacV1().ClusterRoles().Create(ctx, reader, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		if _, err := host.RbacV1().ClusterRoles().Update(ctx, reader, metav1.UpdateOptions{}); err != nil {
			return "", fmt.Errorf("update the syncers' cluster-wide reader role: %w", err)
		}
	} else if err != nil {
		return "", fmt.Errorf("create the syncers' cluster-wide reader role: %w", err)
	}
	_, err = host.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: nodeBindingName(vc), Labels: labels}, Subjects: subjects,
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: nodeReaderRole},
	}, metav1.CreateOptions{})
	if err := create("node reader binding", err); err != nil {
		return "", err
	}
	tr, err := host.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(lifetime)},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("mint the syncer's token: %w", err)
	}
	return tr.Status.Token, nil
}

// deleteSyncerAccount removes what ensureSyncerAccount made, and the
// rights of the custom rows (ensureCustomRights).
func deleteSyncerAccount(ctx context.Context, host kubernetes.Interface, vc *storagev1.VirtualCluster) error {
	if err := deleteCustomRights(ctx, host, vc); err != nil {
		return err
	}
	ns, name := vc.Namespace, syncerName(vc)
	for _, err := range []error{
		host.RbacV1().ClusterRoleBindings().Delete(ctx, nodeBindingName(vc), metav1.DeleteOptions{}),
		host.RbacV1().RoleBindings(ns).Delete(ctx, name, metav1.DeleteOptions{}),
		host.RbacV1().Roles(ns).Delete(ctx, name, metav1.DeleteOptions{}),
		host.CoreV1().ServiceAccounts(ns).Delete(ctx, name, metav1.DeleteOptions{}),
	} {
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}
