// Package sleepmode decides when a virtual cluster sleeps, wakes or is
// deleted, from its sleep mode annotations (sleepmode.loft.sh/…) and what
// happened to it. It is pure: the caller passes the time.
package sleepmode

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
)

// configKeys are the annotations a template may set for the clusters that
// use it.
var configKeys = []string{
	storagev1.AnnotationSleepAfter, storagev1.AnnotationDeleteAfter,
	storagev1.AnnotationSleepSchedule, storagev1.AnnotationWakeupSchedule, storagev1.AnnotationTimezone,
}

// AnnotationsPatch is a JSON merge patch that sets the annotations in set,
// and removes those whose value is nil: how the server, the CLI and the UI
// change a VirtualCluster's sleep annotations without touching the rest.
func AnnotationsPatch(set map[string]*string) []byte {
	data, err := json.Marshal(map[string]interface{}{"metadata": map[string]interface{}{"annotations": set}})
	if err != nil {
		panic(err) // strings always marshal
	}
	return data
}

// Stamp is t as the value of a time annotation (unix seconds).
func Stamp(t time.Time) *string {
	s := strconv.FormatInt(t.Unix(), 10)
	return &s
}

// When reads time annotation key of ann (zero if absent or not unix
// seconds).
func When(ann map[string]string, key string) time.Time {
	n, err := strconv.ParseInt(ann[key], 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}
	}
	return time.Unix(n, 0)
}

// WakeupAnnotations wake a cluster by hand (`sublet wakeup`, the web UI):
// no more force-sleep or prevent-wakeup, and activity now.
func WakeupAnnotations(now time.Time) map[string]*string {
	return map[string]*string{
		storagev1.AnnotationForceSleep: nil, storagev1.AnnotationPreventWakeup: nil,
		storagev1.AnnotationLastActivity: Stamp(now),
	}
}

// Config is a cluster's sleep mode.
type Config struct {
	SleepAfter, DeleteAfter       time.Duration
	SleepSchedule, WakeupSchedule cron.Schedule
	Location                      *time.Location
	// ForceSleep: sleep now and stay asleep until woken (a request, unless
	// PreventWakeup, or `sublet wakeup`).
	ForceSleep, PreventWakeup bool
}

// Configured reports whether anything can put the cluster to sleep or
// delete it.
func (c Config) Configured() bool {
	return c.SleepAfter > 0 || c.DeleteAfter > 0 || c.SleepSchedule != nil || c.WakeupSchedule != nil || c.ForceSleep
}

// Effective merges the configuration annotations of layers, later ones
// overriding earlier ones (default template, template, the cluster), and
// takes force-sleep and prevent-wakeup from the cluster's own (the last).
func Effective(layers ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, l := range layers {
		for _, k := range configKeys {
			if v, ok := l[k]; ok {
				out[k] = v
			}
		}
	}
	if len(layers) > 0 {
		own := layers[len(layers)-1]
		for _, k := range []string{storagev1.AnnotationForceSleep, storagev1.AnnotationPreventWakeup} {
			if v, ok := own[k]; ok {
				out[k] = v
			}
		}
	}
	return out
}

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Parse reads a configuration from annotations. Each invalid annotation is
// an error naming it and saying what is wrong; the configuration returned
// with errors leaves out what is invalid.
func Parse(ann map[string]string) (Config, error) {
	c := Config{Location: time.UTC}
	var errs []error
	seconds := func(key string) time.Duration {
		v, ok := ann[key]
		if !ok {
			return 0
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n <= 0 || n > 10*365*24*3600 {
			errs = append(errs, fmt.Errorf("annotation %s=%q: want a whole number of seconds, greater than 0 (example: 3600)", key, v))
			return 0
		}
		return time.Duration(n) * time.Second
	}
	c.SleepAfter = seconds(storagev1.AnnotationSleepAfter)
	c.DeleteAfter = seconds(storagev1.AnnotationDeleteAfter)
	if tz, ok := ann[storagev1.AnnotationTimezone]; ok {
		loc, err := time.LoadLocation(tz)
		if err != nil || tz == "" || strings.EqualFold(tz, "local") {
			errs = append(errs, fmt.Errorf("annotation %s=%q: not an IANA time zone (examples: UTC, Europe/Berlin, America/New_York)", storagev1.AnnotationTimezone, tz))
		} else {
			c.Location = loc
		}
	}
	schedule := func(key string) cron.Schedule {
		v, ok := ann[key]
		if !ok {
			return nil
		}
		s, err := cronParser.Parse(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("annotation %s=%q: not a cron schedule of 5 fields, minute hour day-of-month month day-of-week (example: \"0 18 * * 1-5\"): %v", key, v, err))
			return nil
		}
		if s.Next(time.Now()).IsZero() {
			errs = append(errs, fmt.Errorf("annotation %s=%q: the schedule never fires (a day that does not exist in its months?)", key, v))
			return nil
		}
		return s
	}
	c.SleepSchedule = schedule(storagev1.AnnotationSleepSchedule)
	c.WakeupSchedule = schedule(storagev1.AnnotationWakeupSchedule)
	c.ForceSleep = ann[storagev1.AnnotationForceSleep] == "true"
	c.PreventWakeup = ann[storagev1.AnnotationPreventWakeup] == "true"
	return c, errors.Join(errs...)
}

