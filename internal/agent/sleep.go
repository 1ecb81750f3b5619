package agent

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/sleepmode"
	"github.com/sublet-dev/sublet/internal/translate"
)

// stopPollEvery is how often a runtime that is still stopping is asked
// again.
const stopPollEvery = time.Second

// stopGrace is how long a cluster announced as going to sleep keeps running
// before it stops: longer than the platform server trusts what it read
// about a ready cluster (5 s), so no request is sent to a stopped control
// plane, and a request in that time (which counts as activity) cancels
// the sleep.
const stopGrace = 6 * time.Second

// asleepCheckEvery bounds how long a sleeping cluster goes unlooked at
// when nothing is scheduled (a request wakes it through an annotation,
// which is looked at at once).
const asleepCheckEvery = 5 * time.Minute

// sleepOutcome is what sleep mode did to a virtual cluster this round.
type sleepOutcome struct {
	// asleep: the cluster sleeps (or was deleted); the runtime is not to
	// be ensured.
	asleep bool
	// after: when to look again (0: as the rest of the reconcile says).
	after time.Duration
}

// sleepMode applies vc's sleep mode (its annotations over its templates'):
// it puts the cluster to sleep, keeps it asleep, wakes it or deletes it.
// sleepConfig is vc's sleep mode, from its templates' annotations and its
// own; invalid annotations are reported and only an explicit sleep request
// of them counts.
func (r *reconciler) sleepConfig(vc *storagev1.VirtualCluster, tmpls []template) sleepmode.Config {
	layers := make([]map[string]string, 0, len(tmpls)+1)
	for _, t := range tmpls {
		layers = append(layers, t.Annotations)
	}
	cfg, err := sleepmode.Parse(sleepmode.Effective(append(layers, vc.Annotations)...))
	switch {
	case err != nil:
		msg := err.Error() + "; the cluster stays awake until the annotation is fixed"
		if r.setCondition(vc, storagev1.ConditionSleepModeValid, false, "InvalidAnnotation", msg) {
			r.recorder.Eventf(vc, nil, corev1.EventTypeWarning, "InvalidSleepMode", "SleepMode", msg)
		}
		return sleepmode.Config{Location: time.UTC, ForceSleep: cfg.ForceSleep, PreventWakeup: cfg.PreventWakeup}
	case cfg.Configured() || meta.FindStatusCondition(vc.Status.Conditions, storagev1.ConditionSleepModeValid) != nil:
		r.setCondition(vc, storagev1.ConditionSleepModeValid, true, "Valid", "the sleep mode annotations parsed")
	}
	return cfg
}

func (r *reconciler) sleepMode(ctx context.Context, vc *storagev1.VirtualCluster, tmpls []template) (sleepOutcome, error) {
	cfg := r.sleepConfig(vc, tmpls)
	vc.Status.SleepAfterSeconds = int64(cfg.SleepAfter / time.Second)
	now := r.clock()
	st := sleepmode.State{
		LastActivity:  sleepmode.When(vc.Annotations, storagev1.AnnotationLastActivity),
		SleepingSince: sleepmode.When(vc.Annotations, storagev1.AnnotationSleepingSince),
		AwakeSince:    vc.CreationTimestamp.Time,
	}
	// Inactivity counts from when the cluster last woke or became ready,
	// never while it starts: the requests waiting for it are not served yet.
	for typ, status := range map[string]metav1.ConditionStatus{storagev1.ConditionSleeping: metav1.ConditionFalse, storagev1.ConditionReady: metav1.ConditionTrue} {
		if c := meta.FindStatusCondition(vc.Status.Conditions, typ); c != nil && c.Status == status && c.LastTransitionTime.After(st.AwakeSince) {
			st.AwakeSince = c.LastTransitionTime.Time
		}
	}
	if !st.Asleep() && vc.Status.Phase != storagev1.PhaseReady {
		st.AwakeSince = now
	}
	if last := st.LastActivity; !last.IsZero() {
		vc.Status.LastActivity = &metav1.Time{Time: last}
	}
	d := cfg.Decide(now, st)
	switch {
	case d.Delete:
		r.recorder.Eventf(vc, nil, corev1.EventTypeNormal, "DeletedAfterInactivity", "SleepMode",
			"no request through the platform for %s (%s): deleting the virtual cluster", cfg.DeleteAfter, storagev1.AnnotationDeleteAfter)
		if err := r.client.Delete(ctx, vc); err != nil && !apierrors.IsNotFound(err) {
			return sleepOutcome{}, err
		}
		return sleepOutcome{asleep: true}, nil
	case st.Asleep() && !d.Wake && now.Sub(st.SleepingSince) < stopGrace:
		r.setPhase(vc, storagev1.PhaseSleeping, "Stopping", "going to sleep: the control plane stops in a few seconds unless a request comes")
		return sleepOutcome{asleep: true, after: st.SleepingSince.Add(stopGrace).Sub(now)}, nil
	case st.Asleep() && !d.Wake:
		if _, seen := r.keptAsleep.LoadOrStore(vc.UID, true); !seen {
			r.log.Info("keeping virtual cluster asleep", "virtualcluster", klog.KObj(vc), "since", st.SleepingSince.UTC().Format(time.RFC3339))
		}
		out, err := r.sleep(ctx, vc, st.SleepingSince, now)
		if out.after == 0 {
			out.after = asleepCheckEvery
			if !d.Next.IsZero() {
				out.after = min(out.after, d.Next.Sub(now))
			}
		}
		return out, err
	case d.Wake:
		if err := r.wake(ctx, vc, d.Reason, now); err != nil {
			return sleepOutcome{}, err
		}
		r.keptAsleep.Delete(vc.UID)
	case d.Sleep:
		r.recorder.Eventf(vc, nil, corev1.EventTypeNormal, "Sleeping", "SleepMode",
			"going to sleep (%s): the control plane stops and the host pods are deleted; everything else is kept, and the next request through the platform wakes it", d.Reason)
		if err := r.annotate(ctx, vc, map[string]*string{storagev1.AnnotationSleepingSince: sleepmode.Stamp(now)}); err != nil {
			return sleepOutcome{}, err
		}
		r.setCondition(vc, storagev1.ConditionSleeping, true, d.Reason, "asleep: "+sleepReasons[d.Reason])
		vc.Status.SleepingSince = &metav1.Time{Time: now}
		r.setPhase(vc, storagev1.PhaseSleeping, "Stopping", "going to sleep: the control plane stops in a few seconds unless a request comes")
		return sleepOutcome{asleep: true, after: stopGrace}, nil
	case cfg.Configured():
		r.setCondition(vc, storagev1.ConditionSleeping, false, "Awake", "awake")
	}
	var out sleepOutcome
	if !d.Next.IsZero() {
		out.after = max(d.Next.Sub(now), time.Second)
	}
	return out, nil
}

