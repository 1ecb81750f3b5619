package ui

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
)

func TestHumanSize(t *testing.T) {
	for _, c := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{1048524, "1023.9 KiB"},
		{1048525, "1.0 MiB"},
		{5 << 20, "5.0 MiB"},
		{3<<30 + 300<<20, "3.3 GiB"},
		{1 << 62, "4.0 EiB"},
	} {
		if got := humanSize(c.n); got != c.want {
			t.Errorf("humanSize(%d) = %q, want %q", c.n, got, c.want)
		}
	}
}

func TestSnapshotName(t *testing.T) {
	at := time.Date(2026, 12, 6, 10, 15, 0, 0, time.FixedZone("CET", 3600))
	for i, want := range map[int]string{1: "demo-20261206-091500", 2: "demo-20261206-091500-2", 20: "demo-20261206-091500-20"} {
		if got := storagev1.SnapshotName("demo", at, i); got != want {
			t.Errorf("SnapshotName(demo, %s, %d) = %q, want %q (UTC, as the CLI)", at, i, got, want)
		}
	}
}

// TestSnapshotRows: only the cluster's own snapshots, newest first; a
// phase not yet written reads Pending; the size once there is one; the
// agent's message only on a failure.
func TestSnapshotRows(t *testing.T) {
	t0 := time.Now().Add(-time.Hour)
	snap := func(name, vc string, created time.Time, st storagev1.VirtualClusterSnapshotStatus) storagev1.VirtualClusterSnapshot {
		return storagev1.VirtualClusterSnapshot{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team", CreationTimestamp: metav1.NewTime(created)},
			Spec: storagev1.VirtualClusterSnapshotSpec{VirtualCluster: vc}, Status: st}
	}
	rows := snapshotRows([]storagev1.VirtualClusterSnapshot{
		snap("demo-old", "demo", t0, storagev1.VirtualClusterSnapshotStatus{Phase: storagev1.SnapshotCompleted, Size: 2048, KubernetesVersion: "v1.35.0+k3s1", Message: "written"}),
		snap("other-1", "other", t0.Add(time.Minute), storagev1.VirtualClusterSnapshotStatus{Phase: storagev1.SnapshotCompleted}),
		snap("demo-new", "demo", t0.Add(2*time.Minute), storagev1.VirtualClusterSnapshotStatus{}),
		snap("demo-new-2", "demo", t0.Add(2*time.Minute), storagev1.VirtualClusterSnapshotStatus{Phase: storagev1.SnapshotFailed, Message: "no space left"}),
		snap("demo-mid", "demo", t0.Add(time.Minute), storagev1.VirtualClusterSnapshotStatus{Phase: storagev1.SnapshotInProgress, Message: "writing"}),
	}, "demo")
	want := []snapshotRow{
		{Name: "demo-new-2", Phase: "Failed", Message: "no space left"},
		{Name: "demo-new", Phase: "Pending"},
		{Name: "demo-mid", Phase: "InProgress"},
		{Name: "demo-old", Phase: "Completed", Size: "2.0 KiB", Version: "v1.35.0+k3s1", Completed: true},
	}
	if len(rows) != len(want) {
		t.Fatalf("rows %+v, want %d", rows, len(want))
	}
	for i, w := range want {
		got := rows[i]
		if got.Age == "" {
			t.Errorf("row %d (%s) has no age", i, got.Name)
		}
		got.Age, w.Age = "", ""
		if got != w {
			t.Errorf("row %d: %+v, want %+v", i, got, w)
		}
	}
}

