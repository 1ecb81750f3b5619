package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/controlplane"
	"github.com/sublet-dev/sublet/internal/controlplane/readiness"
	"github.com/sublet-dev/sublet/internal/exitcode"
	"github.com/sublet-dev/sublet/internal/pki"
	"github.com/sublet-dev/sublet/internal/restconfig"
)

// tokenLifetime of the syncer's host token; the agent renews the token
// file at half of it, and the syncer's client re-reads the file.
const tokenLifetime = 24 * 3600

// processRuntime runs each virtual cluster as a `sublet vcluster run` child
// process with a data dir under the agent's state dir. Children run in a
// session of their own, so an agent restart re-adopts them (by pid file and
// command line) instead of starting duplicates.
type processRuntime struct {
	stateDir string
	binary   string
	host     kubernetes.Interface
	hostCfg  *rest.Config
	log      klog.Logger
	// pool, if set, hands started control planes to new virtual clusters.
	pool *warmPool

	mu       sync.Mutex
	restarts map[string]restartState // by namespace/name
	children map[string]*child       // started by this agent, by namespace/name
	adopted  map[string]bool         // running children of an earlier agent, by namespace/name
}

// child is a `sublet vcluster run` this agent started and can wait for.
type child struct {
	record string        // what it runs with (see Ensure)
	done   chan struct{} // closed once it exited and code/message are set
	code   int
	// message is the child's own error line, when it refused its
	// configuration.
	message string
}

type restartState struct {
	count int
	last  time.Time
}

func newProcessRuntime(stateDir, binary string, host kubernetes.Interface, hostCfg *rest.Config, log klog.Logger) *processRuntime {
	return &processRuntime{stateDir: stateDir, binary: binary, host: host, hostCfg: hostCfg, log: log,
		restarts: map[string]restartState{}, children: map[string]*child{}, adopted: map[string]bool{}}
}

func (r *processRuntime) Name() string { return "process" }

// link is where vc's directory is: a directory, or a symlink to the warm
// pool member it took.
func (r *processRuntime) link(vc *storagev1.VirtualCluster) string {
	return filepath.Join(r.stateDir, "vclusters", vc.Namespace, vc.Name)
}

// dir is vc's directory: pid, args, host credentials, logs, data.
func (r *processRuntime) dir(vc *storagev1.VirtualCluster) string {
	return resolveDir(r.link(vc))
}

// resolveDir follows a virtual cluster's link to its pool member.
func resolveDir(link string) string {
	if target, err := linkTarget(link); err == nil {
		return target
	}
	return link
}

func (r *processRuntime) Ensure(ctx context.Context, vc *storagev1.VirtualCluster, extra []string) (State, error) {
	taken, err := r.takeFromPool(vc, extra)
	if err != nil {
		return State{}, err
	}
	dir := r.dir(vc)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return State{}, err
	}
	if err := r.ensureHostCredentials(ctx, vc, dir); err != nil {
		return State{}, err
	}
	args := append([]string{"vcluster", "run", "--name", vc.Name, "--host-namespace", vc.Namespace,
		"--host-kubeconfig", filepath.Join(dir, "host.kubeconfig"), "--data-dir", filepath.Join(dir, "data")}, extra...)
	// What the child runs with: its flags and where the host is (a host
	// that moved to another address needs a restart too).
	record := strings.Join(args, "\n") + "\n# host " + r.hostCfg.Host
	if taken {
		if err := r.assign(vc, dir, args, record); err != nil {
			return State{}, err
		}
	}
	pid, why := runningWhy(dir)
	running := why == ""
	if !running {
		// The pid file may not name the child that runs there (written
		// by a start that then failed, or lost): the data dir's lock
		// tells. Adopt the holder rather than start a second child that
		// could only find the data dir in use.
		holder, held, err := adoptHolder(dir)
		switch {
		case err != nil:
			return State{}, err
		case held && holder == 0:
			return State{Message: fmt.Sprintf("waiting for the process holding %s to exit", filepath.Join(dir, "data"))}, nil
		case held:
			r.log.Info("the pid file did not name the running virtual cluster: adopted the data dir's holder",
				"virtualcluster", klog.KObj(vc), "pid", holder, "pidFile", why)
			pid, running = holder, true
		}
	}
	if running {
		r.noteAdopted(vc, pid)
	}
	if running && readFile(filepath.Join(dir, "args")) != record {
		r.log.Info("values or host changed: restarting virtual cluster", "virtualcluster", klog.KObj(vc), "pid", pid)
		stopProcess(pid, 30*time.Second)
		running = false
	}
	if !running {
		if c := r.exited(vc); c != nil && c.code == exitcode.Config {
			if c.record == record {
				return State{Refused: true, Message: c.message}, nil
			}
			r.resetBackoff(vc) // the configuration changed: start at once
		}
		if wait := r.backoff(vc); wait > 0 {
			return State{Message: fmt.Sprintf("exited %d times, restarting with backoff; see %s", r.restartCount(vc), filepath.Join(dir, "vcluster.log"))}, nil
		}
		if err := r.start(vc, dir, args, record); err != nil {
			return State{}, err
		}
		r.log.Info("started virtual cluster", "virtualcluster", klog.KObj(vc), "dir", dir, "before", why)
		return State{Message: "starting the virtual cluster's control plane"}, nil
	}
	data := filepath.Join(dir, "data")
	return probe(ctx, filepath.Join(data, "admin.kubeconfig"), readiness.Path(readiness.Bootstrapped(data)))
}

