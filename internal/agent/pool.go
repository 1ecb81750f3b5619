package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/kubeversion"
	"github.com/sublet-dev/sublet/internal/pki"
	"github.com/sublet-dev/sublet/internal/supervisor"
	"github.com/sublet-dev/sublet/internal/vcluster"
)

// warmPool keeps started, unassigned control planes (`vcluster run
// --await-assignment`) under STATE/pool/ID, for the process runtime to hand
// to new virtual clusters. Each member made its own CA, certificates,
// service-account key and datastore when it started, and was never anyone
// else's: a member is taken once, and its directory becomes the virtual
// cluster's (STATE/vclusters/NS/NAME is then a symlink to it) until the
// virtual cluster is deleted.
//
// Files of a member: pid, args (what it was started with), vcluster.log,
// data/; owner ("NS/NAME") once taken, written before the symlink; the
// assignment, written last, which the member waits for.
type warmPool struct {
	size   int
	dir    string
	binary string
	host   kubernetes.Interface
	log    klog.Logger
	// sup supervises the members; members that exit unassigned count as
	// failures of the pool's directory, which back its starts off.
	sup *supervisor.Supervisor
	// serviceCIDR is the host's, detected once; members run with it.
	serviceCIDR string

	// mu serializes filling and taking.
	mu   sync.Mutex
	kick chan struct{}
}

var (
	poolMembers = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sublet_agent_warm_pool_members",
		Help: "Unassigned control planes of the warm pool: ready, or still starting.",
	}, []string{"state"})
	poolTakes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sublet_agent_warm_pool_takes_total",
		Help: "New virtual clusters by how they started: hit (took a warm control plane), empty (the pool had none), ineligible (their values change the control plane).",
	}, []string{"result"})
)

func init() { ctrlmetrics.Registry.MustRegister(poolMembers, poolTakes) }

func newWarmPool(size int, stateDir, binary string, host kubernetes.Interface, sup *supervisor.Supervisor, log klog.Logger) *warmPool {
	return &warmPool{size: size, dir: filepath.Join(stateDir, "pool"), binary: binary, host: host, sup: sup, log: log,
		kick: make(chan struct{}, 1)}
}

// Start keeps the pool filled until ctx ends (a manager runnable: it runs
// while this agent leads). Members outlive the agent, like virtual
// clusters, and the next agent adopts them.
func (p *warmPool) Start(ctx context.Context) error {
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return err
	}
	p.sweep()
	for p.serviceCIDR == "" {
		cidr, err := vcluster.DetectServiceCIDR(ctx, p.host, "default")
		if err == nil {
			p.serviceCIDR = cidr
			break
		}
		p.log.Error(err, "warm pool: detect the host's service range; retrying")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
	tick := time.NewTicker(10 * time.Second) // a member that died is replaced
	defer tick.Stop()
	for {
		p.fill()
		select {
		case <-ctx.Done():
			return nil
		case <-p.kick:
		case <-tick.C:
		}
	}
}

func (p *warmPool) refill() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// member is one directory of the pool.
type member struct {
	dir   string
	ready bool // its admin kubeconfig is written: serving
	born  time.Time
}

// freeLocked lists the running, unassigned members, the oldest first, and
// removes what is left of members that died unassigned. p.mu is held.
func (p *warmPool) freeLocked() []member {
	dirs, _ := filepath.Glob(filepath.Join(p.dir, "*"))
	var out []member
	for _, dir := range dirs {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			continue // the pool's own files
		}
		if _, err := os.Stat(filepath.Join(dir, "owner")); err == nil {
			continue
		}
		// Members this agent starts have their pid file before p.mu is
		// released, so one not running here is dead.
		if !p.sup.Check(dir).Running {
			_ = os.RemoveAll(dir)
			continue
		}
		m := member{dir: dir}
		if st, err := os.Stat(filepath.Join(dir, "pid")); err == nil {
			m.born = st.ModTime()
		}
		_, err := os.Stat(filepath.Join(dir, "data", "admin.kubeconfig"))
		m.ready = err == nil
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].born.Before(out[j].born) })
	return out
}

