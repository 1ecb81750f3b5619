package agent

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/snapshot"
)

// snapshotFinalizer keeps a VirtualClusterSnapshot until its file is gone.
const snapshotFinalizer = "storage.loft.sh/snapshot-cleanup"

// operationTimeout bounds writing or reading one snapshot.
const operationTimeout = 30 * time.Minute

// snapshots takes the snapshots VirtualClusterSnapshot objects ask for and
// reads them back for restores and forks. Where snapshots may go is the
// host admin's: files only under dir/NAMESPACE, OCI repositories only
// under one of registries followed by /NAMESPACE, so a team can neither
// write over nor read another's.
type snapshots struct {
	client    client.Client
	host      kubernetes.Interface
	runtime   Runtime
	recorder  events.EventRecorder
	log       klog.Logger
	dir       string
	keySecret string // namespace of the key's Secret
	// registries are the OCI repository prefixes snapshots may use.
	registries []string
	clock      func() time.Time
	// minInterval: the shortest time between scheduled snapshots; limits:
	// the most a snapshot may hold.
	minInterval time.Duration
	limits      snapshot.Limits
}

// keys reads the platform's snapshot keys, making the first on first use.
// They are read each time: the platform server may share another.
func (s *snapshots) keys(ctx context.Context) (*snapshot.Keyring, error) {
	return snapshot.LoadKeyring(ctx, s.host, s.keySecret)
}

func (s *snapshots) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	snap := &storagev1.VirtualClusterSnapshot{}
	if err := s.client.Get(ctx, req.NamespacedName, snap); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !snap.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, s.finalize(ctx, snap)
	}
	switch snap.Status.Phase {
	case storagev1.SnapshotCompleted, storagev1.SnapshotFailed:
		return ctrl.Result{}, nil
	}
	if controllerutil.AddFinalizer(snap, snapshotFinalizer) {
		if err := s.client.Update(ctx, snap); err != nil {
			return ctrl.Result{}, err
		}
	}
	// A snapshot left InProgress by an agent that stopped is taken again
	// from the start: nothing of it was published.
	now := metav1.NewTime(s.clock())
	snap.Status.Phase, snap.Status.Reason, snap.Status.Message = storagev1.SnapshotInProgress, "Writing", "writing the snapshot"
	snap.Status.StartTime = &now
	if err := s.client.Status().Update(ctx, snap); err != nil {
		return ctrl.Result{}, err
	}
	reason, err := s.take(ctx, snap)
	if err != nil {
		snap.Status.Phase, snap.Status.Reason, snap.Status.Message = storagev1.SnapshotFailed, reason, err.Error()
		s.recorder.Eventf(snap, nil, corev1.EventTypeWarning, reason, "Snapshot", "%s", err.Error())
	}
	return ctrl.Result{}, s.client.Status().Update(ctx, snap)
}

// take writes snap's snapshot and fills its status; on failure it returns
// a reason and an error that says what to do.
func (s *snapshots) take(ctx context.Context, snap *storagev1.VirtualClusterSnapshot) (string, error) {
	vc := &storagev1.VirtualCluster{}
	if err := s.client.Get(ctx, types.NamespacedName{Namespace: snap.Namespace, Name: snap.Spec.VirtualCluster}, vc); err != nil {
		if apierrors.IsNotFound(err) {
			return "SourceNotFound", fmt.Errorf("virtual cluster %s does not exist in namespace %s", snap.Spec.VirtualCluster, snap.Namespace)
		}
		return "SourceUnreadable", err
	}
	loc, err := s.location(snap.Namespace, snap.Name, snap.Spec.Location)
	if err != nil {
		return "InvalidLocation", err
	}
	dr, ok := s.runtime.(dataRuntime)
	if !ok {
		return "RuntimeUnsupported", fmt.Errorf("the %s runtime cannot take snapshots", s.runtime.Name())
	}
	if !dr.HasData(ctx, vc) {
		return "NoData", fmt.Errorf("virtual cluster %s/%s has no data yet (it never started)", vc.Namespace, vc.Name)
	}
	keys, err := s.keys(ctx)
	if err != nil {
		return "NoKey", err
	}
	start := s.clock()
	ctx, cancel := context.WithTimeout(ctx, operationTimeout)
	defer cancel()
	m, digest, size, err := s.write(ctx, vc, snap.Name, dr, keys.Current, loc)
	if err != nil {
		return "WriteFailed", err
	}
	done := metav1.NewTime(s.clock())
	snap.Status = storagev1.VirtualClusterSnapshotStatus{
		Phase: storagev1.SnapshotCompleted, Reason: "Completed", StartTime: snap.Status.StartTime, CompletionTime: &done,
		Message:  fmt.Sprintf("snapshot of %s written to %s", vc.Name, loc),
		Location: loc.String(), Digest: digest, Size: size, KubernetesVersion: m.KubernetesVersion, Datastore: m.Datastore,
		SourceUID: string(vc.UID), SourceSleeping: m.Sleeping, DurationMilliseconds: done.Sub(start).Milliseconds(),
		SourceTemplate: m.Template, SourceValues: m.OwnValues,
	}
	s.recorder.Eventf(vc, nil, corev1.EventTypeNormal, "Snapshotted", "Snapshot", "snapshot %s written to %s (%d bytes)", snap.Name, loc, size)
	return "", nil
}

