package controlplane

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	etcdsnapshot "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.uber.org/zap"
)

// etcdDBOpenTimeout is how long opening an etcd database file waits for
// the lock of a process that has it open.
const etcdDBOpenTimeout = 2 * time.Second

// BackupEtcd writes a consistent copy of the etcd datastore of the control
// plane whose data dir is dir into the new file dst, in the format of
// etcd's snapshot API: the database followed by its SHA-256. A control
// plane running on dir is asked for the copy through that API; the
// database of a stopped one is copied with the data dir locked, so none
// starts meanwhile.
func BackupEtcd(ctx context.Context, dir, dst string) error {
	d := dataDir{root: dir}
	if err := d.checkEtcdBackupSource(); err != nil {
		return err
	}
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("backup target %s already exists; remove it or choose another path", dst)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".partial-*")
	if err != nil {
		return fmt.Errorf("create backup file: %w", err)
	}
	defer os.Remove(tmp.Name())
	err = d.backupEtcdTo(ctx, tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("back up the etcd datastore of %s: %w", dir, err)
	}
	// A link, unlike a rename, never replaces a dst made meanwhile.
	if err := os.Link(tmp.Name(), dst); err != nil {
		return fmt.Errorf("back up the etcd datastore of %s: %w", dir, unwrapPathError(err))
	}
	return syncDir(filepath.Dir(dst))
}

// checkEtcdBackupSource fails unless the data dir holds an etcd datastore.
func (d dataDir) checkEtcdBackupSource() error {
	ds, err := DatastoreOf(d.root)
	if err != nil {
		return err
	}
	if ds != DatastoreEtcd {
		return fmt.Errorf("data dir %s has the %s datastore, not %s: it has no etcd database to back up", d.root, ds, DatastoreEtcd)
	}
	if _, err := os.Stat(d.etcdDB()); err != nil {
		return fmt.Errorf("data dir %s has no etcd datastore yet: %w", d.root, unwrapPathError(err))
	}
	return nil
}

func (d dataDir) etcdDB() string { return filepath.Join(d.etcd(), "member", "snap", "db") }

// backupEtcdTo writes the snapshot of the data dir's etcd to f, from the
// running etcd if a process holds the data dir, else from its database.
func (d dataDir) backupEtcdTo(ctx context.Context, f *os.File) error {
	lock, err := d.lock()
	if err != nil {
		pid, held := LockHolder(d.root)
		if !held {
			return err
		}
		return d.snapshotRunningEtcd(ctx, pid, f)
	}
	defer lock.Close()
	return copyEtcdDB(ctx, d.etcdDB(), f)
}

// snapshotRunningEtcd streams the snapshot of the etcd of the control
// plane (process pid) running on the data dir into f.
func (d dataDir) snapshotRunningEtcd(ctx context.Context, pid int, f *os.File) error {
	data, err := os.ReadFile(d.etcdClientURLFile())
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("a control plane (pid %d) runs on %s, but its etcd has not recorded its address in %s: it is still starting, or was started by an older sublet; try again once it is ready, or stop it", pid, d.root, d.etcdClientURLFile())
	}
	if err != nil {
		return err
	}
	url := strings.TrimSpace(string(data))
	client, err := dialDatastore(d.pkiDir(), url)
	if err != nil {
		return err
	}
	defer client.Close()
	stream, err := client.Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("ask the etcd at %s for a snapshot: %w", url, err)
	}
	defer stream.Close()
	if _, err := io.Copy(f, stream); err != nil {
		return fmt.Errorf("receive the snapshot of the etcd at %s: %w", url, err)
	}
	if err := checkSnapshotHash(f); err != nil {
		return fmt.Errorf("the snapshot of the etcd at %s: %w", url, err)
	}
	return f.Sync()
}

// copyEtcdDB writes the etcd database file db, which no etcd has open,
// to f as etcd's snapshot API would: its pages, then their SHA-256.
func copyEtcdDB(ctx context.Context, db string, f *os.File) error {
	b, err := bolt.Open(db, 0o400, &bolt.Options{ReadOnly: true, Timeout: etcdDBOpenTimeout})
	if err != nil {
		return fmt.Errorf("etcd database %s is unreadable: %w", db, err)
	}
	defer b.Close()
	h := sha256.New()
	err = b.View(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(ctxWriter{ctx: ctx, w: io.MultiWriter(f, h)})
		return err
	})
	if err != nil {
		return fmt.Errorf("copy %s: %w", db, err)
	}
	if _, err := f.Write(h.Sum(nil)); err != nil {
		return err
	}
	return f.Sync()
}

// ctxWriter is w until ctx ends.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// hasSnapshotHash reports whether an etcd snapshot file of size bytes ends
// with the SHA-256 of the database, by etcd's own rule: a database is
// whole pages, a multiple of 512 bytes; the snapshot API adds 32.
func hasSnapshotHash(size int64) bool { return size%512 == sha256.Size }

