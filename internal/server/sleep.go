package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/sleepmode"
)

// Sleep mode as the proxy sees it: every request to a virtual cluster
// counts as activity (recorded in its last-activity annotation at most
// once per activityEvery, or a third of its sleep-after when that is
// shorter), a request in flight (a watch, exec, logs -f) keeps counting
// while it is open, and a request to a sleeping cluster wakes it and waits
// until it answers.
const (
	activityEvery = time.Minute
	// openCheckEvery is how often requests in flight are looked at (each
	// is recorded only when its interval has passed).
	openCheckEvery = time.Second
	// wakeTimeout bounds how long a request waits for a cluster to wake
	// (or to finish starting) before it gets a 503.
	wakeTimeout = 2 * time.Minute
	// wakePollEvery is how often a waking cluster's phase is read.
	wakePollEvery = 100 * time.Millisecond
)

// activityTarget is a virtual cluster whose activity is recorded.
type activityTarget struct {
	cc       *clusterConfig
	ns, name string
	// every is how often its activity is recorded (see recordEvery).
	every time.Duration
}

// recordEvery is how often vc's activity is written: once a minute, or a
// third of its sleep-after when that is shorter (at least every second),
// so a cluster in use never looks idle for its sleep-after.
func recordEvery(vc *storagev1.VirtualCluster) time.Duration {
	if vc == nil || vc.Status.SleepAfterSeconds <= 0 {
		return activityEvery
	}
	return min(activityEvery, max(time.Second, time.Duration(vc.Status.SleepAfterSeconds)*time.Second/3))
}

func (t activityTarget) key() string { return t.cc.name + "/" + t.ns + "/" + t.name }

// activity records requests to virtual clusters.
type activity struct {
	log     klog.Logger
	mu      sync.Mutex
	written map[string]time.Time // when last-activity was last written, by target key
	open    map[string]int       // requests in flight, by target key
	targets map[string]activityTarget
	wakes   singleflight.Group
}

func newActivity(log klog.Logger) *activity {
	return &activity{log: log, written: map[string]time.Time{}, open: map[string]int{}, targets: map[string]activityTarget{}}
}

// begin counts a request to t from now until the returned func is called.
func (a *activity) begin(ctx context.Context, t activityTarget, vc *storagev1.VirtualCluster) func() {
	k := t.key()
	a.mu.Lock()
	a.open[k]++
	a.targets[k] = t
	a.mu.Unlock()
	a.touch(ctx, t, vc)
	return func() {
		a.mu.Lock()
		if a.open[k]--; a.open[k] <= 0 {
			delete(a.open, k)
			delete(a.targets, k)
		}
		a.mu.Unlock()
	}
}

// touch writes t's last-activity annotation now unless it (or this server)
// wrote it less than activityEvery ago. The write does not hold the request.
func (a *activity) touch(ctx context.Context, t activityTarget, vc *storagev1.VirtualCluster) {
	now := time.Now()
	k := t.key()
	a.mu.Lock()
	last := a.written[k]
	if vc != nil {
		if at := sleepmode.When(vc.Annotations, storagev1.AnnotationLastActivity); at.After(last) {
			last = at
		}
	}
	if now.Sub(last) < t.every {
		a.mu.Unlock()
		return
	}
	a.written[k] = now
	a.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := annotateVirtualCluster(ctx, t, map[string]*string{storagev1.AnnotationLastActivity: sleepmode.Stamp(now)}); err != nil {
			a.log.Error(err, "record activity", "virtualcluster", k)
			a.mu.Lock()
			delete(a.written, k) // try again with the next request
			a.mu.Unlock()
		}
	}()
}

// keepOpenAlive records activity for the clusters with requests in flight,
// every openCheckEvery, until ctx ends.
func (a *activity) keepOpenAlive(ctx context.Context) {
	tick := time.NewTicker(openCheckEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		a.mu.Lock()
		targets := make([]activityTarget, 0, len(a.targets))
		for _, t := range a.targets {
			targets = append(targets, t)
		}
		a.mu.Unlock()
		for _, t := range targets {
			// Its sleep-after may have changed since the request began.
			vc, _, err := t.cc.virtual(ctx, t.ns, t.name)
			if err != nil || vc == nil {
				continue
			}
			t.every = recordEvery(vc)
			a.touch(ctx, t, vc)
		}
	}
}

