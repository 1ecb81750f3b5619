package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Cluster is a host cluster connected to the platform: virtual clusters
// are created in it, and the platform reaches it with the kubeconfig in
// a Secret of the management cluster.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,categories=sublet
// +kubebuilder:printcolumn:name="Display Name",type=string,JSONPath=`.spec.displayName`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Cluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ClusterSpec   `json:"spec,omitempty"`
	Status ClusterStatus `json:"status,omitempty"`
}

// ClusterSpec says how to reach a host cluster and what its virtual
// clusters start from.
type ClusterSpec struct {
	// +optional
	DisplayName string `json:"displayName,omitempty"`
	// Config is the Secret (key "config") holding a kubeconfig for the
	// cluster with rights to impersonate users and manage VirtualClusters.
	Config SecretRef `json:"config"`
	// DefaultTemplate names the VirtualClusterTemplate new virtual clusters
	// in this cluster start from.
	// +optional
	DefaultTemplate string `json:"defaultTemplate,omitempty"`
	// Runtime the cluster's agent uses: process or pod.
	// +optional
	// +kubebuilder:validation:Enum=process;pod
	Runtime string `json:"runtime,omitempty"`
}

// SecretRef names a Secret.
type SecretRef struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +kubebuilder:validation:MinLength=1
	Namespace string `json:"namespace"`
}

// ClusterStatus is what the server last saw of the cluster.
type ClusterStatus struct {
	// Phase: Ready when the server reaches the cluster, else Unreachable.
	// +optional
	Phase string `json:"phase,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
	// KubernetesVersion of the cluster's API server.
	// +optional
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
}

// ClusterList is a list of Clusters.
//
// +kubebuilder:object:root=true
type ClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Cluster `json:"items"`
}

// AccessKey lets a user reach the platform: the key itself is shown once
// at creation; only its SHA-256 is stored.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories=sublet
// +kubebuilder:printcolumn:name="User",type=string,JSONPath=`.spec.user`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.spec.expiration`
// +kubebuilder:printcolumn:name="Cluster",type=string,JSONPath=`.spec.scope.virtualCluster.cluster`,priority=1
// +kubebuilder:printcolumn:name="Namespace",type=string,JSONPath=`.spec.scope.virtualCluster.namespace`,priority=1
// +kubebuilder:printcolumn:name="VirtualCluster",type=string,JSONPath=`.spec.scope.virtualCluster.name`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AccessKey struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec AccessKeySpec `json:"spec,omitempty"`
}

// AccessKeySpec is who a key authenticates as, and until when.
//
// +kubebuilder:validation:XValidation:rule="has(self.scope) == has(oldSelf.scope)",message="scope is immutable; make a new key"
type AccessKeySpec struct {
	// User the key authenticates as.
	// +kubebuilder:validation:MinLength=1
	User string `json:"user"`
	// Groups the user is in while using this key.
	// +optional
	Groups []string `json:"groups,omitempty"`
	// Expiration, if set, ends the key.
	// +optional
	Expiration *metav1.Time `json:"expiration,omitempty"`
	// KeySHA256 is the hex SHA-256 of the key.
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{64}$`
	KeySHA256 string `json:"keySHA256"`
	// +optional
	Description string `json:"description,omitempty"`
	// Scope, when set, limits where the key authenticates. It cannot be
	// changed: a key is scoped when it is made.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="scope is immutable; make a new key"
	Scope *AccessKeyScope `json:"scope,omitempty"`
}

// AccessKeyScope limits an access key to part of the platform.
type AccessKeyScope struct {
	// VirtualCluster makes the key good for that virtual cluster's API
	// alone (through the platform's proxy, in any of its forms) and for
	// nothing else of the platform.
	VirtualCluster *VirtualClusterScope `json:"virtualCluster,omitempty"`
}

// VirtualClusterScope names the one virtual cluster a key is good for.
type VirtualClusterScope struct {
	// Cluster is the connected host cluster's name.
	// +kubebuilder:validation:MinLength=1
	Cluster string `json:"cluster"`
	// +kubebuilder:validation:MinLength=1
	Namespace string `json:"namespace"`
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// UID is the VirtualCluster's when the key was made: one deleted and
	// made again under the same name is another cluster, which the key
	// does not open.
	// +optional
	UID types.UID `json:"uid,omitempty"`
}

// AccessKeyList is a list of AccessKeys.
//
// +kubebuilder:object:root=true
type AccessKeyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AccessKey `json:"items"`
}
