package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/controlplane"
	"github.com/sublet-dev/sublet/internal/snapshot"
)

// dataRuntime is a runtime whose clusters' data the agent copies and
// replaces, for snapshots, restores and forks: the process runtime in its
// data dirs, the pod runtime through each pod's data endpoint
// (storagev1.DataPath).
type dataRuntime interface {
	// HasData reports whether vc has data of its own (it started once).
	HasData(ctx context.Context, vc *storagev1.VirtualCluster) bool
	// CopyOut writes what a snapshot keeps of vc's data into the new
	// directory stage (controlplane.CopyForSnapshot), bringing in at most
	// lim, and returns its datastore.
	CopyOut(ctx context.Context, vc *storagev1.VirtualCluster, stage string, lim snapshot.Limits) (string, error)
	// StageDir is an empty directory where a data dir for vc is prepared
	// (it is removed first if left over). It fails with errNotRunning
	// when vc's runtime takes a new data dir only once vc runs.
	StageDir(ctx context.Context, vc *storagev1.VirtualCluster) (string, error)
	// ReplaceData puts the data dir prepared at staged in place of vc's
	// own; vc runs on it after it returns (the process runtime's at the
	// next Ensure).
	ReplaceData(ctx context.Context, vc *storagev1.VirtualCluster, staged string) error
}

// errNotRunning: vc takes a new data dir only once it runs (the pod
// runtime's, which receives it through its pod).
var errNotRunning = errors.New("the virtual cluster takes its new data once it runs")

var _ dataRuntime = (*processRuntime)(nil)

func (r *processRuntime) DataDir(vc *storagev1.VirtualCluster) (string, error) {
	data := filepath.Join(r.dir(vc), "data")
	if _, err := os.Stat(filepath.Join(data, controlplane.MarkerFile)); err != nil {
		return "", fmt.Errorf("virtual cluster %s/%s has no data yet (it never started)", vc.Namespace, vc.Name)
	}
	return data, nil
}

func (r *processRuntime) HasData(_ context.Context, vc *storagev1.VirtualCluster) bool {
	_, err := r.DataDir(vc)
	return err == nil
}

// CopyOut copies the data dir; its size is checked after (it is local).
func (r *processRuntime) CopyOut(ctx context.Context, vc *storagev1.VirtualCluster, stage string, _ snapshot.Limits) (string, error) {
	data, err := r.DataDir(vc)
	if err != nil {
		return "", err
	}
	return controlplane.CopyForSnapshot(ctx, data, stage)
}

// StageDir is a sibling of the cluster's link under the state dir: on the
// same file system as the data dir, also when it is a pool member's.
func (r *processRuntime) StageDir(_ context.Context, vc *storagev1.VirtualCluster) (string, error) {
	stage := filepath.Join(r.stateDir, "vclusters", vc.Namespace, "."+vc.Name+".staged")
	if err := os.RemoveAll(stage); err != nil {
		return "", err
	}
	return stage, os.MkdirAll(stage, 0o700)
}

// ReplaceData stops vc and puts staged in place of its data dir, in one
// rename; the next Ensure starts it on it.
func (r *processRuntime) ReplaceData(_ context.Context, vc *storagev1.VirtualCluster, staged string) error {
	r.stop(vc)
	dir := r.dir(vc)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	data, old := filepath.Join(dir, "data"), filepath.Join(dir, "data.replaced")
	if err := os.RemoveAll(old); err != nil {
		return err
	}
	if err := os.Rename(data, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("move the old data aside: %w", err)
	}
	if err := os.Rename(staged, data); err != nil {
		// Put the old data back: the cluster keeps what it had.
		if rerr := os.Rename(old, data); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return fmt.Errorf("put the new data in place: %w (and the old back: %v)", err, rerr)
		}
		return fmt.Errorf("put the new data in place: %w", err)
	}
	return os.RemoveAll(old)
}
