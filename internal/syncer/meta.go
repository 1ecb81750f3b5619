package syncer

import (
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sublet-dev/sublet/internal/translate"
)

// hostMeta is the metadata of the host copy of v: translated name, labels
// and owner labels, v's annotations plus the owner annotations.
func hostMeta(t translate.Translator, v metav1.Object) metav1.ObjectMeta {
	m := metav1.ObjectMeta{
		Name:        t.HostName(v.GetNamespace(), v.GetName()),
		Namespace:   t.HostNamespace,
		Labels:      t.HostLabels(v.GetNamespace(), v.GetLabels()),
		Annotations: map[string]string{},
	}
	for k, val := range v.GetAnnotations() {
		m.Annotations[k] = val
	}
	for k, val := range translate.OwnerAnnotations(v) {
		m.Annotations[k] = val
	}
	return m
}

// deleteOwned filters the result of a delete guarded by a UID precondition:
// gone already, or replaced by a newer object (whose own event follows), is
// success.
func deleteOwned(err error) error {
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}
