package agent

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/kubernetes"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/syncer/kinds"
	"github.com/sublet-dev/sublet/internal/values"
)

// Reasons of condition HostKindsServed when the host cannot serve a kind
// the cluster syncs through a CRD.
const (
	// ReasonHostLacksKind: the host has no CRD of a kind.
	ReasonHostLacksKind = "HostLacksKind"
	// ReasonCustomResourceRefused: a custom resource row does not fit the
	// host's CRD (its scope).
	ReasonCustomResourceRefused = "CustomResourceRefused"
)

// checkHostKinds sets condition HostKindsServed from whether the host
// serves each kind the cluster syncs through a CRD (the Gateway API's
// routes and classes, custom resource rows) as it needs: the CRD exists,
// and a row's scope fits its direction. The syncer decides the same by
// itself (and says so in the virtual cluster); this is the platform's
// view of it, with an event when it changes.
func (r *reconciler) checkHostKinds(ctx context.Context, vc *storagev1.VirtualCluster, eff *values.Effective) {
	selected := eff.Selection()
	var lacking, problems []string
	reason := ReasonHostLacksKind
	for _, k := range kinds.All() {
		if k.CRD == "" || !selected[k.Name] {
			continue
		}
		if _, ok, err := r.crds.get(ctx, r.host, k.CRD, r.clock()); err == nil && !ok {
			lacking = append(lacking, k.Name)
		}
	}
	if len(lacking) > 0 {
		problems = append(problems, fmt.Sprintf("the host cluster does not serve %s, so they are not synced; a host admin installs "+
			"their CRDs (the Gateway API's standard channel), or they are turned off with sync.NAME.enabled: false",
			strings.Join(lacking, ", ")))
	}
	for _, row := range eff.Values.CustomResources() {
		crd, ok, err := r.crds.get(ctx, r.host, row.CRD, r.clock())
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
				reason = ReasonCustomResourceRefused
			}
		}
	}
	if len(problems) == 0 {
		if hasCRDKinds(selected, eff) {
			r.setCondition(vc, storagev1.ConditionHostKindsServed, true, "Served", "the host serves every kind this cluster syncs through a CRD")
		} else {
			meta.RemoveStatusCondition(&vc.Status.Conditions, storagev1.ConditionHostKindsServed)
		}
		return
	}
	msg := strings.Join(problems, "; ")
	if r.setCondition(vc, storagev1.ConditionHostKindsServed, false, reason, msg) {
		r.recorder.Eventf(vc, nil, corev1.EventTypeWarning, reason, "Sync", msg)
	}
}

// hasCRDKinds reports whether the cluster syncs any kind through a CRD.
func hasCRDKinds(selected map[string]bool, eff *values.Effective) bool {
	for _, k := range kinds.All() {
		if k.CRD != "" && selected[k.Name] {
			return true
		}
	}
	return len(eff.Values.CustomResources()) > 0
}

// crdCache keeps the host's CRDs read for the condition for crdCacheFor:
// the reconciler runs every superviseEvery for every cluster.
type crdCache struct {
	mu sync.Mutex
	m  map[string]crdLookup
}

type crdLookup struct {
	crd *apiextensionsv1.CustomResourceDefinition
	ok  bool
	err error
	at  time.Time
}

const crdCacheFor = time.Minute

// get is hostCRD, at most crdCacheFor old.
func (c *crdCache) get(ctx context.Context, host kubernetes.Interface, name string, now time.Time) (*apiextensionsv1.CustomResourceDefinition, bool, error) {
	c.mu.Lock()
	l, hit := c.m[name]
	c.mu.Unlock()
	if hit && now.Sub(l.at) < crdCacheFor {
		return l.crd, l.ok, l.err
	}
	crd, ok, err := hostCRD(ctx, host, name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]crdLookup{}
	}
	c.m[name] = crdLookup{crd: crd, ok: ok, err: err, at: now}
	return crd, ok, err
}
