// Package supervisor starts, adopts, watches, stops and backs off child
// processes that outlive their parent: each runs in a session of its own,
// so a parent that restarts finds its children still running and adopts
// them rather than start duplicates.
//
// Everything known of a child is in its directory, so a restarted parent
// knows what the last one knew:
//
//	args       what the child runs with (its record: its arguments and
//	           whatever else the caller says needs a restart when it changes)
//	pid-start  the child's start time (field 22 of /proc/PID/stat), written
//	           before pid: it tells the child from a process that reused its pid
//	pid        its process ID
//	owner      which Supervisor last saw it run, to log an adoption once
//	stopping   the child is being stopped on purpose (Stop)
//	exit       once a child this parent started exited: its code, its last
//	           error line, its record and whether it was stopped (JSON)
//	backoff    consecutive failures and the last one's time (JSON)
//	LOG        its output, appended (Supervisor.LogName)
//
// The only state held in memory is which children this process must still
// reap: until a child's exit is recorded, it counts as exiting, not gone.
package supervisor

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sublet-dev/sublet/internal/pki"
)

// Files of a child's directory.
const (
	fileRecord   = "args"
	filePID      = "pid"
	filePIDStart = "pid-start"
	fileOwner    = "owner-supervisor"
	fileExit     = "exit"
	fileStopping = "stopping"
	fileBackoff  = "backoff"
)

// Supervisor supervises the children in the directories it is given. Its
// zero value is not usable: use New.
type Supervisor struct {
	// Proc is the proc file system's root.
	Proc string
	// LogName is the file of a child's directory its output goes to.
	LogName string
	// ErrorPrefix starts the lines of a child's output that say why it
	// exited; the last one becomes Exit.Message.
	ErrorPrefix string
	// Owns reports whether a process with command line args (one not
	// started by a supervisor that recorded it) is the child of dir.
	Owns func(dir string, args []string) bool

	id      string
	mu      sync.Mutex
	reaping map[string]*reaping // children this process started and has not reaped, by dir
}

// reaping is a child this process started, until its Exit is recorded.
type reaping struct {
	pid  int
	done chan struct{}
}

// New returns a Supervisor of this process, reading /proc.
func New(logName, errorPrefix string, owns func(dir string, args []string) bool) *Supervisor {
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	return &Supervisor{Proc: "/proc", LogName: logName, ErrorPrefix: errorPrefix, Owns: owns,
		id: hex.EncodeToString(id), reaping: map[string]*reaping{}}
}

// Status is what is known of the child of a directory.
type Status struct {
	// PID is the child's, if its pid file names one.
	PID int
	// Running: the pid file names the live child of the directory.
	Running bool
	// Exiting: a child this process started has exited and is being
	// reaped; its Exit is recorded in a moment.
	Exiting bool
	// Adopted: Running, and this Supervisor sees this child for the first
	// time although it did not start it (it outlived an earlier parent).
	Adopted bool
	// Why says why no child is known to run, when none is.
	Why string
}

// Check returns the status of dir's child.
func (s *Supervisor) Check(dir string) Status {
	pid, why := s.runningWhy(dir)
	st := Status{PID: pid, Running: why == "", Why: why}
	s.mu.Lock()
	st.Exiting = !st.Running && s.reaping[dir] != nil
	s.mu.Unlock()
	if st.Running && strings.TrimSpace(readFile(filepath.Join(dir, fileOwner))) != s.id {
		st.Adopted = true
		_ = pki.WriteFileAtomic(filepath.Join(dir, fileOwner), []byte(s.id+"\n"), 0o600)
	}
	return st
}

// runningWhy returns the pid of the child that runs in dir, by its pid
// file, and "", or why none is known to run there.
func (s *Supervisor) runningWhy(dir string) (int, string) {
	pid, err := strconv.Atoi(strings.TrimSpace(readFile(filepath.Join(dir, filePID))))
	if err != nil || pid <= 0 {
		return 0, "no pid file"
	}
	if want := strings.TrimSpace(readFile(filepath.Join(dir, filePIDStart))); want != "" {
		// Who the pid file names, by its start time: reliable where
		// /proc/PID/cmdline is not (it reads empty now and then for a
		// running process on a loaded machine), and immune to pid reuse.
		switch start, alive := s.processStart(pid); {
		case start == "":
			return pid, fmt.Sprintf("process %d is gone", pid)
		case start != want:
			return pid, fmt.Sprintf("process %d is not the child that started at %s", pid, want)
		case !alive:
			return pid, fmt.Sprintf("process %d exited", pid)
		}
		return pid, ""
	}
	return pid, s.runsIn(pid, dir) // a pid file without a start time
}

