package controlplane

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// kineProcessEnv names the data dir that TestBackupSQLiteKineProcess serves
// when the test binary runs as TestBackupSQLite's kine.
const kineProcessEnv = "SUBLET_TEST_KINE_DATA_DIR"

// TestBackupSQLite backs up the datastore of a kine that runs in another
// process while a client writes to it without pause: the copy is one file,
// intact, and holds every key written before the backup began. The backup
// copies 8 pages at a time, so it spans many of the writer's commits, and
// does not restart after them.
func TestBackupSQLite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	d := dataDir{root: dir}
	if err := d.prepare(DatastoreSQLite); err != nil {
		t.Fatal(err)
	}
	if err := d.pkiDir().Ensure(nil); err != nil {
		t.Fatal(err)
	}
	client := startKineProcess(t, dir)

	// About 13 MB of values: some 3,000 pages, hundreds of steps.
	big := bytes.Repeat([]byte("x"), 64<<10)
	for i := range 200 {
		if err := createKey(ctx, client, fmt.Sprintf("/registry/seed/%03d", i), big); err != nil {
			t.Fatal(err)
		}
	}
	var written atomic.Int64
	stop, writerDone := make(chan struct{}), make(chan error, 1)
	go func() {
		small := bytes.Repeat([]byte("y"), 1<<10)
		for i := 0; ; i++ {
			select {
			case <-stop:
				writerDone <- nil
				return
			default:
			}
			if err := createKey(ctx, client, fmt.Sprintf("/registry/live/%06d", i), small); err != nil {
				writerDone <- err
				return
			}
			written.Store(int64(i + 1))
		}
	}()
	for written.Load() < 20 {
		select {
		case err := <-writerDone:
			t.Fatalf("the writer stopped: %v", err)
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}

	dst := filepath.Join(t.TempDir(), "copy.db")
	before := written.Load()
	start := time.Now()
	restarts, err := backupSQLite(ctx, dir, dst, 8)
	if err != nil {
		t.Fatal(err)
	}
	took, during := time.Since(start), written.Load()-before
	close(stop)
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}
	t.Logf("backup took %v; %d keys were written meanwhile; %d restarts", took, during, restarts)
	if during == 0 {
		t.Fatal("no key was written during the backup: the test shows nothing about concurrent writes")
	}
	// Each step reading a snapshot of its own, the copy restarted after
	// most commits (and took ~30 s instead of ~0.2 s).
	if restarts > 0 {
		t.Errorf("the backup restarted %d times: its steps do not read one snapshot", restarts)
	}
	checkBackup(t, dst, 200, before)
}

// checkBackup checks the copy of TestBackupSQLite: one file, in rollback
// journal mode, intact, with the seed keys and at least the first live
// keys.
func checkBackup(t *testing.T, file string, seeds, live int64) {
	t.Helper()
	head := make([]byte, 20)
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadFull(f, head)
	f.Close()
	if err != nil || !bytes.Equal(head[:16], sqliteMagic) {
		t.Fatalf("%s is not a SQLite file: %v", file, err)
	}
	// Bytes 18 and 19 are the read and write format: 2 in WAL mode.
	if head[18] != 1 || head[19] != 1 {
		t.Errorf("the copy's header says WAL mode (format %d/%d): it depends on a -wal file", head[18], head[19])
	}
	for _, side := range []string{"-wal", "-shm", "-journal"} {
		if _, err := os.Stat(file + side); err == nil {
			t.Errorf("the copy left %s beside it", filepath.Base(file+side))
		}
	}
	db, err := sql.Open("sqlite", "file://"+file+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var check string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity check of the copy: %q, %v", check, err)
	}
	count := func(from, to string) int64 {
		var n int64
		if err := db.QueryRow("SELECT count(DISTINCT name) FROM kine WHERE name >= ? AND name < ?", from, to).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count("/registry/seed/", "/registry/seed0"); n != seeds {
		t.Errorf("the copy holds %d seed keys, want %d", n, seeds)
	}
	if n := count("/registry/live/", fmt.Sprintf("/registry/live/%06d", live)); n != live {
		t.Errorf("the copy holds %d of the %d live keys written before the backup began", n, live)
	}
}

// createKey creates key as the API server does, in a transaction.
func createKey(ctx context.Context, c *clientv3.Client, key string, value []byte) error {
	resp, err := c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(value))).Commit()
	if err != nil {
		return fmt.Errorf("create %s: %w", key, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("create %s: it exists", key)
	}
	return nil
}

