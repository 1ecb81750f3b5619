package agent

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

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
	"github.com/sublet-dev/sublet/internal/supervisor"
)

// tokenLifetime of the syncer's host token; the agent renews the token
// file at half of it, and the syncer's client re-reads the file.
const tokenLifetime = 24 * 3600

// processRuntime runs each virtual cluster as a `sublet vcluster run` child
// process with a data dir under the agent's state dir. Children run in a
// session of their own, so an agent restart re-adopts them (by pid file and
// command line) instead of starting duplicates. What it knows of a child
// is in the child's directory (see the supervisor package), not here.
type processRuntime struct {
	stateDir string
	binary   string
	host     kubernetes.Interface
	hostCfg  *rest.Config
	log      klog.Logger
	sup      *supervisor.Supervisor
	// pool, if set, hands started control planes to new virtual clusters.
	pool *warmPool
}

// newSupervisor supervises `sublet vcluster run` children: their output
// goes to vcluster.log, their last "error: " line says why they exited,
// and a process is the child of DIR if its --data-dir is DIR/data.
func newSupervisor() *supervisor.Supervisor {
	return supervisor.New("vcluster.log", "error: ", func(dir string, args []string) bool {
		want := filepath.Join(dir, "data")
		for i, a := range args {
			if a == "--data-dir" && i+1 < len(args) && args[i+1] == want {
				return true
			}
		}
		return false
	})
}

func newProcessRuntime(stateDir, binary string, host kubernetes.Interface, hostCfg *rest.Config, sup *supervisor.Supervisor, log klog.Logger) *processRuntime {
	return &processRuntime{stateDir: stateDir, binary: binary, host: host, hostCfg: hostCfg, sup: sup, log: log}
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
	st, err := r.supervise(vc, dir, args, record)
	if err != nil || st.Message != "" {
		return st, err
	}
	data := filepath.Join(dir, "data")
	return probe(ctx, filepath.Join(data, "admin.kubeconfig"), readiness.Path(readiness.Bootstrapped(data)))
}

// supervise keeps vc's child running in dir with args and record: it
// adopts one that runs, restarts one whose record differs, and starts one
// (with backoff) where none runs. The State has a Message unless the child
// runs as it should.
func (r *processRuntime) supervise(vc *storagev1.VirtualCluster, dir string, args []string, record string) (State, error) {
	st := r.sup.Check(dir)
	if !st.Running && !st.Exiting {
		// The pid file may not name the child that runs there (written
		// by a start that then failed, or lost): the data dir's lock
		// tells. Adopt the holder rather than start a second child that
		// could only find the data dir in use.
		holder, held := controlplane.LockHolder(filepath.Join(dir, "data"))
		if held {
			adopted, err := r.sup.Adopt(dir, holder)
			if err != nil || !adopted {
				return State{Message: fmt.Sprintf("waiting for the process holding %s to exit", filepath.Join(dir, "data"))}, err
			}
			r.log.Info("the pid file did not name the running virtual cluster: adopted the data dir's holder",
				"virtualcluster", klog.KObj(vc), "pid", holder, "pidFile", st.Why)
			st = r.sup.Check(dir)
		}
	}
	if st.Adopted {
		r.log.Info("adopted a running virtual cluster", "virtualcluster", klog.KObj(vc), "pid", st.PID)
	}
	if st.Running && r.sup.Record(dir) != record {
		r.log.Info("values or host changed: restarting virtual cluster", "virtualcluster", klog.KObj(vc), "pid", st.PID)
		r.sup.Stop(dir, 30*time.Second)
		st = r.sup.Check(dir)
	}
	switch {
	case st.Running:
		return State{}, nil
	case st.Exiting:
		return State{Message: "the virtual cluster's process is exiting"}, nil
	}
	if e, ok := r.sup.Exited(dir); ok && e.Code == exitcode.Config {
		if e.Record == record {
			return State{Refused: true, Message: cmp.Or(e.Message, "the virtual cluster refused its configuration; see "+filepath.Join(dir, "vcluster.log"))}, nil
		}
		r.sup.ResetBackoff(dir) // the configuration changed: start at once
	}
	if wait, failures := r.sup.Backoff(dir); wait > 0 {
		return State{Message: fmt.Sprintf("exited %d times, restarting with backoff; see %s", failures, filepath.Join(dir, "vcluster.log"))}, nil
	}
	if err := r.sup.Start(dir, r.binary, args, record, func(e supervisor.Exit) {
		if e.Code == exitcode.Config {
			r.log.Info("virtual cluster refused its configuration", "virtualcluster", klog.KObj(vc), "reason", e.Message)
		}
	}); err != nil {
		return State{}, err
	}
	r.log.Info("started virtual cluster", "virtualcluster", klog.KObj(vc), "dir", dir, "before", st.Why)
	return State{Message: "starting the virtual cluster's control plane"}, nil
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
	// The assignment before the record: an agent stopped in between finds
	// a record that does not match and restarts the member as vc.
	if err := pki.WriteFileAtomic(filepath.Join(dir, "assignment"), []byte(strings.Join(assignment, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	if err := r.sup.SetRecord(dir, record); err != nil {
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

// stop stops vc's child, if it runs, and forgets its failures.
func (r *processRuntime) stop(vc *storagev1.VirtualCluster) {
	dir := r.dir(vc)
	r.sup.Stop(dir, 30*time.Second)
	r.sup.ResetBackoff(dir)
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
	sup := newSupervisor()
	var wg sync.WaitGroup
	n := 0
	for _, dir := range append(members, dirs...) {
		if target, err := linkTarget(dir); err == nil {
			if slices.Contains(members, target) {
				continue // stopped as a member
			}
			dir = target
		}
		if sup.Check(dir).Running {
			n++
			wg.Add(1)
			go func() { defer wg.Done(); sup.Stop(dir, grace) }()
		}
	}
	wg.Wait()
	return n
}
