package translate

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestHostPVC(t *testing.T) {
	tr := Translator{VCluster: "demo", HostNamespace: "host-ns"}
	v := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "team"},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: ptr.To("fast"),
			VolumeName:       "pv-in-virtual",
			DataSource:       &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "seed"},
		},
	}
	h := tr.HostPVC(v)
	if h.Name != "data-x-team-x-demo" || h.Namespace != "host-ns" {
		t.Errorf("host claim %s/%s", h.Namespace, h.Name)
	}
	if h.Spec.VolumeName != "" {
		t.Error("virtual volume name carried to the host")
	}
	if *h.Spec.StorageClassName != "fast" {
		t.Error("storage class not kept")
	}
	if h.Spec.DataSource.Name != "seed-x-team-x-demo" || h.Spec.DataSourceRef.Name != "seed-x-team-x-demo" {
		t.Errorf("data source not translated: %+v %+v", h.Spec.DataSource, h.Spec.DataSourceRef)
	}
	v.Spec.DataSource = &corev1.TypedLocalObjectReference{APIGroup: ptr.To("snapshot.storage.k8s.io"), Kind: "VolumeSnapshot", Name: "snap"}
	if h := tr.HostPVC(v); h.Spec.DataSource != nil || h.Spec.DataSourceRef != nil {
		t.Error("a snapshot data source must be dropped until snapshots are synced")
	}
	if v.Spec.VolumeName != "pv-in-virtual" {
		t.Error("HostPVC modified the virtual claim")
	}
}
