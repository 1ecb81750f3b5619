package controlplane

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sublet-dev/sublet/internal/controlplane/readiness"
)

// CopyForSnapshot copies what a snapshot keeps of the data dir data into
// stage: the marker, the datastore's own consistent backup and the PKI.
// It returns the datastore's kind.
func CopyForSnapshot(ctx context.Context, data, stage string) (string, error) {
	datastore, err := DatastoreOf(data)
	if err != nil {
		return "", err
	}
	if err := backupDatastore(ctx, datastore, data, stage); err != nil {
		return "", fmt.Errorf("back up the datastore: %w", err)
	}
	if err := copyFile(filepath.Join(data, MarkerFile), filepath.Join(stage, MarkerFile)); err != nil {
		return "", err
	}
	// The datastore holds what bootstrapping writes (default RBAC, priority
	// classes): a restore or fork starts as a restart does, without
	// waiting for those hooks again.
	if readiness.Bootstrapped(data) {
		if err := readiness.MarkBootstrapped(stage); err != nil {
			return "", err
		}
	}
	return datastore, copyTree(filepath.Join(data, "pki"), filepath.Join(stage, "pki"))
}

// EtcdSnapshotFile is where a snapshot keeps an etcd datastore: etcd's own
// snapshot (its API's, or the database of a stopped member), restored into
// an etcd data dir when the snapshot is.
const EtcdSnapshotFile = "etcd-snapshot.db"

// backupDatastore writes the datastore's own backup of data dir data into
// stage: SQLite's online backup, or etcd's snapshot.
func backupDatastore(ctx context.Context, datastore, data, stage string) error {
	if datastore == DatastoreEtcd {
		if err := os.MkdirAll(stage, 0o700); err != nil {
			return err
		}
		return BackupEtcd(ctx, data, filepath.Join(stage, EtcdSnapshotFile))
	}
	if err := os.MkdirAll(filepath.Join(stage, "db"), 0o700); err != nil {
		return err
	}
	return BackupSQLite(ctx, data, filepath.Join(stage, "db", "state.db"))
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