// takeFromPool links a new vc (no directory yet) to a warm pool member,
// when there is a pool, one is free, and vc's values leave the control
// plane as members run it.
func (r *processRuntime) takeFromPool(vc *storagev1.VirtualCluster, extra []string) (bool, error) {
	if r.pool == nil {
		return false, nil
	}
	link := r.link(vc)
	if _, err := os.Lstat(link); !errors.Is(err, fs.ErrNotExist) {
		return false, nil // not new
	}
	if _, ok := r.pool.assignment(append([]string{"vcluster", "run"}, extra...)); !ok {
		poolTakes.WithLabelValues("ineligible").Inc()
		return false, nil
	}
	member := r.pool.take(vc)
	if member == "" {
		poolTakes.WithLabelValues("empty").Inc()
		return false, nil
	}
	r.pool.refill()
	if err := os.MkdirAll(filepath.Dir(link), 0o700); err != nil {
		return false, err
	}
	if err := os.Symlink(member, link); err != nil {
		return false, err
	}
	poolTakes.WithLabelValues("hit").Inc()
	return true, nil
}

// assign makes the pool member at dir vc's: the assignment it waits for,
// then the record of what it runs with from now on.
func (r *processRuntime) assign(vc *storagev1.VirtualCluster, dir string, args []string, record string) error {
	assignment, _ := r.pool.assignment(args)
	if c := r.pool.handOver(dir); c != nil {
		c.record = record
		r.mu.Lock()
		r.children[vc.Namespace+"/"+vc.Name] = c
		r.mu.Unlock()
	}
	// The assignment before the record: an agent stopped in between finds
	// a record that does not match and restarts the member as vc.
	if err := pki.WriteFileAtomic(filepath.Join(dir, "assignment"), []byte(strings.Join(assignment, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(filepath.Join(dir, "args"), []byte(record), 0o600); err != nil {
		return err
	}
	r.log.Info("virtual cluster took a warm control plane", "virtualcluster", klog.KObj(vc), "dir", dir)
	return nil
}

// ensureHostCredentials writes the syncer's host kubeconfig (again when
// the host's address changed), whose token file is renewed when older than
// half its lifetime.
func (r *processRuntime) ensureHostCredentials(ctx context.Context, vc *storagev1.VirtualCluster, dir string) error {
	tokenFile := filepath.Join(dir, "host.token")
	if st, err := os.Stat(tokenFile); err != nil || time.Since(st.ModTime()) >= tokenLifetime/2*time.Second {
		token, err := ensureSyncerAccount(ctx, r.host, vc, tokenLifetime)
		if err != nil {
			return err
		}
		if err := pki.WriteFileAtomic(tokenFile, []byte(token), 0o600); err != nil {
			return err
		}
	}
	cluster := &clientcmdapi.Cluster{Server: r.hostCfg.Host, CertificateAuthorityData: r.hostCfg.CAData, CertificateAuthority: r.hostCfg.CAFile,
		InsecureSkipTLSVerify: r.hostCfg.Insecure}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["host"] = cluster
	cfg.AuthInfos["syncer"] = &clientcmdapi.AuthInfo{TokenFile: tokenFile}
	cfg.Contexts["host"] = &clientcmdapi.Context{Cluster: "host", AuthInfo: "syncer", Namespace: vc.Namespace}
	cfg.CurrentContext = "host"
	path := filepath.Join(dir, "host.kubeconfig")
	if old, err := clientcmd.LoadFromFile(path); err == nil {
		if c := old.Clusters["host"]; c != nil && c.Server == cluster.Server && bytes.Equal(c.CertificateAuthorityData, cluster.CertificateAuthorityData) &&
			c.CertificateAuthority == cluster.CertificateAuthority && c.InsecureSkipTLSVerify == cluster.InsecureSkipTLSVerify {
			return nil
		}
	}
	return pki.WriteKubeconfig(path, cfg)
}

// running reports the child's pid if the pid file names the live child
// of this directory (see runningWhy).
func (r *processRuntime) running(dir string) (int, bool) {
	pid, why := runningWhy(dir)
	return pid, why == ""
}

// runningWhy returns the pid of the child that runs in dir, by its pid
// file, and "", or why none is known to run there.
func runningWhy(dir string) (int, string) {
	pid, err := strconv.Atoi(strings.TrimSpace(readFile(filepath.Join(dir, "pid"))))
	if err != nil || pid <= 0 {
		return 0, "no pid file"
	}
	if want := strings.TrimSpace(readFile(filepath.Join(dir, "pid-start"))); want != "" {
		// Who the pid file names, by its start time: reliable where
		// /proc/PID/cmdline is not (it reads empty now and then for a
		// running process on a loaded machine), and immune to pid reuse.
		switch start, alive := processStart(pid); {
		case start == "":
			return pid, fmt.Sprintf("process %d is gone", pid)
		case start != want:
			return pid, fmt.Sprintf("process %d is not the child that started at %s", pid, want)
		case !alive:
			return pid, fmt.Sprintf("process %d exited", pid)
		}
		return pid, ""
	}
	return pid, runsIn(pid, dir) // a pid file of an older agent
}

// processStart returns when process pid started (field 22 of
// /proc/PID/stat, clock ticks since boot), "" if there is no such
// process, and whether it has not exited.
func processStart(pid int) (string, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
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

// writePidFile records that process pid is the child running in dir: its
// start time, then its pid.
func writePidFile(dir string, pid int) error {
	start, _ := processStart(pid)
	if err := pki.WriteFileAtomic(filepath.Join(dir, "pid-start"), []byte(start+"\n"), 0o600); err != nil {
		return err
	}
	return pki.WriteFileAtomic(filepath.Join(dir, "pid"), []byte(strconv.Itoa(pid)), 0o600)
}

// adoptHolder finds whether a process holds the lock of dir's data dir.
// If that is a child running in dir, its pid goes into dir's pid file and
// is returned; if it is another process, held is true and pid 0.
func adoptHolder(dir string) (pid int, held bool, err error) {
	holder, held := controlplane.LockHolder(filepath.Join(dir, "data"))
	if !held {
		return 0, false, nil
	}
	if holder <= 0 || runsIn(holder, dir) != "" {
		return 0, true, nil // or its arguments read empty: asked again soon
	}
	return holder, true, writePidFile(dir, holder)
}

// runsIn returns "" if process pid is a child running in dir (its
// --data-dir is dir/data), else why not.
func runsIn(pid int, dir string) string {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return fmt.Sprintf("process %d: %v", pid, err)
	}
	args := strings.Split(string(cmdline), "\x00")
	want := filepath.Join(dir, "data")
	for i, a := range args {
		if a == "--data-dir" && i+1 < len(args) && args[i+1] == want {
			return ""
		}
	}
	return fmt.Sprintf("process %d runs something else (%d bytes of arguments)", pid, len(cmdline))
}

// noteAdopted logs, once, that a child this agent did not start (it
// outlived an earlier agent) is running and is kept.
func (r *processRuntime) noteAdopted(vc *storagev1.VirtualCluster, pid int) {
	key := vc.Namespace + "/" + vc.Name
	r.mu.Lock()
	_, ours := r.children[key]
	known := ours || r.adopted[key]
	r.adopted[key] = true
	r.mu.Unlock()
	if !known {
		r.log.Info("adopted a running virtual cluster", "virtualcluster", klog.KObj(vc), "pid", pid)
	}
}

// exited returns the last child this agent started for vc once it has
// exited (waiting a moment for one that is exiting), or nil.
func (r *processRuntime) exited(vc *storagev1.VirtualCluster) *child {
	r.mu.Lock()
	c := r.children[vc.Namespace+"/"+vc.Name]
	r.mu.Unlock()
	if c == nil {
		return nil
	}
	select {
	case <-c.done:
		return c
	case <-time.After(5 * time.Second):
		return nil
	}
}

func (r *processRuntime) start(vc *storagev1.VirtualCluster, dir string, args []string, record string) error {
	c, err := spawnChild(r.binary, dir, args, record, func(c *child) {
		if c.code == exitcode.Config {
			r.log.Info("virtual cluster refused its configuration", "virtualcluster", klog.KObj(vc), "error", c.message)
		}
	})
	if c != nil {
		r.mu.Lock()
		r.children[vc.Namespace+"/"+vc.Name] = c
		r.mu.Unlock()
	}
	return err
}

// spawnChild starts `sublet ARGS` in a session of its own (it outlives an
// agent restart) with its output appended to dir/vcluster.log, and writes
// dir/args (record), dir/pid-start and dir/pid. A goroutine reaps it,
// keeps its exit code and, when it refused its configuration, its error
// line, then calls exited. The child is returned once it started, even if
// a file could not be written.
func spawnChild(binary, dir string, args []string, record string, exited func(*child)) (*child, error) {
	logPath := filepath.Join(dir, "vcluster.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	var offset int64
	if st, err := logFile.Stat(); err == nil {
		offset = st.Size()
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	c := &child{record: record, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		c.code = cmd.ProcessState.ExitCode()
		if c.code == exitcode.Config {
			c.message = lastError(logPath, offset)
		}
		close(c.done)
		exited(c)
	}()
	if err := pki.WriteFileAtomic(filepath.Join(dir, "args"), []byte(record), 0o600); err != nil {
		return c, err
	}
	return c, writePidFile(dir, cmd.Process.Pid)
}

// backoff returns how long to wait before starting vc again: nothing the
// first time, then 1 s doubling to 5 min while it keeps exiting.
func (r *processRuntime) backoff(vc *storagev1.VirtualCluster) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := vc.Namespace + "/" + vc.Name
	st := r.restarts[key]
	if st.count > 0 {
		delay := time.Second << min(st.count-1, 8)
		if delay > 5*time.Minute {
			delay = 5 * time.Minute
		}
		if wait := time.Until(st.last.Add(delay)); wait > 0 {
			return wait
		}
	}
	if time.Since(st.last) > 10*time.Minute {
		st.count = 0 // it ran long enough
	}
	st.count++
	st.last = time.Now()
	r.restarts[key] = st
	return 0
}

func (r *processRuntime) resetBackoff(vc *storagev1.VirtualCluster) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.restarts, vc.Namespace+"/"+vc.Name)
}

func (r *processRuntime) restartCount(vc *storagev1.VirtualCluster) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.restarts[vc.Namespace+"/"+vc.Name].count
}

// Sleep stops vc's child and forgets it; its directory stays, so Ensure
// starts it again on the same data.
func (r *processRuntime) Sleep(_ context.Context, vc *storagev1.VirtualCluster) (bool, error) {
	r.stop(vc)
	return true, nil
}

func (r *processRuntime) Delete(ctx context.Context, vc *storagev1.VirtualCluster) error {
	r.stop(vc)
	if err := deleteSyncerAccount(ctx, r.host, vc); err != nil {
		return err
	}
	if err := os.RemoveAll(r.dir(vc)); err != nil {
		return err
	}
	return os.RemoveAll(r.link(vc)) // the symlink to a pool member
}

// stop stops vc's child, if it runs, and forgets what this agent knew of it.
func (r *processRuntime) stop(vc *storagev1.VirtualCluster) {
	if pid, ok := r.running(r.dir(vc)); ok {
		stopProcess(pid, 30*time.Second)
	}
	r.mu.Lock()
	delete(r.restarts, vc.Namespace+"/"+vc.Name)
	delete(r.children, vc.Namespace+"/"+vc.Name)
	delete(r.adopted, vc.Namespace+"/"+vc.Name)
	r.mu.Unlock()
}

// stopProcess sends SIGTERM, then SIGKILL after grace.
func stopProcess(pid int, grace time.Duration) {
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(st), ") Z ") {
			return // exited, waiting to be reaped
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// probe reports whether the API server behind an admin kubeconfig file
// passes readiness check readyz, and its version.
func probe(ctx context.Context, kubeconfig, readyz string) (State, error) {
	data, err := os.ReadFile(kubeconfig)
	if err != nil {
		return State{Message: "waiting for the control plane's admin kubeconfig"}, nil
	}
	return probeKubeconfig(ctx, data, readyz)
}

// probeKubeconfig reports whether the API server behind an admin
// kubeconfig passes readiness check readyz (a path, see
// readiness.Path), and its version.
func probeKubeconfig(ctx context.Context, data []byte, readyz string) (State, error) {
	cfg, err := restconfig.FromInlineKubeconfig(data)
	if err != nil {
		return State{}, fmt.Errorf("read the virtual cluster's admin kubeconfig: %w", err)
	}
	cfg.Timeout = 5 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return State{}, err
	}
	body, err := cs.Discovery().RESTClient().Get().RequestURI(readyz).DoRaw(ctx)
	if err != nil || strings.TrimSpace(string(body)) != "ok" {
		return State{Endpoint: cfg.Host, Message: "waiting for the virtual API server to be ready"}, nil
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		return State{Endpoint: cfg.Host, Message: "waiting for the virtual API server's version"}, nil
	}
	return State{Ready: true, Kubeconfig: data, Endpoint: cfg.Host, Version: servedVersion(v)}, nil
}

// servedVersion is the Kubernetes version an API server behaves as: its
// emulation version when it emulates an older minor (then /version's
// emulationMinor says so), else its gitVersion.
func servedVersion(v *version.Info) string {
	if v.EmulationMajor != "" && v.EmulationMinor != "" && v.EmulationMinor != strings.TrimSuffix(v.Minor, "+") {
		return "v" + v.EmulationMajor + "." + v.EmulationMinor
	}
	return v.GitVersion
}

// lastError returns the last "error: " line a child wrote to its log
// after offset, without the prefix.
func lastError(logPath string, offset int64) string {
	msg := fmt.Sprintf("the virtual cluster refused its configuration; see %s", logPath)
	f, err := os.Open(logPath)
	if err != nil {
		return msg
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return msg
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "error: "); ok {
			msg = line
		}
	}
	return msg
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// StopVirtualClusters stops every virtual cluster process the process
// runtime started under stateDir (SIGTERM, SIGKILL after grace) and
// returns how many ran. Children outlive an agent restart by design; this
// is for stopping everything, as `sublet up` does on Ctrl-C.
func StopVirtualClusters(stateDir string, grace time.Duration) int {
	dirs, _ := filepath.Glob(filepath.Join(stateDir, "vclusters", "*", "*"))
	members, _ := filepath.Glob(filepath.Join(stateDir, "pool", "*"))
	r := &processRuntime{}
	var wg sync.WaitGroup
	n := 0
	for _, dir := range append(members, dirs...) {
		if target, err := linkTarget(dir); err == nil {
			if slices.Contains(members, target) {
				continue // stopped as a member
			}
			dir = target
		}
		if pid, ok := r.running(dir); ok {
			n++
			wg.Add(1)
			go func() { defer wg.Done(); stopProcess(pid, grace) }()
		}
	}
	wg.Wait()
	return n
}
