package controlplane

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/storage/wal"
)

// newEtcdDataDir is a new data dir of an etcd control plane, with its
// certificates.
func newEtcdDataDir(t *testing.T, dir string) dataDir {
	t.Helper()
	d := dataDir{root: dir}
	if err := d.prepare(DatastoreEtcd); err != nil {
		t.Fatal(err)
	}
	if err := d.pkiDir().Ensure([]string{"127.0.0.1", "localhost"}); err != nil {
		t.Fatal(err)
	}
	return d
}

// runEtcd starts the etcd of the data dir as a control plane does and
// connects to it as the API server does. stop, which t's end calls too,
// stops both.
func runEtcd(ctx context.Context, t *testing.T, d dataDir) (c *clientv3.Client, stop func()) {
	t.Helper()
	store := d.etcdStore(d.pkiDir())
	url, err := store.start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err = dialDatastore(d.pkiDir(), url)
	if err != nil {
		store.stop()
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			c.Close()
			store.stop()
		}
	}
	t.Cleanup(stop)
	return c, stop
}

// restoreAndRun restores snapshot into a new data dir and starts its etcd.
func restoreAndRun(ctx context.Context, t *testing.T, snapshot string) *clientv3.Client {
	t.Helper()
	// A data dir that does not exist yet.
	dir := filepath.Join(t.TempDir(), "restored")
	// etcd's own segment size, as in a process that has not started etcd.
	wal.SegmentSizeBytes = 64 * 1000 * 1000
	if err := RestoreEtcd(ctx, snapshot, dir); err != nil {
		t.Fatal(err)
	}
	if ds, err := DatastoreOf(dir); err != nil || ds != DatastoreEtcd {
		t.Fatalf("the restored data dir's datastore: %q, %v", ds, err)
	}
	d := dataDir{root: dir}
	if err := d.checkDatastore(DatastoreEtcd); err != nil {
		t.Fatalf("a control plane would not start on the restored data dir: %v", err)
	}
	wals, err := filepath.Glob(filepath.Join(d.etcd(), "member", "wal", "*.wal"))
	if err != nil || len(wals) == 0 {
		t.Fatalf("the restored etcd has no write-ahead log: %v", err)
	}
	for _, w := range wals {
		if fi, err := os.Stat(w); err != nil || fi.Size() > etcdWALSegmentBytes {
			t.Errorf("restored WAL segment %s: %v; want at most %d bytes", w, err, etcdWALSegmentBytes)
		}
	}
	// The restore's peer port is not the one etcd starts on.
	c, _ := runEtcd(ctx, t, newEtcdDataDir(t, dir))
	return c
}

// checkStoreWorks writes and reads back a new key through c.
func checkStoreWorks(ctx context.Context, t *testing.T, c *clientv3.Client) {
	t.Helper()
	if err := createKey(ctx, c, "/registry/after-restore", []byte("new")); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(ctx, "/registry/after-restore")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "new" {
		t.Fatalf("read back a key written after the restore: %v, %v", resp, err)
	}
}

// TestBackupEtcdRunning backs up the etcd of a running control plane while
// a client writes to it without pause, restores the copy into a new data
// dir and starts etcd there: it holds every key written before the backup
// began, and of the keys written during it a first part, with no gap.
func TestBackupEtcdRunning(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d := newEtcdDataDir(t, t.TempDir())
	lock, err := d.lock() // as the control plane does
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	c, stopEtcd := runEtcd(ctx, t, d)
	// About 13 MB of values, for a snapshot that takes a while.
	big := bytes.Repeat([]byte("x"), 64<<10)
	for i := range 200 {
		if err := createKey(ctx, c, fmt.Sprintf("/registry/seed/%03d", i), big); err != nil {
			t.Fatal(err)
		}
	}
	writer := startWriter(ctx, t, c)
	before := writer.written.Load()
	dst := filepath.Join(t.TempDir(), "etcd.snapshot")
	start := time.Now()
	if err := BackupEtcd(ctx, d.root, dst); err != nil {
		t.Fatal(err)
	}
	took, during := time.Since(start), writer.written.Load()-before
	after := writer.stop(t)
	t.Logf("backup took %v; %d keys were written meanwhile", took, during)
	stopEtcd()
	if _, err := os.Stat(d.etcdClientURLFile()); err == nil {
		t.Errorf("%s is still there after etcd stopped", d.etcdClientURLFile())
	}

	restored := restoreAndRun(ctx, t, dst)
	resp, err := restored.Get(ctx, "/registry/seed/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if !bytes.Equal(kv.Value, big) {
			t.Errorf("%s has a value of %d bytes, not the %d written", kv.Key, len(kv.Value), len(big))
		}
	}
	if len(resp.Kvs) != 200 {
		t.Errorf("the restored datastore holds %d seed keys, want 200", len(resp.Kvs))
	}
	checkLiveKeys(ctx, t, restored, before, after)
	checkStoreWorks(ctx, t, restored)
}