// TestForkFormCheck: the name and namespace are refused as the CLI
// refuses them, and the namespace defaults as on the create page.
func TestForkFormCheck(t *testing.T) {
	for _, c := range []struct {
		f                  forkForm
		ok                 bool
		nameErr, nsErr, ns string
	}{
		{f: forkForm{Name: "copy"}, ok: true, ns: "vcluster-copy"},
		{f: forkForm{Name: "copy", Namespace: "team"}, ok: true, ns: "team"},
		{f: forkForm{Name: ""}, nameErr: `name "" must not be empty`},
		{f: forkForm{Name: "Copy_1"}, nameErr: `name "Copy_1"`},
		{f: forkForm{Name: strings.Repeat("a", 41)}, nameErr: "at most 40"},
		{f: forkForm{Name: "copy", Namespace: "Team A"}, nsErr: `namespace "Team A" is not a namespace name`, ns: "Team A"},
	} {
		f := c.f
		if ok := f.check(); ok != c.ok || !strings.Contains(f.NameError, c.nameErr) || !strings.Contains(f.NamespaceError, c.nsErr) ||
			(c.nameErr == "") != (f.NameError == "") || (c.nsErr == "") != (f.NamespaceError == "") {
			t.Errorf("%+v: check %v, errors %q %q; want %v, %q %q", c.f, ok, f.NameError, f.NamespaceError, c.ok, c.nameErr, c.nsErr)
		}
		if c.ns != "" && f.targetNamespace() != c.ns {
			t.Errorf("%+v: namespace %q, want %q", c.f, f.targetNamespace(), c.ns)
		}
	}
}

// TestForkOf: the annotation names the snapshot as the admission policy
// reads it (NAME in the fork's namespace, NAMESPACE/NAME from another);
// the fork has the source's template and values.
func TestForkOf(t *testing.T) {
	snap := &storagev1.VirtualClusterSnapshot{ObjectMeta: metav1.ObjectMeta{Name: "demo-20261206-101500", Namespace: "team"},
		Status: storagev1.VirtualClusterSnapshotStatus{Phase: storagev1.SnapshotCompleted, SourceTemplate: "small", SourceValues: "sync:\n  ingresses:\n    enabled: true\n"}}
	vc := forkOf("copy", "team", snap)
	if vc.Name != "copy" || vc.Namespace != "team" || vc.Annotations[storagev1.AnnotationForkFrom] != "demo-20261206-101500" || len(vc.Annotations) != 1 {
		t.Errorf("fork in the same namespace: %+v", vc.ObjectMeta)
	}
	if vc.Spec.TemplateRef == nil || vc.Spec.TemplateRef.Name != "small" || vc.Spec.HelmRelease == nil || vc.Spec.HelmRelease.Values != snap.Status.SourceValues {
		t.Errorf("fork spec: %+v", vc.Spec)
	}
	if vc.Kind != "VirtualCluster" || vc.APIVersion != "storage.loft.sh/v1" {
		t.Errorf("fork type: %+v", vc.TypeMeta)
	}
	if vc := forkOf("copy", "vcluster-copy", snap); vc.Annotations[storagev1.AnnotationForkFrom] != "team/demo-20261206-101500" {
		t.Errorf("fork in another namespace: %+v", vc.Annotations)
	}
	bare := &storagev1.VirtualClusterSnapshot{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "team"}}
	if vc := forkOf("copy", "team", bare); vc.Spec.TemplateRef != nil || vc.Spec.HelmRelease != nil {
		t.Errorf("fork of a snapshot without template or values: %+v", vc.Spec)
	}
}

// TestForkRefusal: a taken name and a refused default namespace say what
// to do instead; other refusals (the admission policy's) are as they came.
func TestForkRefusal(t *testing.T) {
	taken := forkRefusal(&callError{code: http.StatusConflict, msg: "exists"}, &forkForm{Name: "copy", Namespace: "team"}, "local", "team")
	if callCode(taken) != http.StatusConflict || taken.Error() != "virtual cluster copy already exists in namespace team of cluster local; choose another name" {
		t.Errorf("taken: %v", taken)
	}
	denied := &callError{code: http.StatusForbidden, msg: "forbidden: no"}
	if err := forkRefusal(denied, &forkForm{Name: "copy"}, "local", "team"); callCode(err) != http.StatusForbidden ||
		!strings.Contains(err.Error(), "forbidden: no (the namespace was left empty, so it is vcluster-copy;") || !strings.Contains(err.Error(), "such as team") {
		t.Errorf("default namespace refused: %v", err)
	}
	if err := forkRefusal(denied, &forkForm{Name: "copy", Namespace: "team"}, "local", "team"); err != error(denied) {
		t.Errorf("refused in a chosen namespace: %v", err)
	}
	if err := forkRefusal(nil, &forkForm{Name: "copy"}, "local", "team"); err != nil {
		t.Errorf("no refusal: %v", err)
	}
}

