package v1

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// VirtualClusterSnapshot records one snapshot of a virtual cluster in the
// cluster's namespace: the agent writes it (the datastore's own backup,
// the effective values, and the cluster's identity encrypted with the
// platform's snapshot key) to spec.location and reports where, when and
// how big in its status. Deleting the object deletes a snapshot kept as
// a file; an OCI artifact stays in its registry.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=vcsnap;vcsnapshot,categories=sublet
// +kubebuilder:printcolumn:name="Source",type=string,JSONPath=`.spec.virtualCluster`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Size",type=integer,JSONPath=`.status.size`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.kubernetesVersion`
// +kubebuilder:printcolumn:name="Location",type=string,JSONPath=`.status.location`,priority=1
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type VirtualClusterSnapshot struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   VirtualClusterSnapshotSpec   `json:"spec,omitempty"`
	Status VirtualClusterSnapshotStatus `json:"status,omitempty"`
}

// VirtualClusterSnapshotSpec is what to snapshot and where to.
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="a snapshot's spec is immutable; make a new snapshot"
type VirtualClusterSnapshotSpec struct {
	// VirtualCluster is the name of the VirtualCluster, in this namespace,
	// to snapshot.
	// +kubebuilder:validation:MinLength=1
	VirtualCluster string `json:"virtualCluster"`

	// Location is where the snapshot goes: an absolute file path on the
	// agent's machine (file:///PATH or /PATH), or oci://REGISTRY/REPO:TAG.
	// Empty: a file under the agent's state dir.
	// +optional
	Location string `json:"location,omitempty"`
}

// SnapshotPhase is the coarse state of a snapshot.
// +kubebuilder:validation:Enum=Pending;InProgress;Completed;Failed
type SnapshotPhase string

// Phases of a snapshot.
const (
	SnapshotPending    SnapshotPhase = "Pending"
	SnapshotInProgress SnapshotPhase = "InProgress"
	SnapshotCompleted  SnapshotPhase = "Completed"
	SnapshotFailed     SnapshotPhase = "Failed"
)

// VirtualClusterSnapshotStatus is what the agent wrote.
type VirtualClusterSnapshotStatus struct {
	// +optional
	Phase SnapshotPhase `json:"phase,omitempty"`
	// Reason is a CamelCase word for the phase, Message a sentence.
	// +optional
	Reason string `json:"reason,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`

	// Location is where the snapshot is (the spec's, or the default file).
	// +optional
	Location string `json:"location,omitempty"`
	// Digest is the sha256 of the snapshot archive.
	// +optional
	Digest string `json:"digest,omitempty"`
	// Size of the archive in bytes.
	// +optional
	Size int64 `json:"size,omitempty"`
	// KubernetesVersion of the virtual cluster when snapshotted.
	// +optional
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	// Datastore of the virtual cluster: sqlite or etcd.
	// +optional
	Datastore string `json:"datastore,omitempty"`
	// SourceTemplate and SourceValues are the VirtualCluster's
	// spec.templateRef.name and spec.helmRelease.values, with which a
	// restore makes it again when it is gone.
	// +optional
	SourceTemplate string `json:"sourceTemplate,omitempty"`
	// +optional
	SourceValues string `json:"sourceValues,omitempty"`
	// SourceUID is the VirtualCluster's UID.
	// +optional
	SourceUID string `json:"sourceUID,omitempty"`
	// SourceSleeping: the cluster slept and was not woken for the
	// snapshot.
	// +optional
	SourceSleeping bool `json:"sourceSleeping,omitempty"`
	// StartTime and CompletionTime of the snapshot.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// DurationMilliseconds the agent took to write it.
	// +optional
	DurationMilliseconds int64 `json:"durationMilliseconds,omitempty"`
}

// VirtualClusterSnapshotList is a list of VirtualClusterSnapshots.
//
// +kubebuilder:object:root=true
type VirtualClusterSnapshotList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []VirtualClusterSnapshot `json:"items"`
}

