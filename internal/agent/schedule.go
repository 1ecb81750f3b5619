package agent

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/robfig/cron/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
)

// ConditionSnapshotScheduleValid: the snapshot schedule annotations
// parsed; absent without a schedule.
const ConditionSnapshotScheduleValid = "SnapshotScheduleValid"

// defaultKeep is how many scheduled snapshots are kept without
// storage.loft.sh/snapshot-keep; maxKeep, the most it may ask to keep.
const (
	defaultKeep = 3
	maxKeep     = 100
)

// DefaultSnapshotMinInterval is the shortest time between two scheduled
// snapshots of one cluster an agent allows by default: a schedule is the
// tenant's, and each snapshot costs the host CPU and disk.
const DefaultSnapshotMinInterval = 10 * time.Minute

var scheduleParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// snapshotSchedule is vc's schedule and retention: its own annotations
// over its templates'.
type snapshotSchedule struct {
	schedule cron.Schedule
	keep     int
}

// parseSnapshotSchedule reads vc's schedule; one that would run more often
// than every minInterval is refused.
func parseSnapshotSchedule(vc *storagev1.VirtualCluster, tmpls []template, minInterval time.Duration) (*snapshotSchedule, error) {
	ann := map[string]string{}
	for _, layer := range append(templateAnnotations(tmpls), vc.Annotations) {
		for _, k := range []string{storagev1.AnnotationSnapshotSchedule, storagev1.AnnotationSnapshotKeep} {
			if v, ok := layer[k]; ok {
				ann[k] = v
			}
		}
	}
	spec := ann[storagev1.AnnotationSnapshotSchedule]
	if spec == "" {
		return nil, nil
	}
	s, err := scheduleParser.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %v (five cron fields, UTC, e.g. \"0 3 * * *\")", storagev1.AnnotationSnapshotSchedule, spec, err)
	}
	if gap := shortestGap(s); gap < minInterval {
		return nil, fmt.Errorf("%s %q runs every %s; this host allows a scheduled snapshot every %s at most (the agent's --snapshot-min-interval)",
			storagev1.AnnotationSnapshotSchedule, spec, gap, minInterval)
	}
	keep := defaultKeep
	if v, ok := ann[storagev1.AnnotationSnapshotKeep]; ok {
		if keep, err = strconv.Atoi(v); err != nil || keep < 1 || keep > maxKeep {
			return nil, fmt.Errorf("%s %q: must be a whole number from 1 to %d", storagev1.AnnotationSnapshotKeep, v, maxKeep)
		}
	}
	return &snapshotSchedule{schedule: s, keep: keep}, nil
}

// shortestGap is the shortest time between two runs of s: @every's delay,
// or the least gap between a cron schedule's first 1000 runs in 2025 and
// 2026 (a cron field's finest step is a minute, so only minimums over a
// minute depend on this sampling).
func shortestGap(s cron.Schedule) time.Duration {
	if every, ok := s.(cron.ConstantDelaySchedule); ok {
		return every.Delay
	}
	gap, end := time.Duration(math.MaxInt64), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	prev := s.Next(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	for range 1000 {
		next := s.Next(prev)
		if next.IsZero() || next.After(end) {
			break
		}
		gap, prev = min(gap, next.Sub(prev)), next
	}
	return gap
}

func templateAnnotations(tmpls []template) []map[string]string {
	out := make([]map[string]string, 0, len(tmpls))
	for _, t := range tmpls {
		out = append(out, t.Annotations)
	}
	return out
}

// scheduleSnapshots makes vc's snapshot when its schedule is due (asleep
// or awake: a snapshot does not wake it) and deletes the scheduled ones
// past its retention, oldest first. It returns when it should look again
// (0: no schedule).
func (r *reconciler) scheduleSnapshots(ctx context.Context, vc *storagev1.VirtualCluster, tmpls []template) (time.Duration, error) {
	sched, err := parseSnapshotSchedule(vc, tmpls, r.snapshotMinInterval())
	if err != nil {
		if r.setCondition(vc, ConditionSnapshotScheduleValid, false, "InvalidAnnotation", err.Error()+"; no snapshot is scheduled until it is fixed") {
			r.recorder.Eventf(vc, nil, corev1.EventTypeWarning, "InvalidSnapshotSchedule", "Snapshot", "%s", err.Error())
		}
		return 0, nil
	}
	if sched == nil {
		meta.RemoveStatusCondition(&vc.Status.Conditions, ConditionSnapshotScheduleValid)
		return 0, nil
	}
	r.setCondition(vc, ConditionSnapshotScheduleValid, true, "Valid", "snapshots are scheduled")
	list := &storagev1.VirtualClusterSnapshotList{}
	if err := r.client.List(ctx, list, client.InNamespace(vc.Namespace), client.MatchingLabels{storagev1.LabelScheduled: vc.Name}); err != nil {
		return 0, err
	}
	items := list.Items
	sort.Slice(items, func(i, j int) bool { return items[i].CreationTimestamp.Before(&items[j].CreationTimestamp) })
	last := vc.CreationTimestamp.Time
	if n := len(items); n > 0 {
		last = items[n-1].CreationTimestamp.Time
	}
	now := r.clock()
	next := sched.schedule.Next(last)
	if !next.After(now) {
		name := fmt.Sprintf("%s-scheduled-%s", vc.Name, now.UTC().Format("20060102-150405"))
		snap := &storagev1.VirtualClusterSnapshot{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: vc.Namespace, Labels: map[string]string{storagev1.LabelScheduled: vc.Name}},
			Spec:       storagev1.VirtualClusterSnapshotSpec{VirtualCluster: vc.Name},
		}
		if err := r.client.Create(ctx, snap); err != nil && !apierrors.IsAlreadyExists(err) {
			return 0, fmt.Errorf("create scheduled snapshot %s: %w", name, err)
		}
		items = append(items, *snap)
		next = sched.schedule.Next(now)
	}
	if err := r.prune(ctx, items, sched.keep); err != nil {
		return 0, err
	}
	return next.Sub(now), nil
}

// snapshotMinInterval is the shortest time between scheduled snapshots
// this agent allows.
func (r *reconciler) snapshotMinInterval() time.Duration {
	if r.snaps == nil {
		return DefaultSnapshotMinInterval
	}
	return r.snaps.minInterval
}

// prune deletes the oldest of items (oldest first) beyond keep; a snapshot
// not yet written counts, so a failing schedule does not delete every
// good one, but only Completed or Failed ones are deleted.
func (r *reconciler) prune(ctx context.Context, items []storagev1.VirtualClusterSnapshot, keep int) error {
	for i := 0; i < len(items)-keep; i++ {
		s := &items[i]
		if s.Status.Phase != storagev1.SnapshotCompleted && s.Status.Phase != storagev1.SnapshotFailed {
			continue
		}
		if err := r.client.Delete(ctx, s); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete scheduled snapshot %s past retention: %w", s.Name, err)
		}
	}
	return nil
}