// write takes the snapshot of vc's data, which dr copies out, and stores
// it at loc.
func (s *snapshots) write(ctx context.Context, vc *storagev1.VirtualCluster, name string, dr dataRuntime, key *snapshot.Key, loc snapshot.Location) (snapshot.Manifest, string, int64, error) {
	tmp, err := s.tempDir()
	if err != nil {
		return snapshot.Manifest{}, "", 0, err
	}
	defer os.RemoveAll(tmp)
	stage := filepath.Join(tmp, "data")
	datastore, err := dr.CopyOut(ctx, vc, stage, s.limits)
	if err != nil {
		return snapshot.Manifest{}, "", 0, err
	}
	if n, err := dirSize(stage); err != nil || n > s.limits.Bytes {
		return snapshot.Manifest{}, "", 0, cmp.Or(err, fmt.Errorf("the cluster's data is %d bytes, over this agent's --snapshot-max-size of %d: no agent with that limit could restore it", n, s.limits.Bytes))
	}
	m := snapshot.Manifest{
		Name:   name,
		Source: snapshot.Source{Namespace: vc.Namespace, Name: vc.Name, UID: string(vc.UID)},
		// Whole seconds: the manifest's time round-trips through JSON.
		Created:           s.clock().UTC().Truncate(time.Second),
		KubernetesVersion: vc.Status.KubernetesVersion,
		Datastore:         datastore,
		Values:            vc.Status.EffectiveValues,
		Template:          templateName(vc),
		Sleeping:          vc.Status.Phase == storagev1.PhaseSleeping,
	}
	if vc.Spec.HelmRelease != nil {
		m.OwnValues = vc.Spec.HelmRelease.Values
	}
	archive := filepath.Join(tmp, "archive")
	f, err := os.Create(archive)
	if err != nil {
		return m, "", 0, err
	}
	m, err = snapshot.Write(f, m, key, stage)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return m, "", 0, err
	}
	digest, size, err := snapshot.Store(ctx, archive, loc)
	return m, digest, size, err
}

// tempDir is a new directory for one snapshot's work, under dir so its
// archive can be renamed into place.
func (s *snapshots) tempDir() (string, error) {
	base := filepath.Join(s.dir, ".work")
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", err
	}
	return os.MkdirTemp(base, "snap-")
}

// location is where snapshot name of namespace ns goes: spec, or a file
// under the snapshot dir; one the namespace may not use is an error.
func (s *snapshots) location(ns, name, spec string) (snapshot.Location, error) {
	if spec == "" {
		return snapshot.ParseLocation(filepath.Join(s.dir, ns, name+".snapshot"))
	}
	loc, err := snapshot.ParseLocation(spec)
	if err != nil {
		return loc, err
	}
	return loc, s.allowed(ns, loc)
}

// allowed checks that namespace ns may use loc: a file under the snapshot
// dir's directory of ns, or an OCI repository under an allowed prefix's
// directory of ns.
func (s *snapshots) allowed(ns string, loc snapshot.Location) error {
	if loc.File != "" {
		own := filepath.Join(s.dir, ns)
		if rel, err := filepath.Rel(own, filepath.Clean(loc.File)); err != nil || rel == "." || strings.HasPrefix(rel, "..") {
			return fmt.Errorf("snapshot file %s is outside %s: the snapshots of namespace %s are kept there (leave the location empty for the default)", loc.File, own+"/", ns)
		}
		return nil
	}
	repo := loc.Ref.Context().Name()
	for _, p := range s.registries {
		p = strings.TrimSuffix(p, "/")
		if repo == p+"/"+ns || strings.HasPrefix(repo, p+"/"+ns+"/") {
			return nil
		}
	}
	if len(s.registries) == 0 {
		return fmt.Errorf("OCI snapshot locations are off on this host cluster: its admin lists the repositories snapshots may use with the agent's --snapshot-registries")
	}
	return fmt.Errorf("OCI repository %s is not one snapshots of namespace %s may use: use oci://PREFIX/%s/NAME:TAG with PREFIX one of %s", repo, ns, ns, strings.Join(s.registries, ", "))
}

// finalize deletes a snapshot's file (an OCI artifact stays: registries
// decide how their artifacts go) and lets the object go.
func (s *snapshots) finalize(ctx context.Context, snap *storagev1.VirtualClusterSnapshot) error {
	if !controllerutil.ContainsFinalizer(snap, snapshotFinalizer) {
		return nil
	}
	if snap.Status.Location != "" {
		loc, err := snapshot.ParseLocation(snap.Status.Location)
		if err == nil && loc.File != "" && s.allowed(snap.Namespace, loc) == nil {
			if err := snapshot.Remove(loc); err != nil {
				return fmt.Errorf("delete snapshot file %s: %w", loc.File, err)
			}
		}
	}
	controllerutil.RemoveFinalizer(snap, snapshotFinalizer)
	return s.client.Update(ctx, snap)
}
