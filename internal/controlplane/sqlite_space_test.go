package controlplane

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/klog/v2"
)

// fillAndFree writes n rows of 1 KiB into table t of file and deletes
// them all, then checkpoints: the file holds about n KiB of free pages.
func fillAndFree(t *testing.T, file string, n int) {
	t.Helper()
	db, err := sqliteOpen(file)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB)"); err != nil {
		t.Fatal(err)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if _, err := tx.Exec("INSERT INTO t (v) VALUES (?)", []byte(strings.Repeat("x", 1024))); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{"DELETE FROM t", "PRAGMA wal_checkpoint(TRUNCATE)"} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReclaimer: a database kept in incremental auto-vacuum mode (a new
// one, and an existing one in the default mode, converted) gives its free
// pages back to the file system once enough are free, in steps; below the
// thresholds it is left alone.
func TestReclaimer(t *testing.T) {
	ctx := context.Background()
	for name, existing := range map[string]bool{"new database": false, "existing database": true} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "state.db")
			if existing {
				// Made in SQLite's default mode, with data, as older
				// versions left it.
				fillAndFree(t, file, 100)
			}
			if err := useIncrementalVacuum(ctx, file); err != nil {
				t.Fatal(err)
			}
			fillAndFree(t, file, 20000) // ~20 MiB, all free
			pageSize, pages, free, err := sqliteHeader(file)
			if err != nil {
				t.Fatal(err)
			}
			if free*pageSize < 16<<20 || pages < free {
				t.Fatalf("after deleting 20 MiB: %d of %d pages of %d bytes free, want at least 16 MiB free", free, pages, pageSize)
			}
			r := &reclaimer{file: file, minFree: 8 << 20, minFreeShare: 0.25, step: 256, rest: time.Millisecond, log: klog.Background()}
			// Above what is free: nothing done.
			high := *r
			high.minFree = free*pageSize + 1
			if res, err := high.reclaim(ctx); err != nil || res.Steps != 0 {
				t.Fatalf("reclaim with less free than its threshold: %+v, %v; want nothing done", res, err)
			}
			res, err := r.reclaim(ctx)
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(file)
			if err != nil {
				t.Fatal(err)
			}
			if res.Steps < int(free)/256 || res.BytesAfter > 1<<20 || fi.Size() > 1<<20 || res.WALBytesAfter != 0 {
				t.Errorf("reclaim: %+v, file %d bytes; want ~%d steps and under 1 MiB left", res, fi.Size(), free/256)
			}
			t.Logf("returned %d of %d bytes in %d steps, longest %s", res.BytesBefore-res.BytesAfter, res.BytesBefore, res.Steps, res.LongestStep)
		})
	}
	// A database not in incremental mode: a clear error, not a loop.
	file := filepath.Join(t.TempDir(), "state.db")
	fillAndFree(t, file, 20000)
	r := &reclaimer{file: file, minFree: 1 << 20, step: 256, log: klog.Background()}
	if _, err := r.reclaim(ctx); err == nil || !strings.Contains(err.Error(), "incremental auto-vacuum mode") {
		t.Errorf("reclaim of a database in the default mode: %v, want an error naming the mode", err)
	}
}
