// Package testenv gives tests real Kubernetes servers: a shared local host
// cluster per test package and extra bare control planes, each run by the
// built sublet binary as a child process so test binaries stay small.
package testenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// readyPrefix starts the line sublet prints once a cluster is usable.
const readyPrefix = "Admin kubeconfig: "

// StartTimeout bounds how long a cluster may take to become ready.
const StartTimeout = 3 * time.Minute

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary returns the sublet binary under test: $SUBLET_BIN if set, else one
// built once with `make build` in the repository.
func Binary() (string, error) {
	buildOnce.Do(func() {
		if p := os.Getenv("SUBLET_BIN"); p != "" {
			buildPath, buildErr = filepath.Abs(p)
			return
		}
		root, err := RepoRoot()
		if err != nil {
			buildErr = err
			return
		}
		out, err := exec.Command("make", "-C", root, "build").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("make build: %v\n%s", err, out)
			return
		}
		buildPath = filepath.Join(root, "bin", "sublet")
	})
	return buildPath, buildErr
}

// RepoRoot finds the directory holding go.mod above the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Process is a running sublet server process.
type Process struct {
	Args       []string
	DataDir    string
	Kubeconfig string
	Config     *rest.Config
	Client     kubernetes.Interface

	cmd    *exec.Cmd
	output *lockedBuffer
	done   chan struct{}
	err    error
}

// Start runs `sublet ARGS...` and waits until it prints its admin
// kubeconfig; dataDir is passed as --data-dir.
func Start(ctx context.Context, dataDir string, args ...string) (*Process, error) {
	p, kc, err := StartUntil(ctx, readyPrefix, append(args, "--data-dir", dataDir)...)
	if err != nil {
		return nil, err
	}
	p.DataDir, p.Kubeconfig = dataDir, kc
	cfg, err := clientcmd.BuildConfigFromFlags("", p.Kubeconfig)
	if err != nil {
		p.Kill()
		return nil, err
	}
	p.Config = cfg
	p.Client = kubernetes.NewForConfigOrDie(cfg)
	return p, nil
}

// StartUntil runs `sublet ARGS...` and waits until it prints a line
// starting with prefix; it returns the rest of that line.
func StartUntil(ctx context.Context, prefix string, args ...string) (*Process, string, error) {
	bin, err := Binary()
	if err != nil {
		return nil, "", err
	}
	p := &Process{Args: args, output: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	p.cmd.Stderr = p.output
	if err := p.cmd.Start(); err != nil {
		return nil, "", err
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			p.output.Write([]byte(line + "\n"))
			if strings.HasPrefix(line, prefix) {
				select {
				case ready <- strings.TrimPrefix(line, prefix):
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	select {
	case rest := <-ready:
		return p, rest, nil
	case <-p.done:
		return nil, "", fmt.Errorf("sublet %s exited before it was ready: %v\n%s", strings.Join(args, " "), p.err, p.Output())
	case <-time.After(StartTimeout):
		p.Kill()
		return nil, "", fmt.Errorf("sublet %s not ready after %s\n%s", strings.Join(args, " "), StartTimeout, p.Output())
	case <-ctx.Done():
		p.Kill()
		return nil, "", ctx.Err()
	}
}

// Output returns what the process printed so far.
func (p *Process) Output() string { return p.output.String() }

// Stop sends SIGTERM and waits for a clean exit.
func (p *Process) Stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(60 * time.Second):
		p.Kill()
		return errors.New("did not stop within 60s of SIGTERM")
	}
}

// Kill ends the process group at once, as a crash would.
func (p *Process) Kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Run runs `sublet ARGS...` to completion and returns its combined output and
// exit code; it is for commands that are expected to fail or finish.
func Run(timeout time.Duration, args ...string) (string, int, error) {
	bin, err := Binary()
	if err != nil {
		return "", 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return string(out), exitErr.ExitCode(), nil
	}
	return string(out), 0, err
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Tail returns the last n lines of s, for test and benchmark messages.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
