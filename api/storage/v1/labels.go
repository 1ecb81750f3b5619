package v1

// Ownership of the host objects the agent makes for a virtual cluster.
const (
	// LabelManagedBy names the component that made an object.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// AgentName is LabelManagedBy's value on what the agent makes.
	AgentName = "sublet-agent"
	// LabelVirtualCluster names the virtual cluster an object belongs to.
	LabelVirtualCluster = "sublet.dev/virtualcluster"
	// LabelNamespaceFor marks a host namespace Sublet created for the
	// virtual cluster it names; the agent keeps that namespace's pod
	// security labels at the cluster's level.
	LabelNamespaceFor = "sublet.dev/namespace-for"
)

// AnnotationAllowExecPlugin on a Cluster lets its kubeconfig use an exec
// plugin, which runs on the platform server's machine; set by
// `sublet connect cluster --allow-exec-plugin`.
const AnnotationAllowExecPlugin = "sublet.dev/allow-exec-plugin"

// LabelLoosensIsolation on a VirtualClusterTemplate is "true" if its values
// loosen an isolation setting of the defaults and "false" if not; the agent
// keeps it (and the same in the admission policy's parameter, a ConfigMap:
// see config/policy), for admins to see which templates need `use`.
const LabelLoosensIsolation = "sublet.dev/loosens-isolation"
