package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// VirtualCluster is a virtual Kubernetes cluster whose control plane and
// workloads live in this object's namespace of the host cluster.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=vc;vcluster,categories=sublet
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Asleep",type=date,JSONPath=`.status.sleepingSince`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.kubernetesVersion`
// +kubebuilder:printcolumn:name="Runtime",type=string,JSONPath=`.status.runtime`,priority=1
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type VirtualCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   VirtualClusterSpec   `json:"spec,omitempty"`
	Status VirtualClusterStatus `json:"status,omitempty"`
}

// VirtualClusterSpec is what the virtual cluster should be.
type VirtualClusterSpec struct {
	// HelmRelease carries the virtual cluster's values (a YAML document; see
	// the README's "Values reference"). The chart fields are accepted for
	// compatibility; Sublet deploys its own runtime.
	// +optional
	HelmRelease *VirtualClusterHelmRelease `json:"helmRelease,omitempty"`

	// TemplateRef names a VirtualClusterTemplate whose values apply before
	// this object's own.
	// +optional
	TemplateRef *TemplateRef `json:"templateRef,omitempty"`
}

// VirtualClusterHelmRelease is the original product's release description.
type VirtualClusterHelmRelease struct {
	// Chart is accepted and ignored.
	// +optional
	Chart VirtualClusterHelmChart `json:"chart,omitempty"`

	// Values is a YAML document of values.
	// +optional
	Values string `json:"values,omitempty"`
}

// VirtualClusterHelmChart names a chart (accepted for compatibility).
type VirtualClusterHelmChart struct {
	// +optional
	Name string `json:"name,omitempty"`
	// +optional
	Repo string `json:"repo,omitempty"`
	// +optional
	Version string `json:"version,omitempty"`
}

// TemplateRef refers to a VirtualClusterTemplate.
type TemplateRef struct {
	// Name of the VirtualClusterTemplate.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
}

// VirtualClusterPhase is the coarse state of a virtual cluster.
// +kubebuilder:validation:Enum=Pending;Deploying;Ready;Sleeping;Failed
type VirtualClusterPhase string

// Phases of a virtual cluster.
const (
	PhasePending   VirtualClusterPhase = "Pending"
	PhaseDeploying VirtualClusterPhase = "Deploying"
	PhaseReady     VirtualClusterPhase = "Ready"
	PhaseSleeping  VirtualClusterPhase = "Sleeping"
	PhaseFailed    VirtualClusterPhase = "Failed"
)

// Condition types of a VirtualCluster.
const (
	// ConditionValuesValid: the effective values parsed and validated.
	ConditionValuesValid = "ValuesValid"
	// ConditionConfigurationValid: the name and the configuration are ones
	// the runtime can run (a runtime that refused its configuration, e.g.
	// a service CIDR that does not hold the host's, sets it false).
	ConditionConfigurationValid = "ConfigurationValid"
	// ConditionIsolationApplied: the ResourceQuota, LimitRange and
	// NetworkPolicy that isolation.* asks for are in place on the host.
	ConditionIsolationApplied = "IsolationApplied"
	// ConditionIsolationAllowed: the VirtualCluster's own values loosen no
	// isolation setting of its cluster default and template (only a host
	// admin loosens isolation), and its template's `use` could be checked.
	ConditionIsolationAllowed = "IsolationAllowed"
	// ConditionVersionFallback: the asked Kubernetes version is not
	// shipped; the nearest shipped one runs.
	ConditionVersionFallback = "VersionFallback"
	// ConditionCustomResourceRightsGranted: the syncer holds the host
	// rights its custom resource rows (sync.toHost/fromHost.customResources)
	// need; absent without rows.
	ConditionCustomResourceRightsGranted = "CustomResourceRightsGranted"
	// ConditionHostKindsServed: the host serves every kind the cluster
	// syncs through a CRD (Gateway API kinds, custom resource rows) as it
	// needs: the CRD exists, a row's scope fits; absent without such kinds.
	ConditionHostKindsServed = "HostKindsServed"
	// ConditionRuntimeReady: the runtime runs and the API server answers.
	ConditionRuntimeReady = "RuntimeReady"
	// ConditionReady: the virtual cluster is usable.
	ConditionReady = "Ready"
)

