package vcluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// backgroundNice is the CPU priority of a warm control plane until it is
// assigned: filling the pool must not slow the virtual clusters that run.
const backgroundNice = 10

// setNice sets this process's CPU priority: its scheduler autogroup's (a
// warm control plane runs in a session of its own, so the group is just
// this process; raising it back needs no privilege), and every thread's.
// Raising a thread's priority back may need privilege (CAP_SYS_NICE); the
// error says so.
func setNice(n int) error {
	_ = os.WriteFile("/proc/self/autogroup", []byte(strconv.Itoa(n)), 0)
	tasks, err := filepath.Glob("/proc/self/task/*")
	if err != nil {
		return err
	}
	var firstErr error
	for _, t := range tasks {
		tid, err := strconv.Atoi(filepath.Base(t))
		if err != nil {
			continue
		}
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, n); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("set the CPU priority of thread %d to nice %d: %w", tid, n, err)
		}
	}
	return firstErr
}
