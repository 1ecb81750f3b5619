package translate

import (
	corev1 "k8s.io/api/core/v1"
)

// HostPVC translates a virtual claim. Virtual volume names mean nothing on
// the host; a data source that is another claim is translated, any other
// kind (snapshots) is dropped until snapshots are synced.
func (t Translator) HostPVC(v *corev1.PersistentVolumeClaim) *corev1.PersistentVolumeClaim {
	meta, _ := t.HostMeta(v)
	h := &corev1.PersistentVolumeClaim{ObjectMeta: meta, Spec: *v.Spec.DeepCopy()}
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
