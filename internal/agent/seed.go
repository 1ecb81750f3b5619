package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/controlplane"
	"github.com/sublet-dev/sublet/internal/kubeversion"
	"github.com/sublet-dev/sublet/internal/snapshot"
)

// seedRequest is a restore-from or fork-from annotation.
type seedRequest struct {
	fork bool
	from string
}

func (q seedRequest) verb() string {
	if q.fork {
		return "fork"
	}
	return "restore"
}

// seedRequested reads vc's restore-from and fork-from annotations.
func seedRequested(vc *storagev1.VirtualCluster) (seedRequest, error) {
	restore, fork := vc.Annotations[storagev1.AnnotationRestoreFrom], vc.Annotations[storagev1.AnnotationForkFrom]
	if restore != "" && fork != "" {
		return seedRequest{}, fmt.Errorf("both %s and %s are set; keep one", storagev1.AnnotationRestoreFrom, storagev1.AnnotationForkFrom)
	}
	if fork != "" {
		return seedRequest{fork: true, from: fork}, nil
	}
	return seedRequest{from: restore}, nil
}

// seed carries out vc's restore-from or fork-from annotation before its
// runtime is ensured; it reports whether vc may go on to run. A cluster
// that already has data keeps it, and runs, when the snapshot cannot be
// used; a new one stays Failed, so no empty cluster takes its place.
func (r *reconciler) seed(ctx context.Context, vc *storagev1.VirtualCluster) (bool, error) {
	q, err := seedRequested(vc)
	if err != nil {
		r.setCondition(vc, storagev1.ConditionRestored, false, "InvalidRequest", err.Error())
		r.setPhase(vc, storagev1.PhaseFailed, "InvalidRequest", err.Error())
		return false, nil
	}
	if q.from == "" || r.snaps == nil {
		return true, nil
	}
	if vc.Annotations[storagev1.AnnotationSeedFailed] == q.from {
		return false, nil // failed before; the status says why
	}
	// A cluster that ran only to take the snapshot's data has none of its
	// own to keep serving.
	hasData := r.hasData(ctx, vc) && !waitedToRun(vc)
	reason, err := r.snaps.seed(ctx, vc, q)
	if errors.Is(err, errNotRunning) {
		// It starts first; report holds it out of Ready meanwhile.
		r.setCondition(vc, storagev1.ConditionRestored, false, reasonWaitingToRun, fmt.Sprintf("the %s from %s waits for the virtual cluster to run", q.verb(), q.from))
		return true, nil
	}
	if err != nil {
		msg := fmt.Sprintf("%s from %s failed: %v", q.verb(), q.from, err)
		r.setCondition(vc, storagev1.ConditionRestored, false, reason, msg)
		r.recorder.Eventf(vc, nil, corev1.EventTypeWarning, reason, "Restore", "%s", msg)
		if hasData {
			// The cluster keeps serving what it had.
			return true, r.settle(ctx, vc, map[string]*string{annotationOf(q): nil})
		}
		r.setPhase(vc, storagev1.PhaseFailed, reason, msg+"; delete this virtual cluster and try again with another snapshot")
		return false, r.settle(ctx, vc, map[string]*string{storagev1.AnnotationSeedFailed: ptr.To(q.from)})
	}
	msg := fmt.Sprintf("restored from %s", q.from)
	reason = "Restored"
	if q.fork {
		msg, reason = fmt.Sprintf("forked from %s with a new identity", q.from), "Forked"
	}
	r.setCondition(vc, storagev1.ConditionRestored, true, reason, msg)
	r.recorder.Eventf(vc, nil, corev1.EventTypeNormal, reason, "Restore", "%s", msg)
	return true, r.settle(ctx, vc, map[string]*string{annotationOf(q): nil, storagev1.AnnotationSeedFailed: nil})
}

// settle writes vc's status, then its annotations set: a client that sees
// the restore-from or fork-from annotation go finds the Restored condition
// that says how it went already written.
func (r *reconciler) settle(ctx context.Context, vc *storagev1.VirtualCluster, set map[string]*string) error {
	if err := r.client.Status().Update(ctx, vc); err != nil {
		return fmt.Errorf("write the restore's condition: %w", err)
	}
	return r.annotate(ctx, vc, set)
}

func annotationOf(q seedRequest) string {
	if q.fork {
		return storagev1.AnnotationForkFrom
	}
	return storagev1.AnnotationRestoreFrom
}

// hasData reports whether vc has data of its own, if its runtime keeps
// data the agent reads.
func (r *reconciler) hasData(ctx context.Context, vc *storagev1.VirtualCluster) bool {
	dr, ok := r.runtime.(dataRuntime)
	return ok && dr.HasData(ctx, vc)
}

// reasonWaitingToRun: the Restored condition of a cluster that runs
// before its runtime takes a snapshot's data (errNotRunning).
const reasonWaitingToRun = "WaitingToRun"

// waitedToRun reports whether vc started only to take a snapshot's data.
func waitedToRun(vc *storagev1.VirtualCluster) bool {
	c := meta.FindStatusCondition(vc.Status.Conditions, storagev1.ConditionRestored)
	return c != nil && c.Reason == reasonWaitingToRun
}

// seedPending reports whether vc waits for a restore or fork its runtime
// carries out only once it runs.
func seedPending(vc *storagev1.VirtualCluster) (seedRequest, bool) {
	q, err := seedRequested(vc)
	return q, err == nil && q.from != "" && vc.Annotations[storagev1.AnnotationSeedFailed] != q.from
}

