package supervisor

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeProc writes /proc/PID/stat (state, start time) and cmdline under
// root, as the kernel shows a process.
func fakeProc(t *testing.T, root string, pid int, state, start string, args ...string) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Fields 3.. after the command name (which may hold ") " itself);
	// field 22 is the start time.
	fields := append([]string{state}, strings.Fields(strings.Repeat("0 ", 18))...)
	fields = append(fields, start, "0", "0")
	stat := strconv.Itoa(pid) + " (a (weird) name) " + strings.Join(fields, " ") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cmdline"), []byte(strings.Join(args, "\x00")+"\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func dataDirOwner(dir string, args []string) bool {
	i := slices.Index(args, "--data-dir")
	return i >= 0 && i+1 < len(args) && args[i+1] == filepath.Join(dir, "data")
}

// TestCheck: who a child's pid file names, against a fake /proc: its start
// time tells it from a process that reused its pid, a zombie has exited,
// and a pid file without a start time (an older parent's) is trusted by
// the command line only.
func TestCheck(t *testing.T) {
	for _, c := range []struct {
		name       string
		files      map[string]string
		proc       func(t *testing.T, root, dir string)
		running    bool
		why        string
		wantPID    int
		notAdopted bool
	}{
		{name: "no pid file", why: "no pid file"},
		{name: "garbage pid file", files: map[string]string{"pid": "x"}, why: "no pid file"},
		{name: "the child", files: map[string]string{"pid": "42", "pid-start": "777\n"},
			proc: func(t *testing.T, root, _ string) { fakeProc(t, root, 42, "S", "777", "sleep") }, running: true, wantPID: 42},
		{name: "gone", files: map[string]string{"pid": "42", "pid-start": "777\n"}, why: "process 42 is gone", wantPID: 42},
		{name: "pid reused", files: map[string]string{"pid": "42", "pid-start": "777\n"},
			proc: func(t *testing.T, root, _ string) { fakeProc(t, root, 42, "S", "999", "sleep") },
			why:  "process 42 is not the child that started at 777", wantPID: 42},
		{name: "zombie", files: map[string]string{"pid": "42", "pid-start": "777\n"},
			proc: func(t *testing.T, root, _ string) { fakeProc(t, root, 42, "Z", "777") }, why: "process 42 exited", wantPID: 42},
		{name: "older parent's pid file, the child's command line", files: map[string]string{"pid": "42"},
			proc: func(t *testing.T, root, dir string) {
				fakeProc(t, root, 42, "S", "777", "sublet", "vcluster", "run", "--data-dir", filepath.Join(dir, "data"))
			}, running: true, wantPID: 42},
		{name: "older parent's pid file, another command line", files: map[string]string{"pid": "42"},
			proc: func(t *testing.T, root, _ string) {
				fakeProc(t, root, 42, "S", "777", "sublet", "--data-dir", "/elsewhere")
			},
			why: "process 42 runs something else", wantPID: 42},
		{name: "the child, recorded by this supervisor", files: map[string]string{"pid": "42", "pid-start": "777\n", "owner-supervisor": "me\n"},
			proc: func(t *testing.T, root, _ string) { fakeProc(t, root, 42, "S", "777", "sleep") }, running: true, wantPID: 42, notAdopted: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			root, dir := t.TempDir(), t.TempDir()
			s := New("log", "error: ", dataDirOwner)
			s.Proc, s.id = root, "me"
			for name, content := range c.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if c.proc != nil {
				c.proc(t, root, dir)
			}
			st := s.Check(dir)
			if st.Running != c.running || st.PID != c.wantPID || !strings.HasPrefix(st.Why, c.why) || (c.why == "") != (st.Why == "") {
				t.Errorf("Check = %+v, want running %v, pid %d, why %q", st, c.running, c.wantPID, c.why)
			}
			if st.Exiting {
				t.Error("Exiting for a child this process did not start")
			}
			// A running child another parent recorded is adopted once.
			if want := c.running && !c.notAdopted; st.Adopted != want {
				t.Errorf("Adopted = %v, want %v", st.Adopted, want)
			}
			if again := s.Check(dir); again.Adopted {
				t.Error("adopted twice")
			}
		})
	}
}

