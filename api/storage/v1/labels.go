package v1

// Ownership of the host objects the agent makes for a virtual cluster.
const (
	// LabelManagedBy names the component that made an object.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// AgentName is LabelManagedBy's value on what the agent makes.
	AgentName = "sublet-agent"
	// LabelVirtualCluster names the virtual cluster an object belongs to.
	LabelVirtualCluster = "sublet.dev/virtualcluster"
)