// writer writes the keys /registry/live/000000, 000001... until stopped.
type writer struct {
	written atomic.Int64
	halt    chan struct{}
	done    chan error
}

// startWriter starts a writer through c and waits for its first keys.
func startWriter(ctx context.Context, t *testing.T, c *clientv3.Client) *writer {
	t.Helper()
	w := &writer{halt: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		for i := 0; ; i++ {
			select {
			case <-w.halt:
				w.done <- nil
				return
			default:
			}
			if err := createKey(ctx, c, fmt.Sprintf("/registry/live/%06d", i), []byte("y")); err != nil {
				w.done <- err
				return
			}
			w.written.Store(int64(i + 1))
		}
	}()
	for w.written.Load() < 20 {
		select {
		case err := <-w.done:
			t.Fatalf("the writer stopped: %v", err)
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return w
}

// stop stops the writer and returns how many keys it wrote.
func (w *writer) stop(t *testing.T) int64 {
	t.Helper()
	close(w.halt)
	if err := <-w.done; err != nil {
		t.Fatal(err)
	}
	return w.written.Load()
}

// checkLiveKeys checks that the writer's keys in c are its first n, for
// some n between before and after.
func checkLiveKeys(ctx context.Context, t *testing.T, c *clientv3.Client, before, after int64) {
	t.Helper()
	resp, err := c.Get(ctx, "/registry/live/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	n := int64(len(resp.Kvs))
	if n < before || n > after {
		t.Errorf("the restored datastore holds %d live keys; want at least the %d written before the backup, at most the %d written in all", n, before, after)
	}
	for i, kv := range resp.Kvs {
		if want := fmt.Sprintf("/registry/live/%06d", i); string(kv.Key) != want {
			t.Fatalf("live key %d is %s, want %s: the copy is not of one moment", i, kv.Key, want)
		}
	}
}

// TestBackupEtcdStopped backs up the etcd of a stopped control plane and
// restores it: the restored etcd serves exactly the keys, values and
// revisions there were. So does a restore of the database file itself,
// without the SHA-256 a backup has; a backup whose SHA-256 does not match
// is refused.
func TestBackupEtcdStopped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d := newEtcdDataDir(t, t.TempDir())
	c, stopEtcd := runEtcd(ctx, t, d)
	for i := range 100 {
		if _, err := c.Put(ctx, fmt.Sprintf("/registry/k/%03d", i), fmt.Sprintf("v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		if _, err := c.Delete(ctx, fmt.Sprintf("/registry/k/%03d", i)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Put(ctx, fmt.Sprintf("/registry/k/%03d", 50+i), "changed"); err != nil {
			t.Fatal(err)
		}
	}
	want := readAll(ctx, t, c)
	stopEtcd()

	dst := filepath.Join(t.TempDir(), "etcd.snapshot")
	if err := BackupEtcd(ctx, d.root, dst); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dst); err != nil || !hasSnapshotHash(fi.Size()) {
		t.Fatalf("the backup (%v) does not end with a SHA-256 as etcd's snapshots do", err)
	}
	rawDB := filepath.Join(t.TempDir(), "db")
	copyFileForTest(t, d.etcdDB(), rawDB)
	badHash := filepath.Join(t.TempDir(), "bad-hash.snapshot")
	copyFileForTest(t, dst, badHash)
	flipLastByte(t, badHash)

	for name, file := range map[string]string{"backup": dst, "database file": rawDB} {
		t.Run(name, func(t *testing.T) {
			restored := restoreAndRun(ctx, t, file)
			got := readAll(ctx, t, restored)
			if len(got) != len(want) {
				t.Errorf("the restored datastore holds %d keys, want %d", len(got), len(want))
			}
			for key, v := range want {
				if got[key] != v {
					t.Errorf("%s is %+v after the restore, want %+v", key, got[key], v)
				}
			}
			checkStoreWorks(ctx, t, restored)
		})
	}
	t.Run("SHA-256 mismatch", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "restored")
		err := RestoreEtcd(ctx, badHash, dir)
		if err == nil || !strings.Contains(err.Error(), "sha256") {
			t.Fatalf("RestoreEtcd of a snapshot whose SHA-256 does not match: %v; want an error saying so", err)
		}
		if _, err := os.Stat(dataDir{root: dir}.etcd()); err == nil {
			t.Errorf("the failed restore left %s", dataDir{root: dir}.etcd())
		}
	})
}