// TestSnapshotsSection: the detail page lists the snapshots with a Take
// snapshot form and a Fork form for each completed one, each with the
// session's CSRF token; a fork form sent back keeps what was typed and
// says what is wrong, and the list then stays as it is (not refreshed
// under it); the live fragment is the list alone.
func TestSnapshotsSection(t *testing.T) {
	u, err := New(Options{API: http.NotFoundHandler()})
	if err != nil {
		t.Fatal(err)
	}
	d := &detailData{Cluster: "local", Namespace: "team", Name: "demo", VC: &storagev1.VirtualCluster{},
		Snapshots: []snapshotRow{
			{Name: "demo-2", Phase: "InProgress"},
			{Name: "demo-1", Phase: "Completed", Size: "1.0 MiB", Version: "v1.35.0", Age: "5m", Completed: true},
			{Name: "demo-0", Phase: "Failed", Message: "disk full", Age: "9m"},
		}}
	render := func(name string, d *detailData) string {
		w := httptest.NewRecorder()
		u.render(w, http.StatusOK, name, pageData{Title: "Virtual cluster demo", CSRF: "tok", Data: d})
		if w.Code != http.StatusOK {
			t.Fatalf("render %s: HTTP %d: %s", name, w.Code, w.Body.String())
		}
		return w.Body.String()
	}
	page := render("detail", d)
	for _, want := range []string{
		`action="/vc/local/team/demo/snapshot"`, "Take snapshot",
		`data-live="/vc/local/team/demo?fragment=snapshots"`,
		`<tr data-snapshot="demo-1">`, "1.0 MiB", "v1.35.0", "disk full",
		`action="/vc/local/team/demo/fork"`, `name="snapshot" value="demo-1"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the detail page lacks %q", want)
		}
	}
	if n := strings.Count(page, `class="fork"`); n != 1 {
		t.Errorf("%d fork forms, want 1 (of the completed snapshot)", n)
	}
	if n, forms := strings.Count(page, `name="csrf" value="tok"`), strings.Count(page, "<form"); n != forms {
		t.Errorf("%d of %d forms carry the CSRF token", n, forms)
	}

	d.Fork = forkForm{Snapshot: "demo-1", Name: "Bad_Name", Namespace: "team", NameError: "name \"Bad_Name\" is bad"}
	page = render("detail", d)
	for _, want := range []string{`value="Bad_Name"`, `value="team"`, `aria-invalid="true"`, `name &#34;Bad_Name&#34; is bad`} {
		if !strings.Contains(page, want) {
			t.Errorf("the form sent back lacks %q", want)
		}
	}
	if strings.Contains(page, "fragment=snapshots") {
		t.Error("the list is refreshed under a form sent back")
	}

	fragment := render("snapshots", d)
	if !strings.Contains(fragment, `data-snapshot="demo-1"`) || strings.Contains(fragment, "<html") || strings.Contains(fragment, "Take snapshot") ||
		strings.Contains(fragment, "data-live-done") {
		t.Errorf("the snapshots fragment, one snapshot in progress:\n%s", fragment)
	}

	// Nothing in progress: no refreshing, and a refresh says it is done.
	d.Fork, d.Snapshots = forkForm{}, d.Snapshots[1:]
	if page := render("detail", d); strings.Contains(page, "fragment=snapshots") {
		t.Error("the list is refreshed with no snapshot in progress")
	}
	if fragment := render("snapshots", d); !strings.Contains(fragment, "data-live-done") {
		t.Errorf("the snapshots fragment, none in progress, does not end the refreshing:\n%s", fragment)
	}
}
