package syncer

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/sublet-dev/sublet/internal/translate"
)

// pvcSyncer gives each virtual PersistentVolumeClaim a host claim, which the
// host's storage provisions and binds; binding status comes back.
type pvcSyncer struct{}

func pvcInformer(f informers.SharedInformerFactory) cache.SharedIndexInformer {
	return f.Core().V1().PersistentVolumeClaims().Informer()
}

func (pvcSyncer) ToHost(ctx context.Context, c *Context, v *corev1.PersistentVolumeClaim) error {
	if v.DeletionTimestamp != nil {
		return nil
	}
	h := hostPVC(c.Translator, v)
	_, err := c.Host.CoreV1().PersistentVolumeClaims(h.Namespace).Create(ctx, h, metav1.CreateOptions{})
	return c.created(err, v, "persistentvolumeclaim", h.Name)
}

func (pvcSyncer) Both(ctx context.Context, c *Context, v, h *corev1.PersistentVolumeClaim) error {
	if v.DeletionTimestamp != nil {
		if h.DeletionTimestamp == nil {
			return deleteOwned(c.Host.CoreV1().PersistentVolumeClaims(h.Namespace).Delete(ctx, h.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &h.UID}}))
		}
		return nil
	}
	want := hostPVC(c.Translator, v)
	if !apiequality.Semantic.DeepEqual(h.Labels, want.Labels) || !apiequality.Semantic.DeepEqual(h.Annotations, want.Annotations) ||
		!apiequality.Semantic.DeepEqual(h.Spec.Resources, want.Spec.Resources) {
		nh := h.DeepCopy()
		nh.Labels, nh.Annotations, nh.Spec.Resources = want.Labels, want.Annotations, want.Spec.Resources
		if _, err := c.Host.CoreV1().PersistentVolumeClaims(h.Namespace).Update(ctx, nh, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update host claim: %w", err)
		}
	}
	if !apiequality.Semantic.DeepEqual(v.Status, h.Status) {
		nv := v.DeepCopy()
		nv.Status = *h.Status.DeepCopy()
		if _, err := c.Virtual.CoreV1().PersistentVolumeClaims(v.Namespace).UpdateStatus(ctx, nv, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("copy claim status: %w", err)
		}
	}
	return nil
}

func (pvcSyncer) ToVirtual(ctx context.Context, c *Context, h *corev1.PersistentVolumeClaim) error {
	if h.DeletionTimestamp != nil {
		return nil
	}
	return deleteOwned(c.Host.CoreV1().PersistentVolumeClaims(h.Namespace).Delete(ctx, h.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &h.UID}}))
}

// hostPVC translates a virtual claim. Virtual volume names mean nothing on
// the host; a data source that is another claim is translated, any other
// kind (snapshots) is dropped until snapshots are synced.
func hostPVC(t translate.Translator, v *corev1.PersistentVolumeClaim) *corev1.PersistentVolumeClaim {
	h := &corev1.PersistentVolumeClaim{ObjectMeta: hostMeta(t, v), Spec: *v.Spec.DeepCopy()}
	h.Spec.VolumeName = ""
	h.Spec.Selector = nil
	if ds := h.Spec.DataSource; ds != nil && ds.Kind == "PersistentVolumeClaim" && (ds.APIGroup == nil || *ds.APIGroup == "") {
		ds.Name = t.HostName(v.Namespace, ds.Name)
		h.Spec.DataSourceRef = &corev1.TypedObjectReference{Kind: ds.Kind, Name: ds.Name}
	} else {
		h.Spec.DataSource, h.Spec.DataSourceRef = nil, nil
	}
	return h
}
