package controlplane

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"modernc.org/sqlite"
)

// backupPagesPerStep is how many pages of the SQLite datastore a backup
// copies between two looks at its context.
const backupPagesPerStep = 1024

// backupBusyTimeoutMS is how long the backup's connection waits for a lock,
// as kine's own connections do.
const backupBusyTimeoutMS = 30000

// DatastoreOf is the datastore (DatastoreSQLite or DatastoreEtcd) the
// control plane whose data dir is dir was created with.
func DatastoreOf(dir string) (string, error) {
	file := dataDir{root: dir}.path(MarkerFile)
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		if _, statErr := os.Stat(dir); statErr != nil {
			return "", fmt.Errorf("data dir %s: %w", dir, errors.Unwrap(statErr))
		}
		return "", fmt.Errorf("%s is not a sublet data dir: it has no %s; pass the --data-dir of a control plane", dir, MarkerFile)
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", file, err)
	}
	var m marker
	if err := json.Unmarshal(data, &m); err != nil {
		return "", fmt.Errorf("%s is corrupt (%v); this data dir cannot be copied", file, err)
	}
	switch m.Datastore {
	case DatastoreSQLite, DatastoreEtcd:
		return m.Datastore, nil
	}
	return "", fmt.Errorf("%s names datastore %q, which this sublet does not know (want %s or %s)", file, m.Datastore, DatastoreSQLite, DatastoreEtcd)
}

// BackupSQLite writes a consistent copy of the SQLite datastore of the
// control plane whose data dir is dir into the new file dst, while that
// control plane may be running and writing it. The copy is one
// self-contained file in rollback-journal mode, with no -wal file: kine
// puts it back in WAL mode when it opens it.
func BackupSQLite(ctx context.Context, dir, dst string) error {
	_, err := backupSQLite(ctx, dir, dst, backupPagesPerStep)
	return err
}

// backupSQLite is BackupSQLite, pagesPerStep pages at a time; it also
// returns how often SQLite restarted the copy.
func backupSQLite(ctx context.Context, dir, dst string, pagesPerStep int32) (restarts int, err error) {
	ds, err := DatastoreOf(dir)
	if err != nil {
		return 0, err
	}
	if ds != DatastoreSQLite {
		return 0, fmt.Errorf("data dir %s has the %s datastore, not %s: it has no SQLite file to back up", dir, ds, DatastoreSQLite)
	}
	src := dataDir{root: dir}.sqlite()
	if _, err := os.Stat(src); err != nil {
		return 0, fmt.Errorf("data dir %s has no datastore yet: %w", dir, unwrapPathError(err))
	}
	if err := checkSQLiteFile(src); err != nil {
		return 0, err
	}
	for _, f := range []string{dst, dst + "-wal"} {
		if _, err := os.Lstat(f); err == nil {
			return 0, fmt.Errorf("backup target %s already exists; remove it or choose another path", f)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".partial-*")
	if err != nil {
		return 0, fmt.Errorf("create backup file: %w", err)
	}
	tmp.Close()
	defer removeSQLiteFiles(tmp.Name())
	if restarts, err = backupSQLiteFile(ctx, src, tmp.Name(), pagesPerStep); err != nil {
		return restarts, fmt.Errorf("back up %s: %w", src, err)
	}
	if err := useRollbackJournal(ctx, tmp.Name()); err != nil {
		return restarts, fmt.Errorf("back up %s: %w", src, err)
	}
	// A link, unlike a rename, never replaces a dst made meanwhile.
	if err := os.Link(tmp.Name(), dst); err != nil {
		return restarts, fmt.Errorf("back up %s: %w", src, unwrapPathError(err))
	}
	return restarts, syncDir(filepath.Dir(dst))
}

// backupSQLiteFile copies the database src into the empty database file
// dst with SQLite's online backup, pagesPerStep pages at a time, and
// returns how often SQLite restarted it.
//
// The copy holds one read transaction on src from the first step to the
// last, so every step copies from the same snapshot. Without it each step
// would begin a read of its own, and SQLite restarts a copy after each
// commit of another connection: under kine's steady writes a copy in small
// steps then took 30 s instead of 0.2 s, or never ended. In WAL mode a
// reader blocks no writer; only a checkpoint that waits for readers does,
// and writers wait behind it: kine's after a compaction (busy timeout
// 30 s), the reclaimer's (100 ms). Such a checkpoint that starts during the
// copy holds kine's writes until the copy ends, a fraction of a second for
// tens of megabytes.
func backupSQLiteFile(ctx context.Context, src, dst string, pagesPerStep int32) (restarts int, err error) {
	abs, err := filepath.Abs(src)
	if err != nil {
		return 0, err
	}
	db, err := sql.Open("sqlite", fmt.Sprintf("file://%s?_pragma=busy_timeout(%d)", abs, backupBusyTimeoutMS))
	if err != nil {
		return 0, err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		return 0, err
	}
	defer func() { _, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK") }()
	// BEGIN is deferred: the snapshot is taken by the first read.
	var tables int
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&tables); err != nil {
		return 0, fmt.Errorf("begin reading: %w", err)
	}
	err = conn.Raw(func(driverConn any) error {
		bc, ok := driverConn.(interface {
			NewBackup(dstURI string) (*sqlite.Backup, error)
		})
		if !ok {
			return fmt.Errorf("the SQLite driver's connection (%T) has no online backup", driverConn)
		}
		b, err := bc.NewBackup(dst)
		if err != nil {
			return fmt.Errorf("start backup to %s: %w", dst, err)
		}
		left := -1
		for more := true; more; {
			if more, err = b.Step(pagesPerStep); err == nil {
				err = ctx.Err()
			}
			if err != nil {
				_ = b.Finish()
				return err
			}
			// A restart starts again from the first page.
			if more && left >= 0 && b.Remaining() > left {
				restarts++
			}
			left = b.Remaining()
		}
		return b.Finish()
	})
	return restarts, err
}

// useRollbackJournal takes the database file out of WAL mode, so that it is
// complete on its own: a copy of a WAL-mode database says WAL in its
// header.
func useRollbackJournal(ctx context.Context, file string) error {
	abs, err := filepath.Abs(file)
	if err != nil {
		return err
	}
	db, err := sql.Open("sqlite", fmt.Sprintf("file://%s?_pragma=busy_timeout(%d)", abs, backupBusyTimeoutMS))
	if err != nil {
		return err
	}
	defer db.Close()
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode = DELETE").Scan(&mode); err != nil {
		return fmt.Errorf("leave WAL mode: %w", err)
	}
	if mode != "delete" {
		return fmt.Errorf("leave WAL mode: journal mode is still %q", mode)
	}
	return db.Close()
}

// removeSQLiteFiles removes a database file and the files SQLite keeps
// beside it.
func removeSQLiteFiles(file string) {
	for _, suffix := range []string{"", "-journal", "-wal", "-shm"} {
		_ = os.Remove(file + suffix)
	}
}

// syncDir makes the entries of dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
