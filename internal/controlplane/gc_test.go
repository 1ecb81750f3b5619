package controlplane

import "testing"

func TestGCTuner(t *testing.T) {
	const busy, idle = 50, 25
	g := &gcTuner{busy: busy, idle: idle}
	quiet, burst := 200e3, 30e6 // bytes a second: idle cluster, 25 pods/s
	steps := []struct {
		rate float64
		want int
		why  string
	}{
		{quiet, busy, "the start counts as busy"},
	}
	for i := 1; i < gcQuietSamples-1; i++ {
		steps = append(steps, struct {
			rate float64
			want int
			why  string
		}{quiet, busy, "not yet quiet long enough"})
	}
	steps = append(steps, []struct {
		rate float64
		want int
		why  string
	}{
		{quiet, idle, "quiet for gcQuietSamples samples"},
		{quiet, idle, "stays idle"},
		{burst, busy, "one busy sample"},
		{quiet, busy, "the tail of a burst"},
	}...)
	for i, s := range steps {
		if got := g.next(s.rate); got != s.want {
			t.Fatalf("sample %d (%.0f B/s, %s): GOGC %d, want %d", i+1, s.rate, s.why, got, s.want)
		}
	}
}