// fill starts members until size run unassigned; after members exited
// unassigned it backs off (1 s doubling to 5 min).
func (p *warmPool) fill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if wait, _ := p.sup.Backoff(p.dir); wait > 0 {
		return
	}
	free := p.freeLocked()
	ready := 0
	for _, m := range free {
		if m.ready {
			ready++
		}
	}
	poolMembers.WithLabelValues("ready").Set(float64(ready))
	poolMembers.WithLabelValues("starting").Set(float64(len(free) - ready))
	for n := len(free); n < p.size; n++ {
		if err := p.startLocked(); err != nil {
			p.log.Error(err, "warm pool: start a member")
			return
		}
	}
}

func (p *warmPool) startLocked() error {
	id := make([]byte, 6)
	_, _ = rand.Read(id)
	dir := filepath.Join(p.dir, hex.EncodeToString(id))
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return err
	}
	args := []string{"vcluster", "run", "--data-dir", filepath.Join(dir, "data"), "--service-cidr", p.serviceCIDR,
		"--await-assignment", filepath.Join(dir, "assignment")}
	err := p.sup.Start(dir, p.binary, args, strings.Join(args, "\n"), func(e supervisor.Exit) {
		if _, err := os.Stat(filepath.Join(dir, "owner")); err == nil {
			return // a virtual cluster's now: the runtime sees it exit
		}
		p.log.Info("warm pool member exited unassigned", "dir", dir, "code", e.Code)
		p.sup.Failed(p.dir)
		_ = os.RemoveAll(dir)
		p.refill()
	})
	if err == nil {
		p.log.Info("warm pool: started a member", "dir", dir)
	}
	return err
}

// assignment returns the arguments a member takes to become the virtual
// cluster run with args (`vcluster run …`), or false when those change the
// control plane itself (Kubernetes version, datastore, service range, API
// server flags): such a cluster starts fresh.
func (p *warmPool) assignment(args []string) ([]string, bool) {
	var out []string
	for i := 2; i < len(args); i++ {
		name, value, hasValue := strings.Cut(strings.TrimPrefix(args[i], "--"), "=")
		if !hasValue && i+1 < len(args) {
			i++
			value = args[i]
		}
		switch {
		case name == "data-dir":
			continue
		case name == "service-cidr" && value == p.serviceCIDR,
			name == "datastore" && value == "sqlite",
			name == "kubernetes-version" && strings.HasPrefix(kubeversion.Binary(), value+"."):
			continue // what members run with anyway
		case !slices.Contains(vcluster.AssignableFlags, name):
			return nil, false
		}
		out = append(out, "--"+name+"="+value)
	}
	return out, true
}

// take gives vc the oldest running unassigned member (a ready one if there
// is one) and returns its directory, or "" if the pool has none.
func (p *warmPool) take(vc *storagev1.VirtualCluster) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	free := p.freeLocked()
	if len(free) == 0 {
		return ""
	}
	pick := free[0]
	for _, m := range free {
		if m.ready {
			pick = m
			break
		}
	}
	if err := pki.WriteFileAtomic(filepath.Join(pick.dir, "owner"), []byte(vc.Namespace+"/"+vc.Name), 0o600); err != nil {
		p.log.Error(err, "warm pool: take a member")
		return ""
	}
	p.sup.ResetBackoff(p.dir)
	return pick.dir
}

// sweep removes members that were taken but never linked (the agent
// stopped in between), so nothing of theirs is left running.
func (p *warmPool) sweep() {
	stateDir := filepath.Dir(p.dir)
	owners, _ := filepath.Glob(filepath.Join(p.dir, "*", "owner"))
	for _, f := range owners {
		dir := filepath.Dir(f)
		parts := strings.SplitN(readFile(f), "/", 2)
		if len(parts) == 2 {
			if target, err := os.Readlink(filepath.Join(stateDir, "vclusters", parts[0], parts[1])); err == nil && target == dir {
				continue
			}
		}
		p.sup.Stop(dir, 30*time.Second)
		p.log.Info("warm pool: removed a member taken by no virtual cluster", "dir", dir)
		_ = os.RemoveAll(dir)
	}
}

// errNoLink: the path is not a symlink.
var errNoLink = errors.New("not a symlink")

// linkTarget returns where the symlink at path points.
func linkTarget(path string) (string, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return "", err
	}
	if st.Mode()&fs.ModeSymlink == 0 {
		return "", errNoLink
	}
	return os.Readlink(path)
}
