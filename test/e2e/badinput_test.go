package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sublet-dev/sublet/internal/testenv"
)

// writeFiles creates files under dir and returns a func asserting they are
// unchanged.
func writeFiles(t *testing.T, dir string, files map[string]string) func() {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return func() {
		t.Helper()
		for name, content := range files {
			got, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil || !bytes.Equal(got, []byte(content)) {
				t.Errorf("%s was changed or removed (%v)", name, err)
			}
		}
	}
}

func TestBadInputFailsFast(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the sublet binary")
	}
	for _, cmd := range [][]string{{"controlplane", "run"}, {"host", "run"}} {
		t.Run(cmd[0], func(t *testing.T) {
			run := func(dir string, extra ...string) []string {
				return append(append(append([]string{}, cmd...), "--data-dir", dir), extra...)
			}
			t.Run("port in use", func(t *testing.T) {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				port := fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
				failFast(t, []string{"port " + port, "--port 0"}, run(t.TempDir(), "--port", port)...)
			})
			t.Run("data dir under a file", func(t *testing.T) {
				file := filepath.Join(t.TempDir(), "file")
				if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
				failFast(t, []string{"cannot create data dir", "--data-dir"}, run(filepath.Join(file, "data"))...)
			})
			t.Run("data dir read-only", func(t *testing.T) {
				if os.Geteuid() == 0 {
					t.Skip("root can write to any directory")
				}
				dir := t.TempDir()
				if err := os.Chmod(dir, 0o500); err != nil {
					t.Fatal(err)
				}
				defer os.Chmod(dir, 0o700)
				failFast(t, []string{"not writable"}, run(dir)...)
			})
			t.Run("foreign data dir", func(t *testing.T) {
				dir := t.TempDir()
				unchanged := writeFiles(t, dir, map[string]string{"thesis.txt": "my only copy"})
				failFast(t, []string{"not created by sublet", "thesis.txt"}, run(dir)...)
				unchanged()
				if entries, _ := os.ReadDir(dir); len(entries) != 1 {
					t.Errorf("sublet added files to a foreign dir: %v", entries)
				}
			})
			t.Run("corrupt etcd database", func(t *testing.T) {
				dir := t.TempDir()
				unchanged := writeFiles(t, dir, map[string]string{
					"sublet-data-dir.json": `{"datastore":"etcd"}`,
					"etcd/member/snap/db":  strings.Repeat("garbage", 1000),
				})
				failFast(t, []string{"unreadable", "backup"}, run(dir)...)
				unchanged()
			})
			t.Run("etcd dir is a file", func(t *testing.T) {
				dir := t.TempDir()
				unchanged := writeFiles(t, dir, map[string]string{
					"sublet-data-dir.json": `{"datastore":"etcd"}`,
					"etcd":                 "not a directory",
				})
				failFast(t, []string{"is a file"}, run(dir)...)
				unchanged()
			})
			t.Run("corrupt sqlite database", func(t *testing.T) {
				dir := t.TempDir()
				unchanged := writeFiles(t, dir, map[string]string{
					"sublet-data-dir.json": `{"datastore":"sqlite"}`,
					"db/state.db":          "PK\x03\x04 this is a zip file",
				})
				failFast(t, []string{"not a SQLite database"}, run(dir, "--datastore", "sqlite")...)
				unchanged()
			})
			t.Run("datastore mismatch", func(t *testing.T) {
				dir := t.TempDir()
				writeFiles(t, dir, map[string]string{"sublet-data-dir.json": `{"datastore":"sqlite"}`})
				failFast(t, []string{"--datastore=sqlite"}, run(dir)...)
			})
			t.Run("unknown flag", func(t *testing.T) {
				failFast(t, []string{"unknown flag: --colour", "--help"}, run(t.TempDir(), "--colour")...)
			})
			t.Run("bad service cidr", func(t *testing.T) {
				failFast(t, []string{"--service-cidr", "not a CIDR"}, run(t.TempDir(), "--service-cidr", "10.0.0.0/33")...)
			})
			t.Run("unsupported version", func(t *testing.T) {
				failFast(t, []string{"--kubernetes-version", "not supported"}, run(t.TempDir(), "--kubernetes-version", "v1.21.2")...)
			})
		})
	}
}

// TestUpPortInUse: `sublet up` with its port taken fails before anything
// starts, naming the port and what to do.
func TestUpPortInUse(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the sublet binary")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
	state := filepath.Join(t.TempDir(), "state")
	failFast(t, []string{"port " + port + " is already in use", "--listen 127.0.0.1:PORT"}, "up", "--state-dir", state, "--listen", "127.0.0.1:"+port)
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("sublet up started something before failing: %s exists (err=%v)", state, err)
	}
}

func TestDataDirInUse(t *testing.T) {
	needHost(t)
	failFast(t, []string{"in use by another sublet process", fmt.Sprint(host.Pid())}, "host", "run", "--data-dir", host.DataDir)
}

// TestControlPlaneKilledRestarts checks a control plane killed with SIGKILL
// starts again on its data dir.
func TestControlPlaneKilledRestarts(t *testing.T) {
	needHost(t)
	dir := t.TempDir()
	cp, err := testenv.StartControlPlane(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	cp.Kill()
	cp, err = testenv.StartControlPlane(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	cp.Kill()
}
