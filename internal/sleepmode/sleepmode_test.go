package sleepmode

import (
	"strings"
	"testing"
	"time"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
)

func mustParse(t *testing.T, ann map[string]string) Config {
	t.Helper()
	c, err := Parse(ann)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParseNamesTheBadAnnotation(t *testing.T) {
	for key, val := range map[string]string{
		storagev1.AnnotationSleepAfter:     "ten",
		storagev1.AnnotationDeleteAfter:    "-5",
		storagev1.AnnotationSleepSchedule:  "every evening",
		storagev1.AnnotationWakeupSchedule: "0 8 * *",
		storagev1.AnnotationTimezone:       "Mars/Olympus",
	} {
		_, err := Parse(map[string]string{key: val})
		if err == nil || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), val) {
			t.Errorf("%s=%q: error %v, want one naming the annotation and the value", key, val, err)
		}
	}
	if _, err := Parse(map[string]string{storagev1.AnnotationSleepSchedule: "0 0 30 2 *"}); err == nil || !strings.Contains(err.Error(), "never fires") {
		t.Errorf("a schedule for February 30: %v, want an error that it never fires", err)
	}
	c, err := Parse(map[string]string{storagev1.AnnotationSleepAfter: "60", storagev1.AnnotationTimezone: "nowhere"})
	if err == nil || c.SleepAfter != time.Minute {
		t.Errorf("a bad time zone should not drop a good sleep-after: %v %v", c.SleepAfter, err)
	}
	if c := mustParse(t, nil); c.Configured() {
		t.Error("no annotations configure sleep mode")
	}
}

func TestEffectiveLayers(t *testing.T) {
	got := Effective(
		map[string]string{storagev1.AnnotationSleepAfter: "100", storagev1.AnnotationTimezone: "Europe/Berlin", storagev1.AnnotationForceSleep: "true"},
		map[string]string{storagev1.AnnotationSleepAfter: "200", "unrelated": "x"},
		map[string]string{storagev1.AnnotationDeleteAfter: "300"},
	)
	want := map[string]string{storagev1.AnnotationSleepAfter: "200", storagev1.AnnotationTimezone: "Europe/Berlin", storagev1.AnnotationDeleteAfter: "300"}
	if len(got) != len(want) {
		t.Fatalf("Effective = %v, want %v (force-sleep only from the cluster itself)", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestDecideInactivity(t *testing.T) {
	c := mustParse(t, map[string]string{storagev1.AnnotationSleepAfter: "600", storagev1.AnnotationDeleteAfter: "86400"})
	t0 := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	awake := State{AwakeSince: t0, LastActivity: t0.Add(5 * time.Minute)}
	if d := c.Decide(t0.Add(10*time.Minute), awake); d.Sleep || !d.Next.Equal(t0.Add(15*time.Minute)) {
		t.Errorf("used 5 minutes ago: %+v, want awake until 10:15", d)
	}
	if d := c.Decide(t0.Add(15*time.Minute), awake); !d.Sleep || d.Reason != "Inactivity" {
		t.Errorf("idle for sleep-after: %+v", d)
	}
	asleep := State{AwakeSince: t0, LastActivity: t0.Add(5 * time.Minute), SleepingSince: t0.Add(15 * time.Minute)}
	if d := c.Decide(t0.Add(time.Hour), asleep); d.Wake || d.Sleep || !d.Next.Equal(t0.Add(5*time.Minute+24*time.Hour)) {
		t.Errorf("asleep, no activity: %+v, want nothing until delete-after", d)
	}
	asleep.LastActivity = t0.Add(time.Hour)
	if d := c.Decide(t0.Add(time.Hour), asleep); !d.Wake || d.Reason != "Activity" {
		t.Errorf("a request while asleep: %+v, want wake", d)
	}
	if d := c.Decide(t0.Add(25*time.Hour+time.Minute), State{AwakeSince: t0, LastActivity: t0.Add(time.Hour), SleepingSince: t0.Add(2 * time.Hour)}); !d.Delete {
		t.Errorf("idle for delete-after: %+v, want delete", d)
	}
}

func TestDecideSchedulesInTimezone(t *testing.T) {
	c := mustParse(t, map[string]string{
		storagev1.AnnotationSleepSchedule:  "0 18 * * 1-5",
		storagev1.AnnotationWakeupSchedule: "0 8 * * 1-5",
		storagev1.AnnotationTimezone:       "Europe/Berlin",
	})
	berlin, _ := time.LoadLocation("Europe/Berlin")
	// Monday 2026-11-30, 09:00 in Berlin: woke at 08:00.
	woke := time.Date(2026, 11, 30, 8, 0, 0, 0, berlin)
	s := State{AwakeSince: woke, LastActivity: woke.Add(9*time.Hour + 59*time.Minute)}
	if d := c.Decide(time.Date(2026, 11, 30, 17, 59, 0, 0, berlin), s); d.Sleep || !d.Next.Equal(time.Date(2026, 11, 30, 18, 0, 0, 0, berlin)) {
		t.Errorf("before 18:00 Berlin: %+v", d)
	}
	// 18:00 Berlin is 17:00 UTC: the schedule is read in the zone.
	if d := c.Decide(time.Date(2026, 11, 30, 17, 0, 0, 0, time.UTC), s); !d.Sleep || d.Reason != "SleepSchedule" {
		t.Errorf("18:00 Berlin, used a minute before: %+v, want sleep", d)
	}
	asleep := State{AwakeSince: woke, LastActivity: woke, SleepingSince: time.Date(2026, 11, 30, 18, 0, 0, 0, berlin)}
	if d := c.Decide(time.Date(2026, 12, 1, 7, 59, 0, 0, berlin), asleep); d.Wake || !d.Next.Equal(time.Date(2026, 12, 1, 8, 0, 0, 0, berlin)) {
		t.Errorf("before 08:00 Tuesday: %+v", d)
	}
	if d := c.Decide(time.Date(2026, 12, 1, 8, 0, 0, 0, berlin), asleep); !d.Wake || d.Reason != "WakeupSchedule" {
		t.Errorf("08:00 Tuesday: %+v, want wake", d)
	}
	// Friday evening to Monday morning: no wakeup on the weekend.
	fri := State{AwakeSince: woke, SleepingSince: time.Date(2026, 12, 4, 18, 0, 0, 0, berlin)}
	if d := c.Decide(time.Date(2026, 12, 6, 12, 0, 0, 0, berlin), fri); d.Wake || !d.Next.Equal(time.Date(2026, 12, 7, 8, 0, 0, 0, berlin)) {
		t.Errorf("Sunday noon: %+v, want asleep until Monday 08:00", d)
	}
}

func TestDecideForceSleep(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	c := mustParse(t, map[string]string{storagev1.AnnotationForceSleep: "true"})
	if d := c.Decide(t0, State{AwakeSince: t0}); !d.Sleep || d.Reason != "ForceSleep" {
		t.Errorf("force-sleep while awake: %+v", d)
	}
	// Until the annotation goes (a request or sublet wakeup removes it),
	// even activity does not wake it.
	if d := c.Decide(t0.Add(time.Hour), State{AwakeSince: t0, SleepingSince: t0, LastActivity: t0.Add(time.Minute)}); d.Wake {
		t.Errorf("force-sleep while asleep woke on activity: %+v", d)
	}
}