var sleepReasons = map[string]string{
	"Inactivity":    "no request through the platform for " + storagev1.AnnotationSleepAfter,
	"SleepSchedule": "its " + storagev1.AnnotationSleepSchedule + " says so",
	"ForceSleep":    "put to sleep by hand (" + storagev1.AnnotationForceSleep + ")",
}

// sleep keeps vc asleep: its runtime stopped, then its host pods deleted
// (after the syncer stopped, so it does not see them go), everything else
// kept. The phase says since when and how to wake it.
func (r *reconciler) sleep(ctx context.Context, vc *storagev1.VirtualCluster, since, now time.Time) (sleepOutcome, error) {
	stopped, err := r.runtime.Sleep(ctx, vc)
	if err != nil {
		return sleepOutcome{asleep: true}, fmt.Errorf("stop the virtual cluster to sleep: %w", err)
	}
	msg := fmt.Sprintf("asleep since %s; a request through the platform or 'sublet wakeup vcluster %s' wakes it", since.UTC().Format(time.RFC3339), vc.Name)
	if vc.Annotations[storagev1.AnnotationPreventWakeup] == "true" {
		msg = fmt.Sprintf("asleep since %s; only 'sublet wakeup vcluster %s' wakes it (%s)", since.UTC().Format(time.RFC3339), vc.Name, storagev1.AnnotationPreventWakeup)
	}
	vc.Status.SleepingSince = &metav1.Time{Time: since}
	r.setCondition(vc, storagev1.ConditionRuntimeReady, false, "Sleeping", msg)
	r.setCondition(vc, storagev1.ConditionReady, false, "Sleeping", msg)
	if !stopped {
		r.setPhase(vc, storagev1.PhaseSleeping, "Stopping", "going to sleep: waiting for the control plane to stop")
		return sleepOutcome{asleep: true, after: stopPollEvery}, nil
	}
	err = r.host.CoreV1().Pods(vc.Namespace).DeleteCollection(ctx, metav1.DeleteOptions{},
		metav1.ListOptions{LabelSelector: translate.LabelCopyOf + "=" + vc.Name})
	if err != nil && !apierrors.IsNotFound(err) {
		return sleepOutcome{asleep: true}, fmt.Errorf("delete the sleeping cluster's host pods: %w", err)
	}
	r.setPhase(vc, storagev1.PhaseSleeping, "Sleeping", msg)
	return sleepOutcome{asleep: true}, nil
}

// wake starts waking vc: the sleep annotation goes and its activity counts
// from now, so sleep-after does not put it straight back to sleep; the
// runtime is then ensured as for any cluster.
func (r *reconciler) wake(ctx context.Context, vc *storagev1.VirtualCluster, reason string, now time.Time) error {
	err := r.annotate(ctx, vc, map[string]*string{
		storagev1.AnnotationSleepingSince: nil,
		storagev1.AnnotationLastActivity:  sleepmode.Stamp(now),
	})
	if err != nil {
		return err
	}
	vc.Status.SleepingSince = nil
	vc.Status.LastActivity = &metav1.Time{Time: now}
	r.setCondition(vc, storagev1.ConditionSleeping, false, reason, "awake: woken by "+map[string]string{
		"Activity": "a request through the platform", "WakeupSchedule": "its " + storagev1.AnnotationWakeupSchedule,
	}[reason])
	r.recorder.Eventf(vc, nil, corev1.EventTypeNormal, "WakingUp", "SleepMode", "waking up (%s): starting the control plane; the host pods come back", reason)
	return nil
}

// annotate sets (or, for nil, removes) annotations of vc with a patch.
func (r *reconciler) annotate(ctx context.Context, vc *storagev1.VirtualCluster, set map[string]*string) error {
	base := vc.DeepCopy()
	if vc.Annotations == nil {
		vc.Annotations = map[string]string{}
	}
	for k, v := range set {
		if v == nil {
			delete(vc.Annotations, k)
		} else {
			vc.Annotations[k] = *v
		}
	}
	status := vc.Status
	if err := r.client.Patch(ctx, vc, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("annotate the virtual cluster: %w", err)
	}
	vc.Status = status // the patch returns the stored status; keep ours
	return nil
}
