package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sublet-dev/sublet/internal/pki"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controlplaneapiserver "k8s.io/kubernetes/pkg/controlplane/apiserver"
	netutils "k8s.io/utils/net"
)

// Info describes a running control plane.
type Info struct {
	// URL is the apiserver's address as clients on this machine reach it.
	URL string
	// AdminKubeconfig is the path of a cluster-admin kubeconfig.
	AdminKubeconfig string
	// Admin is a cluster-admin client configuration.
	Admin *rest.Config
	// Version is the Kubernetes version the apiserver reports.
	Version string
}

// ControlPlane is a kube-apiserver, controller-manager, optional scheduler and
// datastore running in this process.
type ControlPlane struct {
	opts Options
	dir  dataDir
	log  klog.Logger
	lock *os.File
	logs io.Writer
	wrap func(http.Handler) http.Handler
	// egressSocket is the egress guard's socket (see SetEgressProxy).
	egressSocket string
}

// WrapAPIHandler makes wrap see every request the API server serves,
// inside its filters: authenticated, authorized, with its request info in
// the context. The virtual cluster redirects what must run on the host
// (service and pod proxying) this way.
func (cp *ControlPlane) WrapAPIHandler(wrap func(http.Handler) http.Handler) { cp.wrap = wrap }

// SetLogOutput sends the components' logs to w instead of stderr.
func (cp *ControlPlane) SetLogOutput(w io.Writer) { cp.logs = w }

// New returns a control plane for completed, validated options.
func New(o Options, log klog.Logger) *ControlPlane {
	return &ControlPlane{opts: o, dir: dataDir{root: o.DataDir}, log: log}
}

// AdminKubeconfigPath is where Run writes the admin kubeconfig.
func (cp *ControlPlane) AdminKubeconfigPath() string { return cp.dir.AdminKubeconfig() }

// DataDir is the control plane's data directory.
func (cp *ControlPlane) DataDir() string { return cp.dir.root }

// Prepare checks and locks the data dir, failing fast on anything that is not
// this control plane's own intact data. Run calls it if it was not called.
func (cp *ControlPlane) Prepare() error {
	if cp.lock != nil {
		return nil
	}
	if err := cp.dir.prepare(cp.opts.Datastore); err != nil {
		return err
	}
	lock, err := cp.dir.lock()
	if err != nil {
		return err
	}
	if err := cp.dir.checkDatastore(cp.opts.Datastore); err != nil {
		lock.Close()
		return err
	}
	cp.lock = lock
	return nil
}

// applyMemorySettings sets the Go runtime's memory limit and GC target
// unless the environment already does. (A looser GC target during the start
// was tried: it saved ~0.6 s of GC CPU but no wall time on an idle machine,
// and left an idle control plane 37 MiB larger a minute later.) With
// IdleGCPercent the target follows the allocation rate until ctx ends.
func (cp *ControlPlane) applyMemorySettings(ctx context.Context) {
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set && cp.opts.MemoryLimit > 0 {
		debug.SetMemoryLimit(cp.opts.MemoryLimit)
	}
	if _, set := os.LookupEnv("GOGC"); set || cp.opts.GCPercent <= 0 {
		return
	}
	if cp.opts.IdleGCPercent > 0 {
		go tuneGC(ctx, cp.opts.GCPercent, cp.opts.IdleGCPercent, cp.log)
		return
	}
	debug.SetGCPercent(cp.opts.GCPercent)
}

func (cp *ControlPlane) logOut() io.Writer {
	if cp.logs != nil {
		return cp.logs
	}
	return os.Stderr
}

