package v1

// Names derived from a VirtualCluster's name. The agent, the server, the
// CLI and the web UI take them from here; charts/vcluster spells the same
// in its templates, and the charts' tests check that they agree.

// KubeconfigSecretName is the Secret, in the VirtualCluster's namespace,
// that holds the virtual cluster's admin kubeconfig (status.kubeconfigSecret
// names it once written).
func KubeconfigSecretName(vcName string) string { return "vc-" + vcName }

// SyncerName is the ServiceAccount, Role and RoleBinding in the
// VirtualCluster's namespace that the virtual cluster's syncer runs as.
func SyncerName(vcName string) string { return "vc-" + vcName + "-syncer" }

// DefaultNamespace is the namespace a VirtualCluster goes into when the
// user names none ('sublet create vcluster', 'sublet up', the web UI).
func DefaultNamespace(vcName string) string { return "vcluster-" + vcName }