// VirtualClusterStatus is what the agent observed.
type VirtualClusterStatus struct {
	// Phase summarises the conditions.
	// +optional
	Phase VirtualClusterPhase `json:"phase,omitempty"`

	// Reason is a CamelCase word for the phase, Message a sentence.
	// +optional
	Reason string `json:"reason,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`

	// Conditions: ValuesValid, IsolationAllowed, ConfigurationValid, IsolationApplied, VersionFallback,
	// CustomResourceRightsGranted, HostKindsServed, RuntimeReady, Ready, Sleeping, SleepModeValid, Restored.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// KubernetesVersion is the version the virtual API server reports.
	// +optional
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`

	// Endpoint is the virtual API server's URL, as the agent reaches it.
	// +optional
	Endpoint string `json:"endpoint,omitempty"`

	// KubeconfigSecret is the Secret in this namespace whose key "config" is
	// the virtual cluster's admin kubeconfig.
	// +optional
	KubeconfigSecret string `json:"kubeconfigSecret,omitempty"`

	// Runtime runs the virtual cluster: process or pod.
	// +optional
	Runtime string `json:"runtime,omitempty"`

	// EffectiveValues are the merged values in force (defaults, template,
	// this object), as YAML.
	// +optional
	EffectiveValues string `json:"effectiveValues,omitempty"`

	// SleepingSince is when the cluster went to sleep (unset while awake).
	// +optional
	SleepingSince *metav1.Time `json:"sleepingSince,omitempty"`

	// LastActivity is the last request through the platform the agent knows
	// of (from the last-activity annotation), or when it was woken.
	// +optional
	LastActivity *metav1.Time `json:"lastActivity,omitempty"`

	// SleepAfterSeconds is the sleep-after in force (from the cluster's or
	// its templates' annotations; 0: none). The platform server records
	// activity often enough for it: every third of it, at most once a
	// minute.
	// +optional
	SleepAfterSeconds int64 `json:"sleepAfterSeconds,omitempty"`

	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// VirtualClusterList is a list of VirtualClusters.
//
// +kubebuilder:object:root=true
type VirtualClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []VirtualCluster `json:"items"`
}

// AnnotationDefaultTemplate set to "true" on a VirtualClusterTemplate makes
// its values the base of every virtual cluster (unless the agent is given
// --default-template).
const AnnotationDefaultTemplate = "storage.loft.sh/default-template"

// VirtualClusterTemplate holds default values for virtual clusters that
// reference it.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=vctemplate,categories=sublet
// +kubebuilder:printcolumn:name="Display Name",type=string,JSONPath=`.spec.displayName`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type VirtualClusterTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec VirtualClusterTemplateSpec `json:"spec,omitempty"`
}

// VirtualClusterTemplateSpec describes a template.
type VirtualClusterTemplateSpec struct {
	// +optional
	DisplayName string `json:"displayName,omitempty"`
	// +optional
	Description string `json:"description,omitempty"`
	// Template is what virtual clusters made from it get.
	// +optional
	Template VirtualClusterTemplateDefinition `json:"template,omitempty"`
}

// VirtualClusterTemplateDefinition is the templated part of a
// VirtualCluster.
type VirtualClusterTemplateDefinition struct {
	// +optional
	HelmRelease VirtualClusterHelmRelease `json:"helmRelease,omitempty"`
}

// VirtualClusterTemplateList is a list of VirtualClusterTemplates.
//
// +kubebuilder:object:root=true
type VirtualClusterTemplateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []VirtualClusterTemplate `json:"items"`
}
