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

// The data endpoint: where the agent reads and replaces the data dir of a
// virtual cluster whose volume it cannot reach (the pod runtime's). It is
// served by the virtual API server (after its authentication and
// authorization) to requests that also carry, in DataTokenHeader, the
// token the runtime publishes under DataTokenKey in the kubeconfig Secret:
// a host Secret no tenant reads. GET streams a tar of what a snapshot
// keeps; PUT takes a tar of a prepared data dir and restarts the runtime
// on it.
const (
	DataPath        = "/sublet/v1/data"
	DataTokenKey    = "data-token"
	DataTokenHeader = "X-Sublet-Data-Token"
)