func (cp *ControlPlane) apiserverArgs(storeURL string, port int) []string {
	p := cp.dir.pkiDir()
	args := []string{
		"--etcd-servers=" + storeURL,
		"--etcd-cafile=" + p.CACert(),
		"--etcd-certfile=" + p.ClientCert(pki.APIServerEtcdClient),
		"--etcd-keyfile=" + p.ClientKey(pki.APIServerEtcdClient),
		"--bind-address=" + cp.opts.BindAddress,
		"--secure-port=" + strconv.Itoa(port),
		"--service-cluster-ip-range=" + cp.opts.ServiceCIDR,
		"--client-ca-file=" + p.CACert(),
		"--tls-cert-file=" + p.ServingCert(),
		"--tls-private-key-file=" + p.ServingKey(),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + p.SAPub(),
		"--service-account-signing-key-file=" + p.SAKey(),
		"--authorization-mode=Node,RBAC",
		"--allow-privileged=true",
		"--kubelet-client-certificate=" + p.ClientCert(pki.APIServerKubeletClient),
		"--kubelet-client-key=" + p.ClientKey(pki.APIServerKubeletClient),
		"--kubelet-preferred-address-types=InternalIP,Hostname",
		"--cert-dir=" + p.Path,
		"--profiling=false",
	}
	if cp.opts.AdvertiseAddress != "" {
		args = append(args, "--advertise-address="+cp.opts.AdvertiseAddress)
	} else {
		// The default reconciler rejects loopback addresses; with no other
		// address on this machine, nothing publishes the kubernetes endpoints.
		args = append(args, "--endpoint-reconciler-type=none")
	}
	if v := emulatedVersion(cp.opts.KubernetesVersion); v != "" {
		args = append(args, "--emulated-version=kube="+v)
	}
	if cp.opts.Mode == ModeVirtual {
		args = append(args, "--watch-cache-sizes="+strings.Join(uncachedResources, ","))
	}
	if cp.egressProxied() {
		args = append(args, "--egress-selector-config-file="+cp.dir.egressSelectorConfig())
	}
	return append(args, cp.opts.ExtraAPIServerArgs...)
}

// The upkeep periods of a virtual cluster's API server. It is the only API
// server of its cluster, with nobody to hand over to, so the upstream
// periods, made for several API servers that watch each other's leases, only
// wake an idle cluster: every 10 s the endpoint reconciler renewed its lease
// in the datastore and read the kubernetes endpoints and endpoint slices,
// and the identity lease was written (with a datastore commit) for a lease
// that lasts an hour. The endpoints' lease must outlive the period.
const (
	virtualEndpointReconcileInterval  = 60 * time.Second
	virtualEndpointLeaseTTL           = 150 * time.Second
	virtualIdentityLeaseRenewInterval = 60 * time.Second
)

// apiserverTuning is what runAPIServer changes in the API server's
// configuration: nothing in host mode.
func (cp *ControlPlane) apiserverTuning() func(*apiserverapp.Config) {
	if cp.opts.Mode != ModeVirtual {
		return nil
	}
	return func(c *apiserverapp.Config) {
		c.KubeAPIs.Extra.EndpointReconcilerConfig.Interval = virtualEndpointReconcileInterval
		c.KubeAPIs.Extra.MasterEndpointReconcileTTL = virtualEndpointLeaseTTL
		// A package variable, read when the server is built: one control
		// plane runs per process.
		controlplaneapiserver.IdentityLeaseRenewIntervalPeriod = virtualIdentityLeaseRenewInterval
	}
}

// uncachedResources are the built-in resources a virtual cluster's API
// server keeps no watch cache for (resource[.group]#0). It has few watchers
// per resource (its controller-manager, the syncer, its own informers), so
// a watch cache per resource, each with a bookmark tick a second and its
// own datastore watch, costs more while idle than it saves; their watches
// and lists are served by the datastore. Pods, written several times each
// while they start, keep theirs.
var uncachedResources = func() []string {
	core := []string{"configmaps", "endpoints", "events", "limitranges", "namespaces", "nodes",
		"persistentvolumeclaims", "persistentvolumes", "podtemplates", "replicationcontrollers",
		"resourcequotas", "secrets", "serviceaccounts", "services"}
	grouped := map[string][]string{
		"admissionregistration.k8s.io": {"mutatingadmissionpolicies", "mutatingadmissionpolicybindings",
			"mutatingwebhookconfigurations", "validatingadmissionpolicies", "validatingadmissionpolicybindings",
			"validatingwebhookconfigurations"},
		"apiextensions.k8s.io":         {"customresourcedefinitions"},
		"apiregistration.k8s.io":       {"apiservices"},
		"apps":                         {"controllerrevisions", "daemonsets", "deployments", "replicasets", "statefulsets"},
		"autoscaling":                  {"horizontalpodautoscalers"},
		"batch":                        {"cronjobs", "jobs"},
		"certificates.k8s.io":          {"certificatesigningrequests", "clustertrustbundles", "podcertificaterequests"},
		"coordination.k8s.io":          {"leases", "leasecandidates"},
		"discovery.k8s.io":             {"endpointslices"},
		"events.k8s.io":                {"events"},
		"flowcontrol.apiserver.k8s.io": {"flowschemas", "prioritylevelconfigurations"},
		"networking.k8s.io":            {"ingressclasses", "ingresses", "ipaddresses", "networkpolicies", "servicecidrs"},
		"node.k8s.io":                  {"runtimeclasses"},
		"policy":                       {"poddisruptionbudgets"},
		"rbac.authorization.k8s.io":    {"clusterrolebindings", "clusterroles", "rolebindings", "roles"},
		"resource.k8s.io":              {"deviceclasses", "devicetaintrules", "resourceclaims", "resourceclaimtemplates", "resourceslices"},
		"scheduling.k8s.io":            {"priorityclasses"},
		"storage.k8s.io":               {"csidrivers", "csinodes", "csistoragecapacities", "storageclasses", "volumeattachments", "volumeattributesclasses"},
		"storagemigration.k8s.io":      {"storageversionmigrations"},
		"internal.apiserver.k8s.io":    {"storageversions"},
	}
	var out []string
	for _, r := range core {
		out = append(out, r+"#0")
	}
	for g, rs := range grouped {
		for _, r := range rs {
			out = append(out, r+"."+g+"#0")
		}
	}
	sort.Strings(out)
	return out
}()

