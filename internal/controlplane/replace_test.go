package controlplane

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestReplacement: a committed replacement takes the data dir's place at
// the next FinishReplacement, also when a crash cut an earlier one short
// after the old data went or halfway through moving the new in; an
// uncommitted one is dropped, and what the replacement may hold is
// checked before it is committed.
func TestReplacement(t *testing.T) {
	old := map[string]string{MarkerFile: `{"datastore":"sqlite"}`, "db/state.db": "old", "admin.kubeconfig": "k", "logs/vcluster.log": "l", "lost+found/x": ""}
	repl := map[string]string{MarkerFile: `{"datastore":"sqlite"}`, "db/state.db": "new", "pki/ca.crt": "c"}
	stage := func(t *testing.T) string {
		data := t.TempDir()
		writeTree(t, data, old)
		s, err := ReplacementStage(data)
		if err != nil {
			t.Fatal(err)
		}
		writeTree(t, s, repl)
		return data
	}
	check := func(t *testing.T, data string) {
		t.Helper()
		if got, _ := os.ReadFile(filepath.Join(data, "db", "state.db")); string(got) != "new" {
			t.Errorf("db/state.db holds %q, want the replacement's", got)
		}
		var names []string
		entries, _ := os.ReadDir(data)
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if want := []string{"db", "logs", "lost+found", "pki", MarkerFile}; !slices.Equal(names, want) {
			t.Errorf("the data dir holds %v, want %v", names, want)
		}
	}

	t.Run("uncommitted", func(t *testing.T) {
		data := stage(t)
		if done, err := FinishReplacement(data); done || err != nil {
			t.Fatalf("FinishReplacement = %v, %v; want nothing replaced", done, err)
		}
		if got, _ := os.ReadFile(filepath.Join(data, "db", "state.db")); string(got) != "old" {
			t.Errorf("an uncommitted replacement changed the data: %q", got)
		}
		if _, err := os.Stat(filepath.Join(data, replaceTmp)); !os.IsNotExist(err) {
			t.Errorf("the uncommitted replacement is left: %v", err)
		}
	})
	t.Run("committed", func(t *testing.T) {
		data := stage(t)
		if err := CommitReplacement(data); err != nil {
			t.Fatal(err)
		}
		if done, err := FinishReplacement(data); !done || err != nil {
			t.Fatalf("FinishReplacement = %v, %v", done, err)
		}
		check(t, data)
		if done, err := FinishReplacement(data); done || err != nil {
			t.Fatalf("again: FinishReplacement = %v, %v; want nothing to do", done, err)
		}
	})
	t.Run("crash after the old data went", func(t *testing.T) {
		data := stage(t)
		if err := CommitReplacement(data); err != nil {
			t.Fatal(err)
		}
		if err := removeReplaced(data); err != nil {
			t.Fatal(err)
		}
		writeTree(t, data, map[string]string{replaceMoving: ""})
		if err := os.Rename(filepath.Join(data, replaceDir, "pki"), filepath.Join(data, "pki")); err != nil {
			t.Fatal(err)
		}
		if done, err := FinishReplacement(data); !done || err != nil {
			t.Fatalf("FinishReplacement = %v, %v", done, err)
		}
		check(t, data)
	})
	t.Run("refused", func(t *testing.T) {
		data := stage(t)
		writeTree(t, filepath.Join(data, replaceTmp), map[string]string{"admin.kubeconfig": "evil"})
		if err := CommitReplacement(data); err == nil {
			t.Fatal("a replacement holding admin.kubeconfig was committed")
		}
		data = stage(t)
		writeTree(t, filepath.Join(data, replaceTmp), map[string]string{"pki/admin.kubeconfig": "evil"})
		if err := CommitReplacement(data); err == nil {
			t.Fatal("a replacement holding pki/admin.kubeconfig was committed")
		}
	})
}

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