// TestAdopt: a process found by other means is recorded as the child only
// if its command line says it is.
func TestAdopt(t *testing.T) {
	root, dir := t.TempDir(), t.TempDir()
	s := New("log", "error: ", dataDirOwner)
	s.Proc = root
	fakeProc(t, root, 7, "S", "100", "sublet", "--data-dir", "/elsewhere")
	fakeProc(t, root, 8, "S", "200", "sublet", "--data-dir", filepath.Join(dir, "data"))
	if ok, err := s.Adopt(dir, 7); ok || err != nil {
		t.Errorf("Adopt(another's process) = %v, %v", ok, err)
	}
	if ok, err := s.Adopt(dir, 8); !ok || err != nil {
		t.Fatalf("Adopt(the child) = %v, %v", ok, err)
	}
	if st := s.Check(dir); !st.Running || st.PID != 8 || st.Adopted {
		t.Errorf("after Adopt: %+v", st)
	}
	if got := strings.TrimSpace(readFile(filepath.Join(dir, filePIDStart))); got != "200" {
		t.Errorf("pid-start %q, want the process's start time 200", got)
	}
}

// TestStartExitStop runs real children: one that fails is recorded with
// its code, its last error line and its record, and counts for the
// backoff; one stopped on purpose does not.
func TestStartExitStop(t *testing.T) {
	dir := t.TempDir()
	s := New("child.log", "error: ", dataDirOwner)
	exited := make(chan Exit, 1)
	// The child runs until the test releases it, then exits 1.
	release := filepath.Join(t.TempDir(), "release")
	err := s.Start(dir, "/bin/sh", []string{"-c", `echo "error: first"; echo "error: the reason"; while [ ! -e "$0" ]; do sleep 0.02; done; exit 1`, release},
		"record 1", func(e Exit) { exited <- e })
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Check(dir); !st.Running || st.Adopted {
		t.Fatalf("a started child: %+v", st)
	}
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var e Exit
	select {
	case e = <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the child did not exit")
	}
	if e.Code != 1 || e.Message != "the reason" || e.Record != "record 1" || e.Stopped {
		t.Errorf("exit %+v, want code 1, the last error line, its record, not stopped", e)
	}
	if got, ok := s.Exited(dir); !ok || got.Code != 1 || got.Message != "the reason" {
		t.Errorf("Exited = %+v, %v", got, ok)
	}
	if st := s.Check(dir); st.Running || st.Exiting {
		t.Errorf("after exit: %+v", st)
	}
	if wait, failures := s.Backoff(dir); failures != 1 || wait <= 0 || wait > time.Second {
		t.Errorf("Backoff = %s, %d; want up to 1 s after 1 failure", wait, failures)
	}
	s.ResetBackoff(dir)
	if wait, failures := s.Backoff(dir); wait != 0 || failures != 0 {
		t.Errorf("after ResetBackoff: %s, %d", wait, failures)
	}

	// Started again and stopped on purpose: recorded, not a failure.
	if err := s.Start(dir, "/bin/sleep", []string{"60"}, "record 2", nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Exited(dir); ok {
		t.Error("an exit recorded while the new child runs")
	}
	if !s.Stop(dir, 10*time.Second) {
		t.Fatal("Stop found no child")
	}
	// Stop returns once the exit of its own child is recorded.
	if e, ok := s.Exited(dir); !ok || !e.Stopped || e.Record != "record 2" {
		t.Errorf("after Stop: Exited = %+v, %v; want stopped with record 2", e, ok)
	}
	if _, failures := s.Backoff(dir); failures != 0 {
		t.Errorf("a stop counted as %d failures", failures)
	}
	if s.Stop(dir, time.Second) {
		t.Error("Stop of a stopped child reported one running")
	}
}

// TestBackoff: 1 s doubling to 5 min while failures come within 10 min of
// each other; after longer, the count starts again.
func TestBackoff(t *testing.T) {
	dir := t.TempDir()
	s := New("log", "", nil)
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		s.Failed(dir)
		if wait, n := s.Backoff(dir); n != i+1 || wait > want || wait < want-time.Second {
			t.Errorf("after %d failures: %s (%d), want about %s", i+1, wait, n, want)
		}
	}
	for range 20 {
		s.Failed(dir)
	}
	if wait, _ := s.Backoff(dir); wait > maxBackoff || wait < maxBackoff-time.Minute {
		t.Errorf("after many failures: %s, want about %s", wait, maxBackoff)
	}
	// A failure long after the last one: the child ran long enough.
	b := s.readBackoff(dir)
	b.Last = time.Now().Add(-resetAfter - time.Minute)
	writeJSONFile(t, filepath.Join(dir, fileBackoff), b)
	s.Failed(dir)
	if _, n := s.Backoff(dir); n != 1 {
		t.Errorf("a failure after %s counted as the %dth in a row, want the 1st", resetAfter, n)
	}
}

func writeJSONFile(t *testing.T, path string, v interface{}) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