// State is what happened to a cluster.
type State struct {
	// LastActivity: the last request through the platform (zero: none).
	LastActivity time.Time
	// AwakeSince: when the cluster was created or last woke.
	AwakeSince time.Time
	// SleepingSince: when it went to sleep; zero while awake.
	SleepingSince time.Time
}

// Asleep reports whether the cluster sleeps.
func (s State) Asleep() bool { return !s.SleepingSince.IsZero() }

// lastActive is the later of the last activity and waking up: inactivity
// counts from there.
func (s State) lastActive() time.Time {
	if s.LastActivity.After(s.AwakeSince) {
		return s.LastActivity
	}
	return s.AwakeSince
}

// Decision is what to do now, and when to look again.
type Decision struct {
	Sleep, Wake, Delete bool
	// Reason is a CamelCase word for the decision (for the condition and
	// the event): Inactivity, SleepSchedule, ForceSleep, Activity,
	// WakeupSchedule, DeleteAfterInactivity.
	Reason string
	// Next is when the decision may change without anything else
	// happening (zero: only when something happens).
	Next time.Time
}

// Decide says what c asks for at now, in state s.
func (c Config) Decide(now time.Time, s State) Decision {
	idleFrom := s.lastActive()
	var next time.Time
	sooner := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if c.DeleteAfter > 0 {
		if !now.Before(idleFrom.Add(c.DeleteAfter)) {
			return Decision{Delete: true, Reason: "DeleteAfterInactivity"}
		}
		sooner(idleFrom.Add(c.DeleteAfter))
	}
	if s.Asleep() {
		if c.ForceSleep {
			return Decision{Reason: "ForceSleep", Next: next}
		}
		if s.LastActivity.After(s.SleepingSince) {
			return Decision{Wake: true, Reason: "Activity"}
		}
		if c.WakeupSchedule != nil {
			at := c.WakeupSchedule.Next(s.SleepingSince.In(c.Location))
			if !at.After(now) {
				return Decision{Wake: true, Reason: "WakeupSchedule"}
			}
			sooner(at)
		}
		return Decision{Next: next}
	}
	if c.ForceSleep {
		return Decision{Sleep: true, Reason: "ForceSleep"}
	}
	if c.SleepAfter > 0 {
		if !now.Before(idleFrom.Add(c.SleepAfter)) {
			return Decision{Sleep: true, Reason: "Inactivity"}
		}
		sooner(idleFrom.Add(c.SleepAfter))
	}
	if c.SleepSchedule != nil {
		// A scheduled time since the cluster woke puts it to sleep, even if
		// it was used since: the next request wakes it again.
		at := c.SleepSchedule.Next(s.AwakeSince.In(c.Location))
		if !at.After(now) {
			return Decision{Sleep: true, Reason: "SleepSchedule"}
		}
		sooner(at)
	}
	return Decision{Next: next}
}
