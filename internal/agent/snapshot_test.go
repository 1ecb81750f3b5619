package agent

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/controlplane"
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
	if s, err := parseSnapshotSchedule(vc(nil), nil, time.Minute); s != nil || err != nil {
		t.Fatalf("no annotation: %v %v", s, err)
	}
	s, err := parseSnapshotSchedule(vc(nil), []template{tmpl}, time.Minute)
	if err != nil || s.keep != 7 {
		t.Fatalf("from the template: %+v %v", s, err)
	}
	from := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
	if next := s.schedule.Next(from); !next.Equal(time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)) {
		t.Fatalf("next %s", next)
	}
	s, err = parseSnapshotSchedule(vc(map[string]string{storagev1.AnnotationSnapshotKeep: "2"}), []template{tmpl}, time.Minute)
	if err != nil || s.keep != 2 {
		t.Fatalf("the cluster's keep over the template's: %+v %v", s, err)
	}
	if s, _ := parseSnapshotSchedule(vc(map[string]string{storagev1.AnnotationSnapshotSchedule: "@hourly"}), nil, time.Minute); s == nil || s.keep != defaultKeep {
		t.Fatalf("default keep: %+v", s)
	}
	for _, bad := range []map[string]string{
		{storagev1.AnnotationSnapshotSchedule: "every day"},
		{storagev1.AnnotationSnapshotSchedule: "@daily", storagev1.AnnotationSnapshotKeep: "0"},
		{storagev1.AnnotationSnapshotSchedule: "@daily", storagev1.AnnotationSnapshotKeep: "many"},
		{storagev1.AnnotationSnapshotSchedule: "@daily", storagev1.AnnotationSnapshotKeep: "101"},
		{storagev1.AnnotationSnapshotSchedule: "@every 59s"},
	} {
		if _, err := parseSnapshotSchedule(vc(bad), nil, time.Minute); err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
}

// TestScheduleMinInterval: a schedule that runs more often than the
// agent's minimum is refused with a message naming both, whether @every
// or cron (whose gaps vary).
func TestScheduleMinInterval(t *testing.T) {
	for _, c := range []struct {
		spec string
		gap  time.Duration
	}{
		{"@every 30s", 30 * time.Second},
		{"* * * * *", time.Minute},
		{"0,5 3 * * *", 5 * time.Minute},
		{"@hourly", time.Hour},
		{"0 3 * * 1", 7 * 24 * time.Hour},
		{"0 3 1,2 * *", 24 * time.Hour},
	} {
		vc := &storagev1.VirtualCluster{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{storagev1.AnnotationSnapshotSchedule: c.spec}}}
		if _, err := parseSnapshotSchedule(vc, nil, c.gap); err != nil {
			t.Errorf("%q with a minimum of its own gap %s: %v", c.spec, c.gap, err)
		}
		_, err := parseSnapshotSchedule(vc, nil, c.gap+time.Second)
		if err == nil || !strings.Contains(err.Error(), "runs every "+c.gap.String()) || !strings.Contains(err.Error(), "--snapshot-min-interval") {
			t.Errorf("%q with a minimum over its gap: %v", c.spec, err)
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

// TestCheckLayout: a restored data dir holds only what a snapshot writes;
// a file the agent or the control plane would read and dial (a kubeconfig,
// the egress selector, etcd's client URL) or one in the wrong place is
// refused.
func TestCheckLayout(t *testing.T) {
	sqlite := map[string]string{controlplane.MarkerFile: "{}", "bootstrapped": "", "db/state.db": "x", "pki/ca.crt": "c", "pki/ca.key": "k", "pki/sa.pub": "p"}
	etcd := map[string]string{controlplane.MarkerFile: "{}", controlplane.EtcdSnapshotFile: "x", "pki/apiserver.crt": "c"}
	with := func(base map[string]string, extra string) map[string]string {
		m := maps.Clone(base)
		m[extra] = ""
		return m
	}
	without := func(base map[string]string, name string) map[string]string {
		m := maps.Clone(base)
		delete(m, name)
		return m
	}
	for _, c := range []struct {
		name, datastore string
		files           map[string]string
		want            string
	}{
		{"sqlite", controlplane.DatastoreSQLite, sqlite, ""},
		{"etcd", controlplane.DatastoreEtcd, etcd, ""},
		{"an admin kubeconfig", controlplane.DatastoreSQLite, with(sqlite, "admin.kubeconfig"), "admin.kubeconfig"},
		{"an egress selector", controlplane.DatastoreSQLite, with(sqlite, "components/egress-selector.json"), "components"},
		{"etcd's client URL", controlplane.DatastoreEtcd, with(etcd, "etcd-client-url"), "etcd-client-url"},
		{"a kubeconfig in pki", controlplane.DatastoreSQLite, with(sqlite, "pki/admin.kubeconfig"), "admin.kubeconfig"},
		{"a nested pki dir", controlplane.DatastoreSQLite, with(sqlite, "pki/etcd/peer.crt"), "pki/etcd"},
		{"the other datastore's backup", controlplane.DatastoreEtcd, with(etcd, "db/state.db"), "db"},
		{"no backup", controlplane.DatastoreSQLite, without(sqlite, "db/state.db"), "no db/state.db"},
		{"no marker", controlplane.DatastoreEtcd, without(etcd, controlplane.MarkerFile), "no " + controlplane.MarkerFile},
		{"an unknown datastore", "mysql", sqlite, `datastore "mysql"`},
	} {
		dir := t.TempDir()
		for name, data := range c.files {
			mustWrite(t, filepath.Join(dir, name), data)
		}
		err := checkLayout(dir, c.datastore)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want an error naming %q", c.name, err, c.want)
		}
	}
	// A directory where a file belongs.
	dir := t.TempDir()
	for name, data := range without(sqlite, "db/state.db") {
		mustWrite(t, filepath.Join(dir, name), data)
	}
	if err := os.MkdirAll(filepath.Join(dir, "db", "state.db"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := checkLayout(dir, controlplane.DatastoreSQLite); err == nil {
		t.Error("a directory named db/state.db: accepted")
	}
}

func mustWrite(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