// Annotations on a VirtualCluster that start it from a snapshot. The value
// names a VirtualClusterSnapshot in the cluster's namespace, or a location
// (oci://…, an absolute file path). The agent removes the annotation once
// the data is in place; until then the cluster does not start.
const (
	// AnnotationRestoreFrom puts the cluster back to the snapshot, same
	// identity (CA, service-account key, UIDs).
	AnnotationRestoreFrom = "storage.loft.sh/restore-from"
	// AnnotationForkFrom starts a new cluster from the snapshot's objects
	// with a new identity: CA, service-account key and cluster ID.
	AnnotationForkFrom = "storage.loft.sh/fork-from"
	// AnnotationSnapshotSchedule is a cron schedule (5 fields, UTC) of
	// snapshots of the cluster; on a template it applies to its clusters.
	AnnotationSnapshotSchedule = "storage.loft.sh/snapshot-schedule"
	// AnnotationSnapshotKeep is how many scheduled snapshots are kept
	// (default 3); older ones are deleted.
	AnnotationSnapshotKeep = "storage.loft.sh/snapshot-keep"
	// AnnotationSeedFailed records, on a cluster with no data of its own,
	// the restore-from or fork-from value that failed: it is not tried
	// again until the annotation names another snapshot.
	AnnotationSeedFailed = "storage.loft.sh/seed-failed"
	// LabelScheduled marks a snapshot made by the schedule.
	LabelScheduled = "storage.loft.sh/scheduled"
	// AnnotationMovingTo names the connected cluster a move takes the
	// cluster to; with AnnotationMovingUntil (RFC 3339) still ahead, the
	// platform answers its requests 503 with Retry-After and does not wake
	// it, so nothing is written to it after the move's snapshot. The
	// moving CLI renews the time; once it passes (the CLI was stopped),
	// the cluster serves and wakes as before.
	AnnotationMovingTo    = "storage.loft.sh/moving-to"
	AnnotationMovingUntil = "storage.loft.sh/moving-until"
	// AnnotationMovedFrom and AnnotationMovedFromUID, on a cluster a move
	// made, name the connected cluster it came from and the UID it had
	// there: the platform then gives the keys scoped to that one to it.
	AnnotationMovedFrom    = "storage.loft.sh/moved-from"
	AnnotationMovedFromUID = "storage.loft.sh/moved-from-uid"
)

// Condition types of a VirtualCluster set by snapshots.
const (
	// ConditionRestored: the last restore or fork annotation was carried
	// out (True) or refused (False, with why).
	ConditionRestored = "Restored"
)

// SnapshotName is the i-th name (from 1) tried for a snapshot of virtual
// cluster vc taken at now: VC-YYYYMMDD-HHMMSS (UTC), then with -2, -3…
// when that second has one. The CLI and the UI name snapshots so.
func SnapshotName(vc string, now time.Time, i int) string {
	name := vc + "-" + now.UTC().Format("20060102-150405")
	if i > 1 {
		name = fmt.Sprintf("%s-%d", name, i)
	}
	return name
}

// SnapshotRef names snapshot name of namespace snapNS as seen from
// namespace ns: NAME in its own namespace, NAMESPACE/NAME from another.
func SnapshotRef(snapNS, name, ns string) string {
	if snapNS == ns {
		return name
	}
	return snapNS + "/" + name
}

// StartedFrom is a new VirtualCluster name in namespace ns whose annotation
// (AnnotationRestoreFrom or AnnotationForkFrom) is from, with the template
// and values of the cluster snap was taken of (snap may be nil: a
// location).
func StartedFrom(name, ns string, snap *VirtualClusterSnapshot, annotation, from string) *VirtualCluster {
	vc := &VirtualCluster{
		TypeMeta:   metav1.TypeMeta{APIVersion: GroupVersion.String(), Kind: "VirtualCluster"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: map[string]string{annotation: from}},
	}
	if snap != nil && snap.Status.SourceTemplate != "" {
		vc.Spec.TemplateRef = &TemplateRef{Name: snap.Status.SourceTemplate}
	}
	if snap != nil && snap.Status.SourceValues != "" {
		vc.Spec.HelmRelease = &VirtualClusterHelmRelease{Values: snap.Status.SourceValues}
	}
	return vc
}

// MovingTo is the cluster vc is being moved to, if a move holds it at now.
func MovingTo(vc *VirtualCluster, now time.Time) (string, bool) {
	to := vc.Annotations[AnnotationMovingTo]
	until, err := time.Parse(time.RFC3339, vc.Annotations[AnnotationMovingUntil])
	if to == "" || err != nil || !now.Before(until) {
		return "", false
	}
	return to, true
}