// checkSnapshotHash fails unless the snapshot in f ends with the SHA-256
// of what precedes it.
func checkSnapshotHash(f *os.File) error {
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	if !hasSnapshotHash(size) {
		return fmt.Errorf("it is %d bytes long: cut short, or without its SHA-256", size)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	h := sha256.New()
	if _, err := io.CopyN(h, f, size-sha256.Size); err != nil {
		return err
	}
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(f, want); err != nil {
		return err
	}
	if !bytes.Equal(h.Sum(nil), want) {
		return errors.New("its SHA-256 does not match its content")
	}
	return nil
}

// RestoreEtcd makes the etcd datastore of the data dir dir, which must not
// have one yet, from the etcd snapshot file snapshotFile, such as
// BackupEtcd or etcdctl writes, or a database file copied from a stopped
// member. A control plane started on dir with --datastore=etcd then serves
// the snapshot's keys, at their revisions. dir is created if it does not
// exist; a data dir of another datastore is refused. No control plane may
// run on dir (its lock is held meanwhile).
func RestoreEtcd(ctx context.Context, snapshotFile, dir string) error {
	hashed, err := checkEtcdSnapshotFile(snapshotFile)
	if err != nil {
		return err
	}
	d := dataDir{root: dir}
	if err := d.prepare(DatastoreEtcd); err != nil {
		return err
	}
	lock, err := d.lock()
	if err != nil {
		return err
	}
	defer lock.Close()
	if _, err := os.Lstat(d.etcd()); err == nil {
		return fmt.Errorf("data dir %s already has an etcd datastore (%s); restore into a new data dir, or move %s away first", dir, d.etcd(), d.etcd())
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Restored beside its place and renamed into it: a failed restore
	// leaves no etcd directory that a control plane would start on.
	tmp, err := os.MkdirTemp(dir, ".etcd-restore-*")
	if err != nil {
		return fmt.Errorf("restore etcd: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := restoreEtcdMember(snapshotFile, filepath.Join(tmp, "etcd"), hashed); err != nil {
		return fmt.Errorf("restore etcd from %s: %w", snapshotFile, err)
	}
	if err := os.Rename(filepath.Join(tmp, "etcd"), d.etcd()); err != nil {
		return fmt.Errorf("restore etcd: %w", err)
	}
	return syncDir(dir)
}

// checkEtcdSnapshotFile fails unless file is an intact etcd database,
// with or without the SHA-256 that etcd's snapshot API appends, and
// reports whether it has one: etcd's restore library panics on a file
// that is not a database.
func checkEtcdSnapshotFile(file string) (hashed bool, err error) {
	fi, err := os.Stat(file)
	if err != nil {
		return false, fmt.Errorf("etcd snapshot: %w", unwrapPathError(err))
	}
	if !fi.Mode().IsRegular() {
		return false, fmt.Errorf("etcd snapshot %s is not a file", file)
	}
	b, err := bolt.Open(file, 0o400, &bolt.Options{ReadOnly: true, Timeout: etcdDBOpenTimeout})
	if err != nil {
		return false, fmt.Errorf("%s is not an etcd snapshot: %v", file, err)
	}
	defer b.Close()
	err = b.View(func(tx *bolt.Tx) error {
		for _, bucket := range [][]byte{schema.Key.Name(), schema.Meta.Name()} {
			if tx.Bucket(bucket) == nil {
				return fmt.Errorf("it has no %q bucket", bucket)
			}
		}
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return false, fmt.Errorf("%s is not an intact etcd snapshot: %w", file, err)
	}
	return hasSnapshotHash(fi.Size()), nil
}

// restoreEtcdMember makes the etcd data directory out of snapshotFile for
// the member a control plane's etcd is. Only a file without a SHA-256 (a
// database copied from a stopped member) skips the hash check: one with it
// is checked by etcd, which fails on a mismatch.
func restoreEtcdMember(snapshotFile, out string, hashed bool) (err error) {
	peer, err := freePeerURL()
	if err != nil {
		return err
	}
	member := etcdMember(peer)
	// The restore writes the first segment of the write-ahead log.
	wal.SegmentSizeBytes = etcdWALSegmentBytes
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("etcd's restore failed: %v", r)
		}
	}()
	return etcdsnapshot.NewV3(zap.NewNop()).Restore(etcdsnapshot.RestoreConfig{
		SnapshotPath:        snapshotFile,
		Name:                member.Name,
		OutputDataDir:       out,
		PeerURLs:            []string{peer.String()},
		InitialCluster:      member.InitialCluster,
		InitialClusterToken: member.InitialClusterToken,
		SkipHashCheck:       !hashed,
	})
}