// virtualDisabledControllers are controllers a virtual cluster does without:
// its nodes and volumes belong to the host, which runs these for them.
var virtualDisabledControllers = []string{
	"node-ipam-controller", "node-lifecycle-controller", "taint-eviction-controller",
	"persistentvolume-binder-controller", "persistentvolume-attach-detach-controller",
	"persistentvolume-expander-controller", "ttl-controller", "bootstrap-signer-controller",
	"token-cleaner-controller", "pod-garbage-collector-controller",
}

func (cp *ControlPlane) controllerManagerArgs() []string {
	p := cp.dir.pkiDir()
	controllers := "*"
	if cp.opts.Mode == ModeVirtual {
		// runVirtualControllerManager runs policyStatusController itself.
		controllers += ",-" + strings.Join(append(append([]string(nil), virtualDisabledControllers...), policyStatusController), ",-")
	}
	return []string{
		"--kubeconfig=" + cp.dir.componentKubeconfig("controller-manager"),
		"--secure-port=0",
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + p.SAKey(),
		"--root-ca-file=" + p.CACert(),
		"--cluster-signing-cert-file=" + p.CACert(),
		"--cluster-signing-key-file=" + p.CAKey(),
		"--service-cluster-ip-range=" + cp.opts.ServiceCIDR,
		"--controllers=" + controllers,
		"--cluster-name=sublet",
		"--profiling=false",
		// Defaults of 20/30 make a burst of pods wait on the client side.
		"--kube-api-qps=200",
		"--kube-api-burst=400",
	}
}

func (cp *ControlPlane) schedulerArgs() []string {
	return []string{
		"--kubeconfig=" + cp.dir.componentKubeconfig("scheduler"),
		"--secure-port=0",
		"--leader-elect=false",
		"--kube-api-qps=200",
		"--kube-api-burst=400",
	}
}

// listen opens the API server's port on addr (a free one if port is 0).
func listen(addr string, port int) (net.Listener, int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
	if err != nil {
		return nil, 0, fmt.Errorf("port %d on %s is not available (%v); stop what uses it or pass --port 0 to pick a free port", port, addr, errors.Unwrap(err))
	}
	return l, l.Addr().(*net.TCPAddr).Port, nil
}

func firstServiceIP(cidr string) (string, error) {
	_, n, err := netutils.ParseCIDRSloppy(cidr)
	if err != nil {
		return "", fmt.Errorf("service CIDR %q: %w", cidr, err)
	}
	ip, err := netutils.GetIndexedIP(n, 1)
	if err != nil {
		return "", fmt.Errorf("service CIDR %q: %w", cidr, err)
	}
	return ip.String(), nil
}

// clientHost is the address a local client dials for a server bound to addr.
func clientHost(addr string) string {
	if ip := net.ParseIP(addr); ip == nil || ip.IsUnspecified() {
		return "127.0.0.1"
	}
	return addr
}

// waitReady polls the readiness check path until it passes, the apiserver
// exits, or 3 minutes pass.
func waitReady(ctx context.Context, cfg *rest.Config, path string, apiDone <-chan error) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	deadline := time.After(3 * time.Minute)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-apiDone:
			return fmt.Errorf("kube-apiserver exited: %w", err)
		case <-deadline:
			return fmt.Errorf("kube-apiserver was not ready after 3m: %v", last)
		case <-tick.C:
			if last = checkReady(ctx, cs, path); last == nil {
				return nil
			}
		}
	}
}

// checkReady asks the API server's readiness check path once.
func checkReady(ctx context.Context, cs kubernetes.Interface, path string) error {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := cs.Discovery().RESTClient().Get().RequestURI(path).DoRaw(rctx)
	return err
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}
