package agent

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
)

// TestHoldDataDirLock is not a test: run as a child of
// TestAdoptDataDirHolder (SUBLET_TEST_HOLD_LOCK set), it holds the data dir
// lock as a control plane does, with --data-dir in its arguments, until
// killed.
func TestHoldDataDirLock(t *testing.T) {
	dir := os.Getenv("SUBLET_TEST_HOLD_LOCK")
	if dir == "" {
		t.Skip("a helper process of TestAdoptDataDirHolder")
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		os.Exit(2)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		os.Exit(2)
	}
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	_ = os.WriteFile(filepath.Join(dir, "locked"), nil, 0o600)
	time.Sleep(time.Hour)
}

// holdLock starts a process with args that holds the lock of data dir
// data until the test ends.
func holdLock(t *testing.T, data string, args ...string) int {
	t.Helper()
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestHoldDataDirLock$"}, args...)...)
	cmd.Env = append(os.Environ(), "SUBLET_TEST_HOLD_LOCK="+data)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		_, err := os.Stat(filepath.Join(data, "locked"))
		return err == nil, nil
	}); err != nil {
		t.Fatal("the helper did not take the lock")
	}
	return cmd.Process.Pid
}

// TestAdoptDataDirHolder: a pid file that does not name the child holding
// a virtual cluster's data dir (a start after it failed, or it was lost)
// must not lead to a second child: the holder is adopted. A holder that is
// not a child of that directory is waited for, and a free data dir is
// left to a new start.
func TestAdoptDataDirHolder(t *testing.T) {
	dir := t.TempDir()
	r := &processRuntime{sup: newSupervisor(), binary: "/nonexistent", log: klog.Background()}
	vc := &storagev1.VirtualCluster{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "vc"}}
	// A child that runs in dir, and a pid file that names a process gone.
	holder := holdLock(t, filepath.Join(dir, "data"), "--", "--data-dir", filepath.Join(dir, "data"))
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(gone.Process.Pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	if r.sup.Check(dir).Running {
		t.Fatal("running by a pid file that names a process gone")
	}
	record := "the record"
	if err := os.WriteFile(filepath.Join(dir, "args"), []byte(record), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := r.supervise(vc, dir, nil, record)
	if err != nil || st.Message != "" {
		t.Fatalf("supervise = %+v, %v; want the holder adopted as running", st, err)
	}
	if st := r.sup.Check(dir); !st.Running || st.PID != holder {
		t.Errorf("after adoption, %+v; want running as %d", st, holder)
	}
	// The pid file is checked by the process's start time, not its
	// arguments: another process under that pid is not the child.
	if err := os.WriteFile(filepath.Join(dir, "pid-start"), []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r.sup.Check(dir).Running {
		t.Error("running by a pid file whose start time is another process's")
	}

	// A holder that runs elsewhere is not adopted, and no second child
	// is started: its exit is waited for.
	other := t.TempDir()
	holdLock(t, filepath.Join(other, "data"), "--", "--data-dir", "/elsewhere")
	st, err = r.supervise(vc, other, nil, record)
	if err != nil || !strings.Contains(st.Message, "waiting for the process holding") {
		t.Errorf("a holder of another data dir: supervise = %+v, %v; want a wait for it", st, err)
	}
	if _, err := os.Stat(filepath.Join(other, "pid")); err == nil {
		t.Error("a pid file was written for a holder that is not the directory's child")
	}
}
