package syncer

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/sublet-dev/sublet/internal/translate"
)

// hostMeta is the metadata of the host copy of v: translated name, labels
// and owner labels, the annotations of v that the base rule passes (no
// domain-prefixed key, which could steer a host controller), plus the owner
// annotations.
func hostMeta(t translate.Translator, v metav1.Object) metav1.ObjectMeta {
	m, _ := hostMetaAllowing(t, v)
	return m
}

// hostMetaAllowing is hostMeta with the annotations the pattern lists
// allow too; it returns the keys it dropped.
func hostMetaAllowing(t translate.Translator, v metav1.Object, allowed ...[]string) (metav1.ObjectMeta, []string) {
	return t.HostMeta(v, allowed...)
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

// ReasonRestricted is the event reason of what a syncer left out of a host
// copy, or the copy it did not make, because the virtual cluster's
// isolation does not allow it there.
const ReasonRestricted = "RestrictedByIsolation"

// restrictions are what a translation left out of a host copy, each with
// why and who may allow it.
type restrictions []string

func (r *restrictions) add(format string, args ...interface{}) {
	*r = append(*r, fmt.Sprintf(format, args...))
}

// annotations records dropped annotation keys and the setting that allows
// them.
func (r *restrictions) annotations(dropped []string, setting string) {
	if len(dropped) == 0 {
		return
	}
	allow := "an admin may allow them with " + setting
	if setting == "" {
		allow = "they could steer the host's controllers"
	}
	r.add("annotations %s (%s)", strings.Join(dropped, ", "), allow)
}

// tell records r as one Warning event on virtual object v, if r says
// anything; copied says whether the rest of v reached the host.
func (c *Context) tell(v runtime.Object, r restrictions, copied bool) {
	if len(r) == 0 {
		return
	}
	what := "left out of the host copy: "
	if !copied {
		what = "not copied to the host: "
	}
	c.event(v, corev1.EventTypeWarning, ReasonRestricted, what+strings.Join(r, "; "))
}
