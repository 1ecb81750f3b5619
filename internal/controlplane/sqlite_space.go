package controlplane

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"k8s.io/klog/v2"

	// The pure-Go SQLite driver kine uses (registered as "sqlite").
	_ "modernc.org/sqlite"
)

// SQLite keeps the pages a deleted row frees in the file, on a free list,
// and reuses them for new rows; the file never shrinks by itself. kine's
// compaction deletes every superseded revision, so after a burst of writes
// most of the file can be free pages. The database is therefore kept in
// incremental auto-vacuum mode, and a reclaimer returns free pages to the
// file system in small steps, each a short write transaction, so writers
// wait at most one step.

// sqliteOpen opens file with the driver kine uses, in WAL mode and with
// kine's busy timeout, for the space keeping below.
func sqliteOpen(file string) (*sql.DB, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", "file://"+abs+"?_pragma=busy_timeout(30000)&_pragma=journal_mode(WAL)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// useIncrementalVacuum puts the SQLite database in file (made if missing)
// in incremental auto-vacuum mode before kine opens it. An existing
// database in another mode is rebuilt once (VACUUM, which kine runs at
// every start anyway).
func useIncrementalVacuum(ctx context.Context, file string) error {
	db, err := sqliteOpen(file)
	if err != nil {
		return err
	}
	defer db.Close()
	var mode int
	if err := db.QueryRowContext(ctx, "PRAGMA auto_vacuum").Scan(&mode); err != nil {
		return fmt.Errorf("read the auto-vacuum mode of %s: %w", file, err)
	}
	const incremental = 2
	if mode == incremental {
		return nil
	}
	// The mode is kept in the database's header once it has a page: on an
	// existing database VACUUM rewrites it in the new mode; an empty one
	// gets its first page from VACUUM too.
	if _, err := db.ExecContext(ctx, "PRAGMA auto_vacuum = INCREMENTAL"); err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, "VACUUM"); err != nil {
		return fmt.Errorf("switch %s to incremental auto-vacuum: %w", file, err)
	}
	if err := db.QueryRowContext(ctx, "PRAGMA auto_vacuum").Scan(&mode); err != nil || mode != incremental {
		return fmt.Errorf("%s: auto-vacuum mode %d after VACUUM, want incremental (%d): %v", file, mode, incremental, err)
	}
	return nil
}

// sqliteHeader reads the page size, page count and free page count from
// the header of the SQLite file, without opening the database: cheap
// enough to look often. In WAL mode the header is as of the last
// checkpoint (kine checkpoints after each compaction).
func sqliteHeader(file string) (pageSize, pages, free int64, err error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, 0, 0, err
	}
	defer f.Close()
	h := make([]byte, 100)
	if _, err := io.ReadFull(f, h); err != nil {
		return 0, 0, 0, err
	}
	pageSize = int64(binary.BigEndian.Uint16(h[16:18]))
	if pageSize == 1 {
		pageSize = 65536
	}
	return pageSize, int64(binary.BigEndian.Uint32(h[28:32])), int64(binary.BigEndian.Uint32(h[36:40])), nil
}

// reclaimer returns a SQLite file's free pages to the file system.
type reclaimer struct {
	file string
	// every is how often the free page count is looked at.
	every time.Duration
	// minFree is how many free bytes, and minFreeShare what share of the
	// file, must both be exceeded before space is returned.
	minFree      int64
	minFreeShare float64
	// step is how many pages one incremental vacuum returns, and rest how
	// long writers have the database between two steps.
	step int
	rest time.Duration
	log  klog.Logger
}

// reclaimResult is what one reclaim did.
type reclaimResult struct {
	Steps       int
	BytesBefore int64
	BytesAfter  int64
	// LongestStep is the longest a step held the write lock.
	LongestStep time.Duration
	// WALBytesAfter is the size of the write-ahead log after it.
	WALBytesAfter int64
}

// newReclaimer returns the reclaimer a virtual cluster's datastore runs:
// it looks every minute, and returns space once at least 8 MiB and a
// quarter of the file are free, 1 MiB a step.
func newReclaimer(file string, log klog.Logger) *reclaimer {
	return &reclaimer{file: file, every: time.Minute, minFree: 8 << 20, minFreeShare: 0.25, step: 256, rest: 20 * time.Millisecond, log: log}
}

// run reclaims space every r.every until ctx ends.
func (r *reclaimer) run(ctx context.Context) {
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		res, err := r.reclaim(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			r.log.Error(err, "returning the datastore's free space failed", "file", r.file)
		case res.Steps > 0:
			r.log.Info("returned the datastore's free space", "file", r.file, "bytesBefore", res.BytesBefore, "bytesAfter", res.BytesAfter,
				"walBytesAfter", res.WALBytesAfter, "steps", res.Steps, "longestStep", res.LongestStep)
		}
	}
}

// reclaim returns free pages, a step at a time, if enough are free.
func (r *reclaimer) reclaim(ctx context.Context) (reclaimResult, error) {
	var res reclaimResult
	pageSize, pages, free, err := sqliteHeader(r.file)
	if err != nil {
		return res, err
	}
	res.BytesBefore, res.BytesAfter = pages*pageSize, pages*pageSize
	if free*pageSize < r.minFree || float64(free) < r.minFreeShare*float64(pages) {
		return res, nil
	}
	db, err := sqliteOpen(r.file)
	if err != nil {
		return res, err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return res, err
	}
	defer conn.Close()
	for free > 0 {
		start := time.Now()
		// incremental_vacuum returns no rows but must be stepped to the end.
		rows, err := conn.QueryContext(ctx, fmt.Sprintf("PRAGMA incremental_vacuum(%d)", r.step))
		if err != nil {
			return res, err
		}
		for rows.Next() {
		}
		if err := rows.Close(); err != nil {
			return res, err
		}
		res.Steps++
		res.LongestStep = max(res.LongestStep, time.Since(start))
		before := free
		if err := conn.QueryRowContext(ctx, "PRAGMA freelist_count").Scan(&free); err != nil {
			return res, err
		}
		if free >= before {
			return res, fmt.Errorf("%s: an incremental vacuum returned no pages (%d free): is the database in incremental auto-vacuum mode?", r.file, free)
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(r.rest):
		}
	}
	// Move the WAL, which now holds the returned pages, into the file and
	// cut it to nothing. A truncating checkpoint holds writers back while
	// it waits for readers: it waits 100 ms at most, and if readers are
	// still there the WAL is left for kine's next checkpoint.
	if _, err := conn.ExecContext(ctx, "PRAGMA busy_timeout = 100"); err != nil {
		return res, err
	}
	var busy, logPages, checkpointed int
	if err := conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logPages, &checkpointed); err != nil {
		return res, err
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		return res, err
	}
	res.BytesAfter = pages * pageSize
	if fi, err := os.Stat(r.file + "-wal"); err == nil {
		res.WALBytesAfter = fi.Size()
	}
	return res, nil
}
