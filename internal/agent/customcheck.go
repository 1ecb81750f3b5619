package agent

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/syncer/kinds"
)

// ReasonCustomResourceRefused is the reason of condition
// CustomResourcesServed when a row does not fit the host (its CRD missing,
// or of the wrong scope).
const ReasonCustomResourceRefused = "CustomResourceRefused"

// checkCustomRows sets condition CustomResourcesServed from whether the
// host serves each custom resource row as the row needs: the CRD exists,
// and its scope fits the direction. The syncer decides the same by itself
// (and says so in the virtual cluster); this is the platform's view of it,
// with an event when it changes. A cluster with no rows has no condition.
func (r *reconciler) checkCustomRows(ctx context.Context, vc *storagev1.VirtualCluster, rows []kinds.Custom) {
	if len(rows) == 0 {
		meta.RemoveStatusCondition(&vc.Status.Conditions, storagev1.ConditionCustomResourcesServed)
		return
	}
	var problems []string
	for _, row := range rows {
		crd, ok, err := hostCRD(ctx, r.host, row.CRD)
		switch {
		case apierrors.IsForbidden(err):
			problems = append(problems, fmt.Sprintf("%s: the agent may not read the host's CRD %s (the platform chart's agent.customResources grants it)",
				row.ValuesPath(), row.CRD))
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: reading the host's CRD %s: %v", row.ValuesPath(), row.CRD, err))
		case !ok:
			problems = append(problems, fmt.Sprintf("%s: the host cluster has no CRD %s, so nothing of it is synced; a host admin installs it, "+
				"or the row is turned off with %s", row.ValuesPath(), row.CRD, row.Row().OffValue()))
		default:
			if err := row.Row().FitsScope(string(crd.Spec.Scope)); err != nil {
				problems = append(problems, err.Error())
			}
		}
	}
	if len(problems) == 0 {
		r.setCondition(vc, storagev1.ConditionCustomResourcesServed, true, "Served", "the host serves every custom resource row")
		return
	}
	msg := strings.Join(problems, "; ")
	if r.setCondition(vc, storagev1.ConditionCustomResourcesServed, false, ReasonCustomResourceRefused, msg) {
		r.recorder.Eventf(vc, nil, corev1.EventTypeWarning, ReasonCustomResourceRefused, "Sync", msg)
	}
}
