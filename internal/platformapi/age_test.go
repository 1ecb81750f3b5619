package platformapi

import (
	"testing"
	"time"
)

func TestAge(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]string{
		"":                          "",
		"yesterday":                 "",
		"2024-05-01T11:59:30Z":      "30s",
		"2024-05-01T11:58:00Z":      "2m",
		"2024-05-01T10:00:00Z":      "2h",
		"2024-04-30T12:00:00Z":      "24h",
		"2024-04-29T12:00:00Z":      "2d",
		"2024-05-01T14:00:00+02:00": "0s",
	} {
		if got := ageAt(in, now); got != want {
			t.Errorf("age of %q: %q, want %q", in, got, want)
		}
	}
}
