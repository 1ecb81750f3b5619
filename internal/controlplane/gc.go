package controlplane

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"k8s.io/klog/v2"
)

// An idle virtual cluster allocates about 0.2 MB/s (measured: 12 MB a
// minute, one GC a minute at GOGC=50); a pod costs it about 1.2 MB, so a
// burst of 25 pods/s allocates ~30 MB/s. While it allocates little, a lower
// GC target costs a few more, cheap, collections and keeps the heap smaller
// (10 idle clusters: 169 MiB PSS each with GOGC=50, 151 MiB with 25); while
// it is busy, the usual target keeps the GC from eating the sync's CPU.
const (
	// gcSampleEvery is how often the allocation rate is read.
	gcSampleEvery = 5 * time.Second
	// gcBusyBytesPerSecond is the allocation rate from which the process
	// counts as busy: ten times an idle cluster's.
	gcBusyBytesPerSecond = 2 << 20
	// gcQuietSamples is how many quiet samples in a row make it idle again,
	// so the tail of a burst is not collected with the idle target.
	gcQuietSamples = 6
)

// gcTuner picks the GC target from the allocation rate: busy as soon as
// one sample is over gcBusyBytesPerSecond, idle after gcQuietSamples below.
type gcTuner struct {
	busy, idle int
	quiet      int
}

// next returns the GC target for a sample of rate bytes a second.
func (g *gcTuner) next(rate float64) int {
	if rate >= gcBusyBytesPerSecond {
		g.quiet = 0
		return g.busy
	}
	if g.quiet < gcQuietSamples {
		g.quiet++
	}
	if g.quiet < gcQuietSamples {
		return g.busy
	}
	return g.idle
}

// tuneGC sets the GC target to busy or idle by the process's allocation
// rate until ctx ends.
func tuneGC(ctx context.Context, busy, idle int, log klog.Logger) {
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	read := func() float64 {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return float64(sample[0].Value.Uint64())
	}
	g := &gcTuner{busy: busy, idle: idle}
	set := busy
	debug.SetGCPercent(busy)
	last, lastAt := read(), time.Now()
	t := time.NewTicker(gcSampleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			allocated := read()
			percent := g.next((allocated - last) / now.Sub(lastAt).Seconds())
			last, lastAt = allocated, now
			if percent != set {
				debug.SetGCPercent(percent)
				log.V(2).Info("GC target", "gogc", percent)
				set = percent
			}
		}
	}
}
