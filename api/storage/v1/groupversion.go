// Package v1 is the storage.loft.sh/v1 API of Sublet: VirtualCluster, a
// virtual cluster in a namespace of a host cluster; VirtualClusterTemplate,
// default values for many of them; and the platform's Cluster (a connected
// host cluster) and AccessKey (a user's key to the platform). The group and
// field names follow the original product, so its manifests apply
// unchanged.
//
// +kubebuilder:object:generate=true
// +groupName=storage.loft.sh
package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is storage.loft.sh/v1.
var GroupVersion = schema.GroupVersion{Group: "storage.loft.sh", Version: "v1"}

var (
	// SchemeBuilder registers this package's types.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds this package's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&VirtualCluster{}, &VirtualClusterList{},
		&VirtualClusterTemplate{}, &VirtualClusterTemplateList{},
		&Cluster{}, &ClusterList{},
		&AccessKey{}, &AccessKeyList{},
		&VirtualClusterSnapshot{}, &VirtualClusterSnapshotList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