// startKineProcess runs kine on the data dir dir in a child process, as a
// running control plane would, until t ends, and connects to it.
func startKineProcess(t *testing.T, dir string) *clientv3.Client {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBackupSQLiteKineProcess$")
	cmd.Env = append(os.Environ(), kineProcessEnv+"="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("kine process: %v\n%s", err, stderr.String())
		}
	})
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if url, ok := strings.CutPrefix(sc.Text(), "kine: "); ok {
				urls <- url
			}
		}
	}()
	select {
	case url := <-urls:
		client, err := clientv3.New(etcdClientConfig(t, dataDir{root: dir}.pkiDir(), url))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Close() })
		return client
	case <-time.After(30 * time.Second):
		t.Fatalf("kine process not ready after 30s:\n%s", stderr.String())
		return nil
	}
}

// TestBackupSQLiteKineProcess is the kine of TestBackupSQLite, in a process
// of its own: it serves the data dir named in $SUBLET_TEST_KINE_DATA_DIR
// until its stdin closes.
func TestBackupSQLiteKineProcess(t *testing.T) {
	dir := os.Getenv(kineProcessEnv)
	if dir == "" {
		t.Skip("runs as the kine process of TestBackupSQLite")
	}
	d := dataDir{root: dir}
	store := &kineStore{file: d.sqlite(), pki: d.pkiDir(), reclaimEvery: -1}
	url, err := store.start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("kine: " + url)
	_, _ = io.Copy(io.Discard, os.Stdin)
	store.stop()
}

func TestBackupSQLiteRefusals(t *testing.T) {
	dataDirWith := func(datastore string, db []byte) string {
		dir := t.TempDir()
		d := dataDir{root: dir}
		if err := d.prepare(datastore); err != nil {
			t.Fatal(err)
		}
		if db != nil {
			if err := os.WriteFile(d.sqlite(), db, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	// An empty file is a valid, empty SQLite database.
	valid := dataDirWith(DatastoreSQLite, []byte{})
	existing := filepath.Join(t.TempDir(), "there.db")
	if err := os.WriteFile(existing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	newFile := func() string { return filepath.Join(t.TempDir(), "copy.db") }
	for _, tc := range []struct {
		name, dir, dst, want string
	}{
		{"not a data dir", t.TempDir(), newFile(), "is not a sublet data dir"},
		{"missing dir", filepath.Join(t.TempDir(), "nope"), newFile(), "no such file"},
		{"etcd", dataDirWith(DatastoreEtcd, nil), newFile(), "has the etcd datastore, not sqlite"},
		{"never started", dataDirWith(DatastoreSQLite, nil), newFile(), "has no datastore yet"},
		{"not SQLite", dataDirWith(DatastoreSQLite, []byte("not SQLite at all, but long enough")), newFile(), "is not a SQLite database"},
		{"target exists", valid, existing, "already exists"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := BackupSQLite(context.Background(), tc.dir, tc.dst)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("BackupSQLite: %v, want an error saying %q", err, tc.want)
			}
		})
	}
	if err := BackupSQLite(context.Background(), valid, newFile()); err != nil {
		t.Errorf("BackupSQLite of an empty database: %v", err)
	}
}

func TestBackupDatastoreOf(t *testing.T) {
	for _, tc := range []struct {
		name, marker, want, wantErr string
	}{
		{name: "sqlite", marker: `{"datastore":"sqlite"}`, want: DatastoreSQLite},
		{name: "etcd", marker: `{"datastore":"etcd"}`, want: DatastoreEtcd},
		{name: "no marker", wantErr: "is not a sublet data dir"},
		{name: "corrupt", marker: `{"datastore":`, wantErr: "is corrupt"},
		{name: "unknown", marker: `{"datastore":"mysql"}`, wantErr: `names datastore "mysql"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.marker != "" {
				if err := os.WriteFile(filepath.Join(dir, MarkerFile), []byte(tc.marker), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := DatastoreOf(dir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("DatastoreOf: %q, %v; want an error saying %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("DatastoreOf: %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
