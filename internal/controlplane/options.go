// Package controlplane runs a real Kubernetes control plane in one process:
// kube-apiserver, kube-controller-manager, optionally kube-scheduler, and a
// datastore (embedded etcd or kine on SQLite), all linked from upstream.
package controlplane

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"
	cliflag "k8s.io/component-base/cli/flag"

	"github.com/sublet-dev/sublet/internal/pathflag"
)

// Datastore names accepted by --datastore.
const (
	DatastoreEtcd   = "etcd"
	DatastoreSQLite = "sqlite"
)

// Mode selects which controllers run.
type Mode string

const (
	// ModeHost runs a full cluster control plane, scheduler included.
	ModeHost Mode = "host"
	// ModeVirtual runs the control plane of a virtual cluster: no scheduler and
	// no controllers that manage real nodes or volumes.
	ModeVirtual Mode = "virtual"
)

// Options configures one control plane.
type Options struct {
	// DataDir holds the datastore, certificates and the admin kubeconfig.
	DataDir string
	// BindAddress is the address the apiserver listens on.
	BindAddress string
	// Port is the apiserver's secure port; 0 picks a free one.
	Port int
	// AdvertiseAddress is the address published in the kubernetes service's
	// endpoints; empty means the first non-loopback address of this machine.
	AdvertiseAddress string
	// ServiceCIDR is the range of service ClusterIPs.
	ServiceCIDR string
	// Datastore is DatastoreEtcd or DatastoreSQLite; empty means the one
	// the data dir was created with, else DatastoreSQLite (see Complete).
	Datastore string
	// Scheduler runs kube-scheduler in the process.
	Scheduler bool
	// Mode selects the controller set; ModeHost also turns the scheduler on.
	Mode Mode
	// KubernetesVersion is the version the control plane emulates (major.minor
	// of the binary or up to three minors older). Empty means the binary's.
	KubernetesVersion string
	// MemoryLimit is the Go runtime's soft memory limit (GOMEMLIMIT) in bytes
	// for the process; 0 means none. A GOMEMLIMIT environment variable wins.
	MemoryLimit int64
	// GCPercent is the Go GC target (GOGC); 0 keeps the runtime default. A
	// GOGC environment variable wins.
	GCPercent int
	// IdleGCPercent, if set, is the GC target while the process allocates
	// little (see gc.go); GCPercent is the target while it is busy. 0 keeps
	// GCPercent all along; a GOGC environment variable wins.
	IdleGCPercent int
	// WorkqueueMetrics keeps client-go's work-queue metrics (workqueue_*) of
	// the API server and controller-manager; unset means on in host mode and
	// off in virtual mode (see Complete). It applies to the whole process.
	WorkqueueMetrics cliflag.Tristate
	// ExtraAPIServerArgs are appended to the apiserver's flags (--name=value).
	ExtraAPIServerArgs []string
	// TLSSANs are extra names and addresses the serving certificate holds.
	TLSSANs []string
}

// defaultVirtualGCPercent is the GC target of a virtual-mode control plane;
// see Complete.
const defaultVirtualGCPercent = 50

// defaultVirtualIdleGCPercent is its GC target while idle; see gc.go.
const defaultVirtualIdleGCPercent = 25

// NewOptions returns options with defaults for a host-mode control plane.
func NewOptions() *Options {
	return &Options{
		BindAddress: "127.0.0.1",
		Port:        0,
		ServiceCIDR: "10.96.0.0/16",
		Datastore:   DatastoreEtcd,
		Mode:        ModeHost,
	}
}

// AddFlags binds the options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	pathflag.Var(fs, &o.DataDir, "data-dir", o.DataDir, "Directory for the datastore, certificates and the admin kubeconfig; reused on the next start.")
	fs.StringVar(&o.BindAddress, "bind-address", o.BindAddress, "Address the API server listens on.")
	fs.IntVar(&o.Port, "port", o.Port, "Secure port of the API server; 0 picks a free port.")
	fs.StringVar(&o.AdvertiseAddress, "advertise-address", o.AdvertiseAddress, "Address published for the kubernetes service; default: the first non-loopback address of this machine.")
	fs.StringVar(&o.ServiceCIDR, "service-cidr", o.ServiceCIDR, "IP range for service ClusterIPs.")
	fs.StringVar(&o.Datastore, "datastore", o.Datastore, "Datastore: etcd (embedded etcd) or sqlite (kine on SQLite).")
	fs.StringVar(&o.KubernetesVersion, "kubernetes-version", o.KubernetesVersion, "Kubernetes version to emulate, e.g. v1.36; default: the version Sublet is built with.")
	fs.Var(&quantityValue{&o.MemoryLimit}, "memory-limit", "Soft memory limit of the process (Go GOMEMLIMIT), e.g. 256Mi; 0 for none. Below the working set the GC runs nonstop, so leave headroom.")
	fs.Var(&o.WorkqueueMetrics, "workqueue-metrics", "Export the work-queue metrics (workqueue_*) of the API server and controller-manager; default: on in host mode, off in virtual mode, where their 500 ms tickers were half of an idle cluster's CPU.")
	fs.Lookup("workqueue-metrics").NoOptDefVal = "true"
	fs.StringArrayVar(&o.ExtraAPIServerArgs, "apiserver-arg", o.ExtraAPIServerArgs, "Extra kube-apiserver flag, e.g. --apiserver-arg=--watch-cache=false (repeatable).")
	fs.StringSliceVar(&o.TLSSANs, "tls-san", o.TLSSANs, "Extra DNS name or IP for the API server's certificate, e.g. a service name clients use (repeatable).")
}

