package e2e

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// TestVClusterPersistentVolumeClaims: a virtual claim gets a host claim,
// the host binds it to a host volume, and Bound comes back.
func TestVClusterPersistentVolumeClaims(t *testing.T) {
	needHost(t)
	ctx := context.Background()
	hostNS := createNamespace(t, host.Client, "vc-pvc")
	class := hostNS + "-manual" // unique, so only this test's claim binds this volume
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: hostNS + "-pv"},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName:              class,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/tmp/" + hostNS}},
		},
	}
	if _, err := host.Client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = host.Client.CoreV1().PersistentVolumes().Delete(context.Background(), pv.Name, metav1.DeleteOptions{})
	})

	vc := startVCluster(t, "claims", hostNS)
	claim := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To(class),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
	if _, err := vc.Client.CoreV1().PersistentVolumeClaims("default").Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 60*time.Second, "virtual claim Bound", func(ctx context.Context) (bool, error) {
		v, err := vc.Client.CoreV1().PersistentVolumeClaims("default").Get(ctx, "data", metav1.GetOptions{})
		return err == nil && v.Status.Phase == corev1.ClaimBound, nil
	})
	h, err := host.Client.CoreV1().PersistentVolumeClaims(hostNS).Get(ctx, "data-x-default-x-claims", metav1.GetOptions{})
	if err != nil || h.Spec.VolumeName != pv.Name {
		t.Fatalf("host claim not bound to the host volume: %v %v", h, err)
	}

	if err := vc.Client.CoreV1().PersistentVolumeClaims("default").Delete(ctx, "data", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 60*time.Second, "host claim removed", func(ctx context.Context) (bool, error) {
		_, err := host.Client.CoreV1().PersistentVolumeClaims(hostNS).Get(ctx, "data-x-default-x-claims", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}
