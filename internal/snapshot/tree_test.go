package snapshot

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestTreeRoundTrip(t *testing.T) {
	src := t.TempDir()
	mustWrite(t, filepath.Join(src, "marker"), "sqlite")
	mustWrite(t, filepath.Join(src, "db", "state.db"), "rows")
	var buf bytes.Buffer
	if err := WriteTree(&buf, src); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "out")
	if err := ReadTree(bytes.NewReader(buf.Bytes()), dst, DefaultLimits); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"marker": "sqlite", "db/state.db": "rows"} {
		got, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", name, got, err, want)
		}
	}
}

func TestTreeLimitsAndDamage(t *testing.T) {
	src := t.TempDir()
	mustWrite(t, filepath.Join(src, "big"), string(make([]byte, 4096)))
	var buf bytes.Buffer
	if err := WriteTree(&buf, src); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "out")
	err := ReadTree(bytes.NewReader(buf.Bytes()), dst, Limits{Bytes: 1024, Entries: 10})
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("over the limit: %v, want ErrTooLarge", err)
	}
	if _, serr := os.Stat(dst); !os.IsNotExist(serr) {
		t.Errorf("after a refused tree, %s: %v; want it removed", dst, serr)
	}
	err = ReadTree(bytes.NewReader(buf.Bytes()[:700]), dst, DefaultLimits)
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("a cut stream: %v, want ErrCorrupt", err)
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