func copyFileForTest(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func flipLastByte(t *testing.T, file string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-1] ^= 0xff
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestBackupEtcdRefusals(t *testing.T) {
	ctx := context.Background()
	ran := newEtcdDataDir(t, t.TempDir())
	_, stop := runEtcd(ctx, t, ran)
	stop()
	existing := filepath.Join(t.TempDir(), "there.snapshot")
	if err := os.WriteFile(existing, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	sqlite := t.TempDir()
	if err := (dataDir{root: sqlite}).prepare(DatastoreSQLite); err != nil {
		t.Fatal(err)
	}
	// Running, as far as its lock says, but with no etcd address recorded.
	starting := newEtcdDataDir(t, t.TempDir())
	lock, err := starting.lock()
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := os.MkdirAll(filepath.Dir(starting.etcdDB()), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(starting.etcdDB(), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	newFile := func() string { return filepath.Join(t.TempDir(), "etcd.snapshot") }
	for _, tc := range []struct{ name, dir, dst, want string }{
		{"target exists", ran.root, existing, "already exists"},
		{"not a data dir", t.TempDir(), newFile(), "is not a sublet data dir"},
		{"sqlite", sqlite, newFile(), "has the sqlite datastore, not etcd"},
		{"never started", newEtcdDataDir(t, t.TempDir()).root, newFile(), "has no etcd datastore yet"},
		{"starting", starting.root, newFile(), "has not recorded its address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := BackupEtcd(ctx, tc.dir, tc.dst)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("BackupEtcd: %v; want an error saying %q", err, tc.want)
			}
			if tc.dst != existing {
				if _, err := os.Lstat(tc.dst); err == nil {
					t.Errorf("the failed backup left %s", tc.dst)
				}
			}
			entries, _ := os.ReadDir(filepath.Dir(tc.dst))
			for _, e := range entries {
				if strings.Contains(e.Name(), ".partial-") {
					t.Errorf("the failed backup left %s", e.Name())
				}
			}
		})
	}
	if data, _ := os.ReadFile(existing); string(data) != "keep me" {
		t.Errorf("BackupEtcd changed the existing target to %q", data)
	}
}

func TestRestoreEtcdRefusals(t *testing.T) {
	ctx := context.Background()
	src := newEtcdDataDir(t, t.TempDir())
	_, stop := runEtcd(ctx, t, src)
	stop()
	snapshot := filepath.Join(t.TempDir(), "etcd.snapshot")
	if err := BackupEtcd(ctx, src.root, snapshot); err != nil {
		t.Fatal(err)
	}
	notBolt := filepath.Join(t.TempDir(), "not.snapshot")
	if err := os.WriteFile(notBolt, bytes.Repeat([]byte("not a bbolt database "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	hasEtcd := src.root
	sqlite := t.TempDir()
	if err := (dataDir{root: sqlite}).prepare(DatastoreSQLite); err != nil {
		t.Fatal(err)
	}
	inUse := newEtcdDataDir(t, t.TempDir())
	lock, err := inUse.lock()
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	newDir := func() string { return filepath.Join(t.TempDir(), "restored") }
	for _, tc := range []struct{ name, snapshot, dir, want string }{
		{"etcd exists", snapshot, hasEtcd, "already has an etcd datastore"},
		{"not bbolt", notBolt, newDir(), "is not an etcd snapshot"},
		{"missing snapshot", filepath.Join(t.TempDir(), "nope"), newDir(), "no such file"},
		{"sqlite data dir", snapshot, sqlite, "holds a sqlite datastore, not etcd"},
		{"in use", snapshot, inUse.root, "in use by another sublet process"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before []os.DirEntry
			if tc.dir == hasEtcd {
				before, _ = os.ReadDir(filepath.Join(hasEtcd, "etcd", "member"))
			}
			err := RestoreEtcd(ctx, tc.snapshot, tc.dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("RestoreEtcd: %v; want an error saying %q", err, tc.want)
			}
			if tc.dir == hasEtcd {
				after, _ := os.ReadDir(filepath.Join(hasEtcd, "etcd", "member"))
				if len(after) != len(before) {
					t.Errorf("RestoreEtcd changed the existing etcd datastore")
				}
				return
			}
			if _, err := os.Stat(filepath.Join(tc.dir, "etcd")); err == nil {
				t.Errorf("the failed restore left %s", filepath.Join(tc.dir, "etcd"))
			}
		})
	}
}