// errStillAsleep: the cluster did not answer within wakeTimeout.
var errStillAsleep = errors.New("did not wake in time")

// wake asks t to wake (its last-activity now, force-sleep removed) and
// waits until it is Ready with a backend, or ctx ends, or wakeTimeout.
// Concurrent requests to the same cluster share one wake.
func (a *activity) wake(ctx context.Context, t activityTarget, asleep bool) (*storagev1.VirtualCluster, *backend, error) {
	type woken struct {
		vc *storagev1.VirtualCluster
		b  *backend
	}
	ch := a.wakes.DoChan(t.key(), func() (interface{}, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wakeTimeout)
		defer cancel()
		var askedAt time.Time
		ask := func() error {
			askedAt = time.Now()
			err := annotateVirtualCluster(ctx, t, map[string]*string{
				storagev1.AnnotationLastActivity: sleepmode.Stamp(askedAt),
				storagev1.AnnotationForceSleep:   nil,
			})
			if err != nil {
				return fmt.Errorf("wake it: %w", err)
			}
			a.mu.Lock()
			a.written[t.key()] = askedAt
			a.mu.Unlock()
			return nil
		}
		if asleep {
			if err := ask(); err != nil {
				return nil, err
			}
		}
		tick := time.NewTicker(wakePollEvery)
		defer tick.Stop()
		for {
			vc, b, err := t.cc.virtual(ctx, t.ns, t.name)
			if vc != nil {
				if to, ok := storagev1.MovingTo(vc, time.Now()); ok {
					return nil, &movingError{to: to}
				}
			}
			switch {
			case err != nil:
				return nil, err
			case vc != nil && sleepmode.When(vc.Annotations, storagev1.AnnotationSleepingSince).After(askedAt):
				// Asleep again since we asked (or it went to sleep while
				// starting): ask again.
				if err := ask(); err != nil {
					return nil, err
				}
			case vc == nil:
				return nil, fmt.Errorf("it was deleted")
			case vc.Status.Phase == storagev1.PhaseFailed:
				return nil, fmt.Errorf("it failed: %s", vc.Status.Message)
			case b != nil && vc.Status.Phase == storagev1.PhaseReady:
				return woken{vc, b}, nil
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("%w (phase %s: %s)", errStillAsleep, vc.Status.Phase, vc.Status.Message)
			case <-tick.C:
			}
		}
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, nil, res.Err
		}
		w := res.Val.(woken)
		return w.vc, w.b, nil
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// movingError: the cluster is being moved to cluster to; it is not woken.
type movingError struct{ to string }

func (e *movingError) Error() string {
	return "it is moving to cluster " + e.to + "; retry in a few seconds: it then answers from there"
}

// refuseMoving answers 503 with Retry-After for virtual cluster ns/name of
// vc while a move holds it, and reports whether it did.
func refuseMoving(w http.ResponseWriter, vc *storagev1.VirtualCluster, err error) bool {
	var moving *movingError
	if vc != nil {
		if to, ok := storagev1.MovingTo(vc, time.Now()); ok {
			moving = &movingError{to: to}
		}
	}
	if moving == nil && !errors.As(err, &moving) {
		return false
	}
	w.Header().Set("Retry-After", "2")
	writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "virtual cluster "+vc.Namespace+"/"+vc.Name+": "+moving.Error())
	return true
}

// asleep reports whether vc sleeps (or is going to sleep).
func asleep(vc *storagev1.VirtualCluster) bool {
	return vc.Annotations[storagev1.AnnotationSleepingSince] != "" || vc.Status.Phase == storagev1.PhaseSleeping
}

// starting reports whether vc is on its way to Ready.
func starting(vc *storagev1.VirtualCluster) bool {
	switch vc.Status.Phase {
	case "", storagev1.PhasePending, storagev1.PhaseDeploying:
		return true
	}
	return false
}

// annotateVirtualCluster sets (nil: removes) annotations of t with a merge
// patch.
func annotateVirtualCluster(ctx context.Context, t activityTarget, set map[string]*string) error {
	vc := &storagev1.VirtualCluster{}
	vc.Namespace, vc.Name = t.ns, t.name
	return t.cc.client.Patch(ctx, vc, client.RawPatch(types.MergePatchType, sleepmode.AnnotationsPatch(set)))
}
