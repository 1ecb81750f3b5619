package agent

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
)

// TestReplaceData: the staged data dir takes the place of the old one in a
// rename, also after an earlier replace stopped halfway (old data moved
// aside and left), and a failed rename leaves the old data in place.
func TestReplaceData(t *testing.T) {
	r := &processRuntime{stateDir: t.TempDir(), sup: newSupervisor()}
	vc := &storagev1.VirtualCluster{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "vc"}}
	data := filepath.Join(r.dir(vc), "data")
	write := func(dir, content string) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "sublet-data-dir.json"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	read := func() string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(data, "sublet-data-dir.json"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if _, err := r.DataDir(vc); err == nil {
		t.Fatal("DataDir of a cluster that never started")
	}
	write(data, "old")
	// What a replace that stopped after moving the old data aside left.
	write(filepath.Join(r.dir(vc), "data.replaced"), "older")
	stage, err := r.StageDir(context.Background(), vc)
	if err != nil {
		t.Fatal(err)
	}
	write(stage, "new")
	if err := r.ReplaceData(context.Background(), vc, stage); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "new" {
		t.Fatalf("data after replace: %q", got)
	}
	for _, gone := range []string{stage, filepath.Join(r.dir(vc), "data.replaced")} {
		if _, err := os.Stat(gone); !os.IsNotExist(err) {
			t.Fatalf("%s left behind", gone)
		}
	}
	if dir, err := r.DataDir(vc); err != nil || dir != data {
		t.Fatalf("DataDir: %q %v", dir, err)
	}
	// A stage that is not there: the data stays.
	if err := r.ReplaceData(context.Background(), vc, filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("replaced with a missing stage")
	}
	if got := read(); got != "new" {
		t.Fatalf("data after a failed replace: %q", got)
	}
}
