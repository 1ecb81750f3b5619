package translate

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Ownership labels and annotations on every host object a virtual cluster
// owns. The labels select; the annotations record the virtual object exactly.
const (
	// LabelCopyOf names the virtual cluster whose copy a host object is.
	// Its key predates the name; it is not app.kubernetes.io/managed-by
	// (storagev1.LabelManagedBy), which names the component that made an
	// object.
	LabelCopyOf          = "sublet.dev/managed-by"
	LabelVirtualNS       = "sublet.dev/virtual-namespace"
	AnnotationObjectName = "sublet.dev/object-name"
	// LabelFromHost marks a virtual object as the syncer's copy of the
	// host's object of the same name (the host's classes).
	LabelFromHost = "sublet.dev/from-host"
	// LabelReturnedTo names the virtual cluster a host Secret written by a
	// host controller for its custom object is returned to (the syncer
	// sets it when it first copies the Secret back; the agent deletes such
	// Secrets with the cluster).
	LabelReturnedTo     = "sublet.dev/returned-to"
	AnnotationObjectNS  = "sublet.dev/object-namespace"
	AnnotationObjectUID = "sublet.dev/object-uid"

	// labelKeyPrefix prefixes every translated virtual label key, so no
	// tenant label ever equals a label the host's own selectors use.
	labelKeyPrefix = "vl.sublet.dev/"
	labelHashLen   = 8
	maxLabelName   = 63
)

// LabelKey translates a virtual label key into the host key that carries its
// value: vl.sublet.dev/<readable part>-<hash of the key>.
func LabelKey(vKey string) string {
	sum := sha256.Sum256([]byte(vKey))
	hash := hex.EncodeToString(sum[:])[:labelHashLen]
	readable := strings.NewReplacer("/", ".").Replace(vKey)
	if max := maxLabelName - labelHashLen - 1; len(readable) > max {
		readable = readable[:max]
	}
	readable = strings.TrimRight(readable, "-._")
	return labelKeyPrefix + readable + "-" + hash
}

// OwnerLabels are the labels that mark a host object as this virtual
// cluster's copy of an object in vNamespace ("" for cluster-scoped ones).
func (t Translator) OwnerLabels(vNamespace string) map[string]string {
	l := map[string]string{LabelCopyOf: t.VCluster}
	if vNamespace != "" {
		l[LabelVirtualNS] = vNamespace
	}
	return l
}

// HostLabels returns the labels of the host copy of an object in vNamespace
// with virtual labels vLabels: each key translated, plus the owner labels.
func (t Translator) HostLabels(vNamespace string, vLabels map[string]string) map[string]string {
	out := t.OwnerLabels(vNamespace)
	for k, v := range vLabels {
		out[LabelKey(k)] = v
	}
	return out
}

// HostSelector translates a virtual equality selector (a Service's) so it
// matches exactly the host copies of the virtual objects it matches: same
// translated labels, same virtual cluster, same virtual namespace. A nil or
// empty selector stays nil: such services select nothing by label.
func (t Translator) HostSelector(vNamespace string, sel map[string]string) map[string]string {
	if len(sel) == 0 {
		return nil
	}
	return t.HostLabels(vNamespace, sel)
}

// HostLabelSelector translates a virtual label selector the same way.
func (t Translator) HostLabelSelector(vNamespace string, sel *metav1.LabelSelector) *metav1.LabelSelector {
	if sel == nil {
		return nil
	}
	out := &metav1.LabelSelector{MatchLabels: t.HostLabels(vNamespace, sel.MatchLabels)}
	for _, r := range sel.MatchExpressions {
		r.Key = LabelKey(r.Key)
		r.Values = append([]string(nil), r.Values...)
		out.MatchExpressions = append(out.MatchExpressions, r)
	}
	return out
}

// OwnerAnnotations record which virtual object a host object copies.
func OwnerAnnotations(vObj metav1.Object) map[string]string {
	return map[string]string{
		AnnotationObjectName: vObj.GetName(),
		AnnotationObjectNS:   vObj.GetNamespace(),
		AnnotationObjectUID:  string(vObj.GetUID()),
	}
}

// Owns reports whether host object h is this virtual cluster's copy of a
// virtual object. The owner annotation is required besides the labels:
// host controllers copy a service's labels onto the Endpoints and
// EndpointSlices they make, which are not copies.
func (t Translator) Owns(h metav1.Object) bool {
	_, named := h.GetAnnotations()[AnnotationObjectName]
	return named && h.GetLabels()[LabelCopyOf] == t.VCluster && h.GetNamespace() == t.HostNamespace
}

// VirtualKey returns the virtual namespace and name a host object copies, as
// recorded in its annotations, and false if it records none.
func VirtualKey(h metav1.Object) (namespace, name string, ok bool) {
	a := h.GetAnnotations()
	name, ok = a[AnnotationObjectName]
	return a[AnnotationObjectNS], name, ok
}
