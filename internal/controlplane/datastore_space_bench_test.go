package controlplane

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/klog/v2"

	"github.com/sublet-dev/sublet/internal/pki"
)

// BenchmarkDatastoreSpace: SUBLET_BENCH_UPDATES (200,000) updates of 1 KiB
// values over 1,000 keys by 4 writers, on kine/SQLite as a virtual cluster
// runs it and on the embedded etcd. Every 2 s each datastore is compacted
// to the revision of the pass before, as the API server does every 5
// minutes (a compressed clock, so the run takes minutes); then SQLite's
// free pages are returned (the reclaimer, with a virtual cluster's
// thresholds, looking every 2 s instead of every minute) and etcd is
// defragmented when as much of its file is free (what an operator's job
// does; etcd does not do it by itself). "sqlite-noreclaim" is SQLite with
// compaction alone. The file size is sampled every second. Reported per
// datastore: peak (database and WAL) and final size (each), update
// latency p50/p99/max, and the
// longest reclaim step or defragmentation (the pause writers see).
func BenchmarkDatastoreSpace(b *testing.B) {
	updates := 200000
	if v, err := strconv.Atoi(os.Getenv("SUBLET_BENCH_UPDATES")); err == nil && v > 0 {
		updates = v
	}
	for _, kind := range []string{"sqlite", "sqlite-noreclaim", "etcd"} {
		b.Run(kind, func(b *testing.B) {
			p := pki.Dir{Path: b.TempDir()}
			if err := p.Ensure([]string{"127.0.0.1", "localhost"}); err != nil {
				b.Fatal(err)
			}
			dir := b.TempDir()
			var store datastore
			var size, walSize func() int64
			walSize = func() int64 { return 0 }
			if strings.HasPrefix(kind, "sqlite") {
				file := filepath.Join(dir, "state.db")
				// The benchmark reclaims itself, to time it.
				store = &kineStore{file: file, pki: p, log: klog.Background(), reclaimEvery: -1}
				size = func() int64 { return fileSize(file) }
				walSize = func() int64 { return fileSize(file + "-wal") }
			} else {
				store = &etcdStore{dir: filepath.Join(dir, "etcd"), pki: p, logFile: filepath.Join(dir, "etcd.log")}
				size = func() int64 { return fileSize(filepath.Join(dir, "etcd", "member", "snap", "db")) }
			}
			url, err := store.start(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			defer store.stop()
			client, err := clientv3.New(etcdClientConfig(b, p, url))
			if err != nil {
				b.Fatal(err)
			}
			defer client.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()

			var longestPause atomic.Int64
			var maintenance sync.WaitGroup
			maintenance.Add(1)
			go func() {
				defer maintenance.Done()
				var previous int64
				r := newReclaimer(filepath.Join(dir, "state.db"), klog.Background())
				for {
					select {
					case <-ctx.Done():
						return
					case <-time.After(2 * time.Second):
					}
					resp, err := client.Get(ctx, "bench/0")
					if err != nil {
						continue
					}
					if previous > 0 {
						_, _ = client.Compact(ctx, previous)
					}
					previous = resp.Header.Revision
					var pause time.Duration
					switch kind {
					case "sqlite":
						res, err := r.reclaim(ctx)
						if err != nil && ctx.Err() == nil {
							b.Error(err)
						}
						pause = res.LongestStep
					case "etcd":
						st, err := client.Status(ctx, url)
						if err != nil || st.DbSize-st.DbSizeInUse < r.minFree || float64(st.DbSize-st.DbSizeInUse) < r.minFreeShare*float64(st.DbSize) {
							continue
						}
						start := time.Now()
						if _, err := client.Defragment(ctx, url); err != nil && ctx.Err() == nil {
							b.Error(err)
						}
						pause = time.Since(start)
					}
					if int64(pause) > longestPause.Load() {
						longestPause.Store(int64(pause))
					}
				}
			}()
			var peak atomic.Int64
			var samples []string
			start := time.Now()
			maintenance.Add(1)
			go func() {
				defer maintenance.Done()
				for {
					select {
					case <-ctx.Done():
						return
					case <-time.After(time.Second):
					}
					s, w := size(), walSize()
					if s+w > peak.Load() {
						peak.Store(s + w)
					}
					if n := int(time.Since(start).Seconds()); n%10 == 0 {
						samples = append(samples, fmt.Sprintf("%ds:%.1f+%.1fMiB", n, float64(s)/(1<<20), float64(w)/(1<<20)))
					}
				}
			}()

			value := strings.Repeat("v", 1024)
			const writers, keys = 4, 1000
			lat := make([][]float64, writers)
			var wg sync.WaitGroup
			b.ResetTimer()
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for i := w; i < updates; i += writers {
						t0 := time.Now()
						if _, err := client.Put(ctx, fmt.Sprintf("bench/%d", i%keys), value); err != nil {
							b.Error(err)
							return
						}
						lat[w] = append(lat[w], float64(time.Since(t0).Microseconds())/1000)
					}
				}(w)
			}
			wg.Wait()
			elapsed := time.Since(start)
			// Two more passes: the last writes compacted, their space returned.
			time.Sleep(5 * time.Second)
			b.StopTimer()
			cancel()
			maintenance.Wait()
			var all []float64
			for _, l := range lat {
				all = append(all, l...)
			}
			sort.Float64s(all)
			b.ReportMetric(float64(peak.Load())/(1<<20), "MiB-peak")
			b.ReportMetric(float64(size())/(1<<20), "MiB-final")
			b.ReportMetric(float64(walSize())/(1<<20), "MiB-final-wal")
			b.ReportMetric(pct(all, 50), "ms-update-p50")
			b.ReportMetric(pct(all, 99), "ms-update-p99")
			b.ReportMetric(all[len(all)-1], "ms-update-max")
			b.ReportMetric(float64(time.Duration(longestPause.Load()).Microseconds())/1000, "ms-longest-reclaim")
			b.ReportMetric(float64(updates)/elapsed.Seconds(), "updates/s")
			b.ReportMetric(0, "ns/op")
			b.Logf("%s: file size over time (database + WAL): %s", kind, strings.Join(samples, " "))
		})
	}
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// pct is the p-th percentile of sorted v.
func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	i := int(float64(len(v)-1) * p / 100)
	return v[i]
}