// processStart returns when process pid started (field 22 of
// /proc/PID/stat, clock ticks since boot), "" if there is no such
// process, and whether it has not exited (is no zombie).
func (s *Supervisor) processStart(pid int) (string, bool) {
	stat, err := os.ReadFile(filepath.Join(s.Proc, strconv.Itoa(pid), "stat"))
	i := bytes.LastIndexByte(stat, ')') // the command name may hold anything
	if err != nil || i < 0 {
		return "", false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 20 {
		return "", false
	}
	return f[19], f[0] != "Z"
}

// runsIn returns "" if process pid is dir's child by its command line
// (Owns), else why not.
func (s *Supervisor) runsIn(pid int, dir string) string {
	cmdline, err := os.ReadFile(filepath.Join(s.Proc, strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return fmt.Sprintf("process %d: %v", pid, err)
	}
	if s.Owns != nil && s.Owns(dir, strings.Split(string(cmdline), "\x00")) {
		return ""
	}
	return fmt.Sprintf("process %d runs something else (%d bytes of arguments)", pid, len(cmdline))
}

// Adopt records process pid (found some other way, e.g. holding a lock of
// the child's) as dir's child if its command line says it is (Owns).
func (s *Supervisor) Adopt(dir string, pid int) (bool, error) {
	if pid <= 0 || s.runsIn(pid, dir) != "" {
		return false, nil
	}
	return true, s.writePID(dir, pid)
}

// writePID records that process pid is the child running in dir: its
// start time, then its pid.
func (s *Supervisor) writePID(dir string, pid int) error {
	start, _ := s.processStart(pid)
	if err := pki.WriteFileAtomic(filepath.Join(dir, filePIDStart), []byte(start+"\n"), 0o600); err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(filepath.Join(dir, filePID), []byte(strconv.Itoa(pid)), 0o600); err != nil {
		return err
	}
	return pki.WriteFileAtomic(filepath.Join(dir, fileOwner), []byte(s.id+"\n"), 0o600)
}

// Exit is how a child this parent started ended.
type Exit struct {
	Code int `json:"code"`
	// Message is the last line of its output that starts with
	// ErrorPrefix, without it; "" if none (or it exited with 0).
	Message string `json:"message,omitempty"`
	// Record is what it ran with (its args file when it exited).
	Record string    `json:"record"`
	At     time.Time `json:"at"`
	// Ran is how long it ran.
	Ran time.Duration `json:"ran"`
	// Stopped: it exited after Stop; any other exit is a failure, which
	// Backoff counts.
	Stopped bool `json:"stopped,omitempty"`
}

// Start starts binary with args in a session of its own, with its output
// appended to dir's log, and records record, its start time and its pid.
// A goroutine reaps it, records its Exit, then calls exited (if not nil).
// An error after the child started (a file not written) leaves it running.
func (s *Supervisor) Start(dir, binary string, args []string, record string, exited func(Exit)) error {
	logPath := filepath.Join(dir, s.LogName)
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	var offset int64
	if st, err := logFile.Stat(); err == nil {
		offset = st.Size()
	}
	_ = os.Remove(filepath.Join(dir, fileExit))
	_ = os.Remove(filepath.Join(dir, fileStopping))
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", binary, err)
	}
	started := time.Now()
	r := &reaping{pid: cmd.Process.Pid, done: make(chan struct{})}
	s.mu.Lock()
	s.reaping[dir] = r
	s.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		e := Exit{Code: cmd.ProcessState.ExitCode(), Record: s.Record(dir), At: time.Now()}
		e.Ran = e.At.Sub(started)
		if e.Code != 0 {
			e.Message = lastLine(logPath, offset, s.ErrorPrefix)
		}
		if os.Remove(filepath.Join(dir, fileStopping)) == nil {
			e.Stopped = true
		} else {
			s.Failed(dir)
		}
		if data, err := json.Marshal(e); err == nil {
			_ = pki.WriteFileAtomic(filepath.Join(dir, fileExit), data, 0o600)
		}
		s.mu.Lock()
		if s.reaping[dir] == r {
			delete(s.reaping, dir)
		}
		s.mu.Unlock()
		close(r.done)
		if exited != nil {
			exited(e)
		}
	}()
	if err := s.SetRecord(dir, record); err != nil {
		return err
	}
	return s.writePID(dir, cmd.Process.Pid)
}

