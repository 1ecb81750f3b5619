package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/controlplane"
)

// dataRuntime is a runtime whose clusters' data dirs the agent reads and
// replaces itself, for snapshots, restores and forks: the process runtime.
// The pod runtime's data is in a PersistentVolumeClaim the agent cannot
// reach; it does not implement it yet.
type dataRuntime interface {
	// DataDir is vc's control plane data dir, or an error saying it has
	// none yet.
	DataDir(vc *storagev1.VirtualCluster) (string, error)
	// StageDir is an empty directory on the data dir's file system where
	// a data dir for vc is prepared (it is removed first if left over).
	StageDir(vc *storagev1.VirtualCluster) (string, error)
	// ReplaceData stops vc and puts the data dir prepared at staged in
	// place of its own, in one rename; the next Ensure starts it on it.
	ReplaceData(ctx context.Context, vc *storagev1.VirtualCluster, staged string) error
}

var _ dataRuntime = (*processRuntime)(nil)

func (r *processRuntime) DataDir(vc *storagev1.VirtualCluster) (string, error) {
	data := filepath.Join(r.dir(vc), "data")
	if _, err := os.Stat(filepath.Join(data, controlplane.MarkerFile)); err != nil {
		return "", fmt.Errorf("virtual cluster %s/%s has no data yet (it never started)", vc.Namespace, vc.Name)
	}
	return data, nil
}

// StageDir is a sibling of the cluster's link under the state dir: on the
// same file system as the data dir, also when it is a pool member's.
func (r *processRuntime) StageDir(vc *storagev1.VirtualCluster) (string, error) {
	stage := filepath.Join(r.stateDir, "vclusters", vc.Namespace, "."+vc.Name+".staged")
	if err := os.RemoveAll(stage); err != nil {
		return "", err
	}
	return stage, os.MkdirAll(stage, 0o700)
}

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

// copyFile copies regular file src to dst (mode 0600).
func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o600)
}

// copyTree copies the regular files of directory src (one level: a PKI
// directory) into dst.
func copyTree(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