// Complete fills in derived values.
func (o *Options) Complete() error {
	if o.Mode == "" {
		o.Mode = ModeHost
	}
	if o.Mode == ModeHost {
		o.Scheduler = true
	}
	if o.Mode == ModeVirtual && o.GCPercent == 0 {
		// Measured on an idle virtual-mode control plane: 219 MiB of
		// anonymous memory with GOGC=100, 182 MiB with 50. A 160 MiB memory
		// limit got it to 150 MiB idle, but under a burst of pods the GC
		// then ran nonstop: twice the CPU and 30x the sync latency. So the
		// limit is opt-in (--memory-limit).
		o.GCPercent = defaultVirtualGCPercent
		if o.IdleGCPercent == 0 {
			o.IdleGCPercent = defaultVirtualIdleGCPercent
		}
	}
	if !o.WorkqueueMetrics.Provided() {
		o.WorkqueueMetrics.Default(o.Mode == ModeHost)
	}

	if o.Datastore == "" {
		// SQLite (kine) starts in ~25 ms; a restarted single-member etcd
		// waits a random 0.1–1 s for its own election. A data dir keeps the
		// datastore it was created with.
		o.Datastore = dataDir{root: o.DataDir}.recordedDatastore()
		if o.Datastore == "" {
			o.Datastore = DatastoreSQLite
		}
	}
	if o.AdvertiseAddress == "" {
		o.AdvertiseAddress = firstNonLoopbackIPv4()
	}
	o.KubernetesVersion = strings.TrimPrefix(o.KubernetesVersion, "v")
	return nil
}

var minorVersionRE = regexp.MustCompile(`^1\.[0-9]+(\.[0-9]+)?$`)

// Validate reports every invalid option.
func (o *Options) Validate() error {
	var errs []error
	if o.DataDir == "" {
		errs = append(errs, errors.New("--data-dir is required"))
	}
	if net.ParseIP(o.BindAddress) == nil {
		errs = append(errs, fmt.Errorf("--bind-address %q is not an IP address", o.BindAddress))
	}
	if o.Port < 0 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("--port %d is out of range 0-65535", o.Port))
	}
	if o.AdvertiseAddress != "" && net.ParseIP(o.AdvertiseAddress) == nil {
		errs = append(errs, fmt.Errorf("--advertise-address %q is not an IP address", o.AdvertiseAddress))
	}
	if _, _, err := net.ParseCIDR(o.ServiceCIDR); err != nil {
		errs = append(errs, fmt.Errorf("--service-cidr %q is not a CIDR (example: 10.96.0.0/16)", o.ServiceCIDR))
	}
	if o.Datastore != DatastoreEtcd && o.Datastore != DatastoreSQLite {
		errs = append(errs, fmt.Errorf("--datastore %q is not one of etcd, sqlite", o.Datastore))
	}
	if o.Mode != ModeHost && o.Mode != ModeVirtual {
		errs = append(errs, fmt.Errorf("mode %q is not one of host, virtual", o.Mode))
	}
	if o.MemoryLimit != 0 && o.MemoryLimit < 64<<20 {
		errs = append(errs, fmt.Errorf("--memory-limit %d bytes is below the 64Mi a control plane needs; use 0 for no limit", o.MemoryLimit))
	}
	if o.KubernetesVersion != "" {
		if !minorVersionRE.MatchString(o.KubernetesVersion) {
			errs = append(errs, fmt.Errorf("--kubernetes-version %q is not of the form v1.MINOR or v1.MINOR.PATCH", o.KubernetesVersion))
		} else if err := checkEmulatable(o.KubernetesVersion); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// firstNonLoopbackIPv4 returns the first IPv4 address of an up, non-loopback
// interface, or "" if there is none.
func firstNonLoopbackIPv4() string {
	ifaces, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 || iface.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := iface.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
				return ipn.IP.String()
			}
		}
	}
	return ""
}

// quantityValue is a pflag.Value for a byte count written as a Kubernetes
// quantity (160Mi, 1Gi, 0).
type quantityValue struct{ v *int64 }

func (q *quantityValue) String() string {
	if q.v == nil || *q.v < 0 {
		return ""
	}
	return resource.NewQuantity(*q.v, resource.BinarySI).String()
}

func (q *quantityValue) Set(s string) error {
	v, err := resource.ParseQuantity(s)
	if err != nil {
		return fmt.Errorf("%q is not a quantity such as 160Mi", s)
	}
	*q.v = v.Value()
	return nil
}

func (q *quantityValue) Type() string { return "quantity" }

// BytesVar defines flag name of fs, a byte count written as a Kubernetes
// quantity, stored in p.
func BytesVar(fs *pflag.FlagSet, p *int64, name, usage string) {
	fs.Var(&quantityValue{p}, name, usage)
}