// Exited returns the recorded Exit of the last child this or an earlier
// parent started in dir, if it exited.
func (s *Supervisor) Exited(dir string) (Exit, bool) {
	var e Exit
	data, err := os.ReadFile(filepath.Join(dir, fileExit))
	if err != nil || json.Unmarshal(data, &e) != nil {
		return Exit{}, false
	}
	return e, true
}

// Stop stops dir's child, if one runs: SIGTERM, then SIGKILL after grace;
// a child of this process is then reaped and its Exit recorded. It reports
// whether one ran.
func (s *Supervisor) Stop(dir string, grace time.Duration) bool {
	st := s.Check(dir)
	if !st.Running {
		return false
	}
	_ = pki.WriteFileAtomic(filepath.Join(dir, fileStopping), nil, 0o600)
	s.stopProcess(st.PID, grace)
	// A child of this process: until its Exit is recorded.
	s.mu.Lock()
	r := s.reaping[dir]
	s.mu.Unlock()
	if r != nil && r.pid == st.PID {
		select {
		case <-r.done:
		case <-time.After(grace):
		}
	}
	return true
}

// Record is what dir's child runs with (its record), as Start or SetRecord
// wrote it.
func (s *Supervisor) Record(dir string) string { return readFile(filepath.Join(dir, fileRecord)) }

// SetRecord records that dir's running child now runs with record (a warm
// child given its assignment); its Exit will carry it.
func (s *Supervisor) SetRecord(dir, record string) error {
	return pki.WriteFileAtomic(filepath.Join(dir, fileRecord), []byte(record), 0o600)
}

// stopProcess sends SIGTERM, then SIGKILL after grace.
func (s *Supervisor) stopProcess(pid int, grace time.Duration) {
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		if _, alive := s.processStart(pid); !alive {
			return // exited, waiting to be reaped
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// Backoff after consecutive failures: 1 s, doubling up to maxBackoff; a
// failure more than resetAfter after the last one starts the count anew.
const (
	maxBackoff = 5 * time.Minute
	resetAfter = 10 * time.Minute
)

type backoffRecord struct {
	Failures int       `json:"failures"`
	Last     time.Time `json:"last"`
}

func (s *Supervisor) readBackoff(dir string) backoffRecord {
	var b backoffRecord
	if data, err := os.ReadFile(filepath.Join(dir, fileBackoff)); err == nil {
		_ = json.Unmarshal(data, &b)
	}
	return b
}

// Failed counts a failure of dir's child (or of whatever dir stands for):
// every exit not asked for by Stop is one.
func (s *Supervisor) Failed(dir string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.readBackoff(dir)
	if time.Since(b.Last) > resetAfter {
		b.Failures = 0 // it ran long enough
	}
	b.Failures++
	b.Last = time.Now()
	if data, err := json.Marshal(b); err == nil {
		_ = pki.WriteFileAtomic(filepath.Join(dir, fileBackoff), data, 0o600)
	}
}

// Backoff returns how long to wait before starting dir's child again, and
// how many times in a row it failed.
func (s *Supervisor) Backoff(dir string) (time.Duration, int) {
	s.mu.Lock()
	b := s.readBackoff(dir)
	s.mu.Unlock()
	if b.Failures == 0 {
		return 0, 0
	}
	delay := min(time.Second<<min(b.Failures-1, 9), maxBackoff)
	return max(time.Until(b.Last.Add(delay)), 0), b.Failures
}

// ResetBackoff forgets dir's failures: its next start is at once.
func (s *Supervisor) ResetBackoff(dir string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = os.Remove(filepath.Join(dir, fileBackoff))
}

// lastLine returns the last line after offset of the file at path that
// starts with prefix, without it, or "".
func lastLine(path string, offset int64, prefix string) string {
	msg := ""
	f, err := os.Open(path)
	if err != nil || prefix == "" {
		return msg
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return msg
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			msg = rest
		}
	}
	return msg
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
