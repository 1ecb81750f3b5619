package platformapi

import (
	"fmt"
	"time"
)

// Age is how long ago an RFC 3339 time was, as kubectl shows ages ("" if
// it is not one).
func Age(rfc3339 string) string {
	return ageAt(rfc3339, time.Now())
}

func ageAt(rfc3339 string, now time.Time) string {
	t, err := time.Parse(time.RFC3339, rfc3339)
	if err != nil || rfc3339 == "" {
		return ""
	}
	d := now.Sub(t).Round(time.Second)
	switch {
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
