package agent

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/snapshot"
)

func TestSnapshotLocationAllowed(t *testing.T) {
	s := &snapshots{dir: "/state/snapshots", registries: []string{"reg.example:5000/snaps/"}}
	for _, c := range []struct {
		loc, want string // want "" : allowed
	}{
		{"/state/snapshots/team-a/x.snapshot", ""},
		{"file:///state/snapshots/team-a/sub/x.snapshot", ""},
		{"/state/snapshots/team-b/x.snapshot", "is outside"},
		{"/state/snapshots/team-a/../team-b/x.snapshot", "is outside"},
		{"/state/snapshots/team-a", "is outside"},
		{"/etc/passwd", "is outside"},
		{"oci://reg.example:5000/snaps/team-a/x:1", ""},
		{"oci://reg.example:5000/snaps/team-a:1", ""},
		{"oci://reg.example:5000/snaps/team-ab/x:1", "is not one"},
		{"oci://reg.example:5000/snaps/team-b/x:1", "is not one"},
		{"oci://reg.example:5000/other/team-a/x:1", "is not one"},
		{"oci://evil.example/snaps/team-a/x:1", "is not one"},
	} {
		loc, err := snapshot.ParseLocation(c.loc)
		if err != nil {
			t.Fatalf("%s: %v", c.loc, err)
		}
		err = s.allowed("team-a", loc)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: refused: %v", c.loc, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: got %v, want an error with %q", c.loc, err, c.want)
		}
	}
	none := &snapshots{dir: "/state/snapshots"}
	loc, _ := snapshot.ParseLocation("oci://reg.example:5000/snaps/team-a/x:1")
	if err := none.allowed("team-a", loc); err == nil || !strings.Contains(err.Error(), "--snapshot-registries") {
		t.Errorf("OCI without registries: %v", err)
	}
}

func TestParseSnapshotSchedule(t *testing.T) {
	vc := func(ann map[string]string) *storagev1.VirtualCluster {
		return &storagev1.VirtualCluster{ObjectMeta: metav1.ObjectMeta{Annotations: ann}}
	}
	tmpl := template{VirtualClusterTemplate: &storagev1.VirtualClusterTemplate{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
		storagev1.AnnotationSnapshotSchedule: "0 3 * * *", storagev1.AnnotationSnapshotKeep: "7"}}}}
	if s, err := parseSnapshotSchedule(vc(nil), nil); s != nil || err != nil {
		t.Fatalf("no annotation: %v %v", s, err)
	}
	s, err := parseSnapshotSchedule(vc(nil), []template{tmpl})
	if err != nil || s.keep != 7 {
		t.Fatalf("from the template: %+v %v", s, err)
	}
	from := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
	if next := s.schedule.Next(from); !next.Equal(time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)) {
		t.Fatalf("next %s", next)
	}
	s, err = parseSnapshotSchedule(vc(map[string]string{storagev1.AnnotationSnapshotKeep: "2"}), []template{tmpl})
	if err != nil || s.keep != 2 {
		t.Fatalf("the cluster's keep over the template's: %+v %v", s, err)
	}
	if s, _ := parseSnapshotSchedule(vc(map[string]string{storagev1.AnnotationSnapshotSchedule: "@hourly"}), nil); s == nil || s.keep != defaultKeep {
		t.Fatalf("default keep: %+v", s)
	}
	for _, bad := range []map[string]string{
		{storagev1.AnnotationSnapshotSchedule: "every day"},
		{storagev1.AnnotationSnapshotSchedule: "@daily", storagev1.AnnotationSnapshotKeep: "0"},
		{storagev1.AnnotationSnapshotSchedule: "@daily", storagev1.AnnotationSnapshotKeep: "many"},
	} {
		if _, err := parseSnapshotSchedule(vc(bad), nil); err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
}

func TestSooner(t *testing.T) {
	for _, c := range []struct{ a, b, want time.Duration }{
		{0, 0, 0}, {0, 5, 5}, {5, 0, 5}, {3, 5, 3}, {5, 3, 3},
	} {
		if got := sooner(c.a, c.b); got != c.want {
			t.Errorf("sooner(%d, %d) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}
