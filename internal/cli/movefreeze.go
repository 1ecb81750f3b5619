package cli

import (
	"context"
	"fmt"
	"maps"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/sleepmode"
)

// moveLease is how long a move holds its source without renewing the hold;
// the CLI renews it three times as often, so a stopped CLI frees the
// source within this time.
const moveLease = 15 * time.Second

// freeze holds the source still before its snapshot, so that nothing
// written to it is left behind: the move's lease (moving-to, moving-until)
// makes the platform answer its requests 503 with Retry-After instead of
// waking it, and force-sleep stops its control plane (and so its own
// controllers and pods' clients). It returns once the source sleeps, with
// a func that stops renewing the lease.
func (m *move) freeze(ctx context.Context) (func(), error) {
	m.wasAwake = m.srcVC.Status.Phase != storagev1.PhaseSleeping && m.srcVC.Annotations[storagev1.AnnotationSleepingSince] == ""
	m.hadForceSleep = m.srcVC.Annotations[storagev1.AnnotationForceSleep] != ""
	set := m.lease(time.Now())
	set[storagev1.AnnotationForceSleep] = ptr.To("true")
	if err := m.annotateSource(ctx, set); err != nil {
		return func() {}, err
	}
	fmt.Fprintf(m.out, "Holding virtual cluster %s still for the move: requests to it wait until it answers from cluster %s\n", m.name, m.o.to)
	renew, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(moveLease / 3)
		defer tick.Stop()
		for {
			select {
			case <-renew.Done():
				return
			case now := <-tick.C:
				_ = m.annotateSource(renew, m.lease(now)) // the next tick tries again
			}
		}
	}()
	stopRenewing := func() { stop(); <-done }
	err := waitPhase(ctx, m.out, func(ctx context.Context) (*storagev1.VirtualCluster, error) {
		vc := &storagev1.VirtualCluster{}
		return vc, m.src.Get(ctx, types.NamespacedName{Namespace: m.ns, Name: m.name}, vc)
	}, storagev1.PhaseSleeping, m.o.timeout)
	return stopRenewing, err
}

// lease is the move's hold on the source from now.
func (m *move) lease(now time.Time) map[string]*string {
	return map[string]*string{
		storagev1.AnnotationMovingTo:    ptr.To(m.o.to),
		storagev1.AnnotationMovingUntil: ptr.To(now.Add(moveLease).UTC().Format(time.RFC3339)),
	}
}

// thaw ends the move's hold on the source: a source that was awake wakes
// up, one that slept sleeps on as before.
func (m *move) thaw(ctx context.Context) error {
	set := map[string]*string{storagev1.AnnotationMovingTo: nil, storagev1.AnnotationMovingUntil: nil}
	switch {
	case m.wasAwake:
		maps.Copy(set, sleepmode.WakeupAnnotations(time.Now()))
	case !m.hadForceSleep:
		set[storagev1.AnnotationForceSleep] = nil
	}
	return m.annotateSource(context.WithoutCancel(ctx), set)
}

func (m *move) annotateSource(ctx context.Context, set map[string]*string) error {
	vc := &storagev1.VirtualCluster{}
	vc.Namespace, vc.Name = m.ns, m.name
	if err := m.src.Patch(ctx, vc, client.RawPatch(types.MergePatchType, sleepmode.AnnotationsPatch(set))); err != nil {
		return fmt.Errorf("virtual cluster %s in cluster %s: %w", m.name, m.from, err)
	}
	return nil
}