// seed prepares a data dir from q's snapshot and puts it in place of vc's:
// the snapshot is read and checked in full before vc is stopped.
func (s *snapshots) seed(ctx context.Context, vc *storagev1.VirtualCluster, q seedRequest) (string, error) {
	dr, ok := s.runtime.(dataRuntime)
	if !ok {
		return "RuntimeUnsupported", fmt.Errorf("the %s runtime cannot restore snapshots", s.runtime.Name())
	}
	loc, owner, err := s.source(ctx, vc.Namespace, q.from)
	if err != nil {
		return "SnapshotNotFound", err
	}
	keys, err := s.keys(ctx)
	if err != nil {
		return "NoKey", err
	}
	stage, err := dr.StageDir(ctx, vc)
	if err != nil {
		return "StageFailed", err
	}
	defer os.RemoveAll(stage) // gone by rename when all went well
	ctx, cancel := context.WithTimeout(ctx, operationTimeout)
	defer cancel()
	m, err := extract(ctx, loc, keys, stage, s.limits)
	switch {
	case errors.Is(err, snapshot.ErrKeyMismatch):
		return "KeyMismatch", err
	case errors.Is(err, snapshot.ErrTooLarge):
		return "SnapshotTooLarge", err
	case err != nil:
		return "InvalidSnapshot", err
	}
	if reason, err := fits(m, owner); err != nil {
		return reason, err
	}
	if err := checkLayout(stage, m.Datastore); err != nil {
		return "InvalidSnapshot", fmt.Errorf("the snapshot is not a data dir Sublet wrote: %w", err)
	}
	if m.Datastore == controlplane.DatastoreEtcd {
		file := filepath.Join(stage, controlplane.EtcdSnapshotFile)
		if err := controlplane.RestoreEtcd(ctx, file, stage); err != nil {
			return "InvalidSnapshot", fmt.Errorf("restore its etcd datastore: %w", err)
		}
		if err := os.Remove(file); err != nil {
			return "StageFailed", err
		}
	}
	if q.fork {
		if err := os.RemoveAll(filepath.Join(stage, "pki")); err != nil {
			return "StageFailed", err
		}
		id, err := controlplane.Reidentify(ctx, stage)
		if err != nil {
			return "ReidentifyFailed", fmt.Errorf("give the fork a new identity: %w", err)
		}
		s.log.Info("forked a virtual cluster", "virtualcluster", klog.KObj(vc), "from", q.from, "clusterID", id)
	}
	if err := dr.ReplaceData(ctx, vc, stage); err != nil {
		return "ReplaceFailed", err
	}
	return "", nil
}

// extract reads the snapshot at loc into stage, with the key of keys its
// manifest names (read first: the platform may have had several), within
// limits lim.
func extract(ctx context.Context, loc snapshot.Location, keys *snapshot.Keyring, stage string, lim snapshot.Limits) (snapshot.Manifest, error) {
	rc, err := snapshot.Open(ctx, loc)
	if err != nil {
		return snapshot.Manifest{}, err
	}
	m, err := snapshot.ReadManifest(rc)
	rc.Close()
	if err != nil {
		return m, err
	}
	if rc, err = snapshot.Open(ctx, loc); err != nil {
		return snapshot.Manifest{}, err
	}
	defer rc.Close()
	return snapshot.ExtractWithin(rc, keys.For(m.Recipient), stage, lim)
}

// fits refuses a snapshot whose sealed manifest says it is of a cluster
// of another namespace than owner's (the namespace whose snapshot object
// named it, whose reading the admission policy checked) or of a Kubernetes
// version newer than this build runs.
func fits(m snapshot.Manifest, owner string) (string, error) {
	if m.Source.Namespace != owner {
		return "ForeignSnapshot", fmt.Errorf("the snapshot is of %s/%s, not of a cluster of namespace %s: name it by its VirtualClusterSnapshot (NAMESPACE/NAME)", m.Source.Namespace, m.Source.Name, owner)
	}
	if m.KubernetesVersion == "" {
		return "", nil
	}
	minor, err := kubeversion.Minor(m.KubernetesVersion)
	if err != nil {
		return "InvalidSnapshot", err
	}
	if _, newest := kubeversion.Range(); minor > newest {
		return "VersionTooNew", fmt.Errorf("the snapshot is of Kubernetes %s, newer than this Sublet runs (1.%d at most); restore it with a newer Sublet", m.KubernetesVersion, newest)
	}
	return "", nil
}

// source is the location from names and the namespace whose snapshots it
// may hold: a completed VirtualClusterSnapshot (NAME in namespace ns, or
// NAMESPACE/NAME), or a location namespace ns may read.
func (s *snapshots) source(ctx context.Context, ns, from string) (snapshot.Location, string, error) {
	if strings.Contains(from, ":") || strings.HasPrefix(from, "/") {
		loc, err := snapshot.ParseLocation(from)
		if err != nil {
			return loc, "", err
		}
		return loc, ns, s.allowed(ns, loc)
	}
	owner, name := ns, from
	if i := strings.IndexByte(from, '/'); i >= 0 {
		owner, name = from[:i], from[i+1:]
	}
	snap := &storagev1.VirtualClusterSnapshot{}
	if err := s.client.Get(ctx, types.NamespacedName{Namespace: owner, Name: name}, snap); err != nil {
		if apierrors.IsNotFound(err) {
			return snapshot.Location{}, "", fmt.Errorf("snapshot %s does not exist in namespace %s (sublet list snapshots)", name, owner)
		}
		return snapshot.Location{}, "", err
	}
	if snap.Status.Phase != storagev1.SnapshotCompleted {
		return snapshot.Location{}, "", fmt.Errorf("snapshot %s/%s is %s, not Completed: %s", owner, name, snap.Status.Phase, snap.Status.Message)
	}
	loc, err := snapshot.ParseLocation(snap.Status.Location)
	if err != nil {
		return loc, "", err
	}
	return loc, owner, s.allowed(owner, loc)
}
