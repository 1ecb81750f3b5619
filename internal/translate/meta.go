package translate

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sublet-dev/sublet/internal/isolation"
)

// HostMeta is the metadata of v's host copy: translated name, labels and
// owner labels, the annotations the base rule and the allowed patterns
// pass (see isolation.FilterAnnotations), and the owner annotations; it
// returns the annotation keys it dropped.
func (t Translator) HostMeta(v metav1.Object, allowed ...[]string) (metav1.ObjectMeta, []string) {
	annotations, dropped := isolation.FilterAnnotations(v.GetAnnotations(), allowed...)
	m := metav1.ObjectMeta{
		Name:        t.HostName(v.GetNamespace(), v.GetName()),
		Namespace:   t.HostNamespace,
		Labels:      t.HostLabels(v.GetNamespace(), v.GetLabels()),
		Annotations: annotations,
	}
	for k, val := range OwnerAnnotations(v) {
		m.Annotations[k] = val
	}
	return m, dropped
}
