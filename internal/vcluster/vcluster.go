// Package vcluster is the virtual cluster runtime: a virtual-mode control
// plane plus the syncer that runs its workloads in one host namespace.
package vcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/sublet-dev/sublet/internal/component"
	"github.com/sublet-dev/sublet/internal/controlplane"
	"github.com/sublet-dev/sublet/internal/egress"
	"github.com/sublet-dev/sublet/internal/exitcode"
	"github.com/sublet-dev/sublet/internal/isolation"
	"github.com/sublet-dev/sublet/internal/kubeproxy"
	"github.com/sublet-dev/sublet/internal/pathflag"
	"github.com/sublet-dev/sublet/internal/restconfig"
	"github.com/sublet-dev/sublet/internal/syncer"
	"github.com/sublet-dev/sublet/internal/syncer/kinds"
	"github.com/sublet-dev/sublet/internal/translate"
)

// Client rate limits of the syncer. The virtual API server is this
// process's own; the host is shared, so its limit is lower.
const (
	virtualQPS = 2000
	hostQPS    = 500
)

// Options configures one virtual cluster runtime.
type Options struct {
	ControlPlane   *controlplane.Options
	Name           string
	HostKubeconfig string
	HostNamespace  string
	Sync           []string
	DisableSync    []string
	// Listen is HOST:PORT for the API server (sets BindAddress and Port).
	Listen string
	// PodAPIEndpoint is HOST:PORT host pods reach the virtual API server
	// at; default the advertise address and the API server's port.
	PodAPIEndpoint string
	// PodDNS is the nameserver of ClusterFirst pods; default the ClusterIP
	// of the virtual cluster's kube-system/kube-dns.
	PodDNS string
	// DNSListen is HOST:PORT the cluster DNS answers on (UDP and TCP);
	// default a free port on the bind address.
	DNSListen string
	// KubeconfigSecret, if set, is a host Secret in HostNamespace that gets
	// the admin kubeconfig (key "config") with server KubeconfigServer.
	KubeconfigSecret string
	KubeconfigServer string
	// PodSecurityStandard is the level every pod is checked against
	// before the syncer creates its host pod.
	PodSecurityStandard string
	// IsolationPolicy is what else the syncer enforces on what reaches the
	// host (isolation.Policy as JSON; values' isolation section).
	IsolationPolicy string
	// EgressAllowedCIDRs are what the virtual API server may dial beyond
	// its own host pods and services and its kubelet proxy (see
	// internal/egress).
	EgressAllowedCIDRs []string
	// NetworkPolicyIsolation: the agent keeps an isolation NetworkPolicy
	// on the cluster's host pods (values' isolation.networkPolicy).
	NetworkPolicyIsolation bool
	// FromHostSelectors are KIND=SELECTOR: which of the host's objects of
	// a kind copied from the host (its classes) the cluster sees.
	FromHostSelectors []string
	// CustomResources are the values' custom resource rows, as
	// kinds.FormatCustom writes them.
	CustomResources string
	// AwaitAssignment, if set, makes a warm control plane: it starts with
	// no virtual cluster of its own and waits for this file to name one
	// (see assign.go). Needs ServiceCIDR.
	AwaitAssignment string
	// DataOnly: serve the data endpoint alone (RunDataOnly).
	DataOnly bool
}

// NewOptions returns defaults.
func NewOptions() *Options {
	cp := controlplane.NewOptions()
	cp.Mode = controlplane.ModeVirtual
	// Detected from the host unless given, so virtual and host ClusterIPs
	// agree.
	cp.ServiceCIDR = ""
	// The data dir's datastore, else SQLite (see controlplane.Options).
	cp.Datastore = ""
	return &Options{ControlPlane: cp, PodSecurityStandard: syncer.DefaultPodSecurityStandard}
}

// AddFlags binds the options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.ControlPlane.AddFlags(fs)
	fs.StringVar(&o.Name, "name", o.Name, "Name of the virtual cluster; it ends the host name of every synced object.")
	pathflag.Var(fs, &o.HostKubeconfig, "host-kubeconfig", o.HostKubeconfig, "Kubeconfig of the host cluster; it needs rights in --host-namespace only. Default: in-cluster credentials.")
	fs.StringVar(&o.HostNamespace, "host-namespace", o.HostNamespace, "Host namespace the virtual cluster's workloads run in.")
	fs.StringSliceVar(&o.Sync, "sync", o.Sync, "Resources to sync in addition to the defaults (comma list).")
	fs.StringSliceVar(&o.DisableSync, "disable-sync-resources", o.DisableSync, "Resources not to sync (comma list), e.g. ingresses. Known: "+strings.Join(syncer.Names(), ", ")+".")
	fs.StringVar(&o.Listen, "listen", o.Listen, "HOST:PORT the virtual API server listens on (instead of --bind-address and --port).")
	fs.StringVar(&o.PodAPIEndpoint, "pod-api-endpoint", o.PodAPIEndpoint, "HOST:PORT synced pods reach the virtual API server at (KUBERNETES_SERVICE_HOST/PORT); default: the advertise address and the API server's port.")
	fs.StringVar(&o.PodDNS, "pod-dns", o.PodDNS, "Nameserver IP for the virtual cluster's ClusterFirst pods; default: the ClusterIP of its kube-system/kube-dns Service, whose host copy routes to the virtual cluster's DNS (--dns-listen).")
	fs.StringVar(&o.DNSListen, "dns-listen", o.DNSListen, "HOST:PORT the virtual cluster's DNS answers on, UDP and TCP (SVC.NS.svc.cluster.local and the rest of the cluster's names; other names go to the host's resolvers); default: a free port on --bind-address.")
	fs.StringVar(&o.KubeconfigSecret, "kubeconfig-secret", o.KubeconfigSecret, "Host secret (in --host-namespace) to write the admin kubeconfig to, key config; for runtimes where the data dir is not reachable.")
	fs.StringVar(&o.KubeconfigServer, "kubeconfig-server", o.KubeconfigServer, "Server URL in the --kubeconfig-secret kubeconfig, e.g. https://NAME.NAMESPACE.svc:443; its host is added to the certificate.")
	fs.StringVar(&o.IsolationPolicy, "isolation-policy", o.IsolationPolicy, "What tenants' objects may carry to the host beyond Pod Security, as JSON of the values' isolation keys services, endpoints, ingresses and pods (the README's values reference; egress is --egress-allowed-cidrs); default: the safe policy (no load balancers, node ports or externalIPs, endpoints only to the cluster's own pods, no host-affecting annotations or tolerations).")
	fs.StringVar(&o.PodSecurityStandard, "pod-security-standard", o.PodSecurityStandard, "Pod Security Standard every pod must meet before it runs on the host: privileged, baseline or restricted. Namespace labels in the virtual cluster cannot lower it.")
	fs.StringSliceVar(&o.EgressAllowedCIDRs, "egress-allowed-cidrs", o.EgressAllowedCIDRs, "CIDRs the virtual API server may also dial for webhooks, aggregated APIs and node proxying (comma list, e.g. 10.20.0.0/16), beyond the cluster's own host pods and services; everything else is refused. Loopback, link-local and this machine's own addresses open only to a CIDR inside them (127.0.0.1/32), never to 0.0.0.0/0.")
	fs.BoolVar(&o.NetworkPolicyIsolation, "network-policy-isolation", o.NetworkPolicyIsolation, "The host namespace has an isolation NetworkPolicy for this cluster's pods (values' isolation.networkPolicy): tenants' NetworkPolicies reach the host allowing nothing beyond the cluster's own pods (no ipBlock peers; a rule without peers allows the cluster's pods).")
	fs.StringArrayVar(&o.FromHostSelectors, "from-host-selector", o.FromHostSelectors, "KIND=SELECTOR (repeatable): copy only the host's objects of KIND ("+strings.Join(kinds.FromHostNames(), ", ")+") whose labels match SELECTOR, in kubectl's label selector syntax (e.g. storageclasses=tier in (gold,silver)).")
	fs.StringVar(&o.CustomResources, "custom-resources", o.CustomResources, "Custom resources to sync, as a JSON list of rows {crd: PLURAL.GROUP, fromHost: bool, references: [{path, kind, returned, optional}]} (the values' sync.toHost/fromHost.customResources, which the agent turns into this flag): a to-host kind's objects get host copies with the references translated; a from-host kind (cluster-scoped) is copied in read-only. The syncer installs each CRD from the host.")
	pathflag.Var(fs, &o.AwaitAssignment, "await-assignment", o.AwaitAssignment, "Start the control plane with no virtual cluster and wait until this file names one (a warm pool member; the agent writes it).")
	_ = fs.MarkHidden("await-assignment")
	fs.BoolVar(&o.DataOnly, "data-only", o.DataOnly, "Serve only the data endpoint on --listen, for the agent to snapshot or restore a sleeping pod-runtime cluster without waking it: no control plane, no syncer. Needs --kubeconfig-secret, where it publishes its token.")
	if f := fs.Lookup("service-cidr"); f != nil {
		f.Usage = "IP range for service ClusterIPs; default: the host's, detected, so a service has the same ClusterIP on both sides."
	}
	if f := fs.Lookup("datastore"); f != nil {
		f.Usage = "Datastore: sqlite (kine on SQLite) or etcd (embedded etcd); default: the one the data dir was created with, sqlite for a new one."
	}
}

// Complete fills in derived values. Without --service-cidr it asks the
// host for its service range.
func (o *Options) Complete() error {
	o.ControlPlane.Mode = controlplane.ModeVirtual
	if o.Listen != "" {
		host, port, err := net.SplitHostPort(o.Listen)
		p, perr := strconv.Atoi(port)
		if err != nil || perr != nil {
			return exitcode.Configf("--listen %q is not HOST:PORT (example: 0.0.0.0:8443)", o.Listen)
		}
		o.ControlPlane.BindAddress, o.ControlPlane.Port = host, p
	}
	if err := o.validateLocal(); err != nil {
		return exitcode.ConfigErr(err)
	}
	if o.AwaitAssignment != "" {
		// No host yet: the agent passes the host's range.
		if o.ControlPlane.ServiceCIDR == "" {
			return exitcode.Configf("--await-assignment needs --service-cidr")
		}
		return o.ControlPlane.Complete()
	}
	if o.KubeconfigServer != "" {
		u, _ := url.Parse(o.KubeconfigServer)
		o.ControlPlane.TLSSANs = append(o.ControlPlane.TLSSANs, u.Hostname())
	}
	cfg, err := o.hostConfig()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hostCIDR, err := DetectServiceCIDR(ctx, kubernetes.NewForConfigOrDie(cfg), o.HostNamespace)
	if o.ControlPlane.ServiceCIDR == "" {
		if err != nil {
			return err
		}
		o.ControlPlane.ServiceCIDR = hostCIDR
	} else if err == nil {
		// The host assigns every ClusterIP and the virtual side adopts
		// it: an address outside the virtual range would cost the tenant
		// its service. Refuse such a range before anything starts.
		if err := checkServiceCIDR(o.ControlPlane.ServiceCIDR, hostCIDR); err != nil {
			return err
		}
	}
	return o.ControlPlane.Complete()
}

// Validate reports every invalid option.
func (o *Options) Validate() error {
	return errors.Join(o.ControlPlane.Validate(), o.validateLocal())
}

// validateLocal checks the options that need no host.
func (o *Options) validateLocal() error {
	var errs []error
	switch msgs := translate.ValidateVClusterName(o.Name); {
	case o.Name == "" && o.AwaitAssignment != "":
		// a warm control plane: the assignment names it
	case o.Name == "":
		errs = append(errs, errors.New("--name is required"))
	case len(msgs) > 0:
		errs = append(errs, fmt.Errorf("--name %q: %s", o.Name, strings.Join(msgs, "; ")))
	}
	if msgs := translate.ValidateHostNamespace(o.HostNamespace); len(msgs) > 0 && (o.HostNamespace != "" || o.AwaitAssignment == "") {
		errs = append(errs, fmt.Errorf("--host-namespace %q is not a namespace name: %s", o.HostNamespace, strings.Join(msgs, "; ")))
	}
	if _, err := syncer.Selection(o.Sync, o.DisableSync); err != nil {
		errs = append(errs, err)
	}
	if _, err := fromHostSelectors(o.FromHostSelectors); err != nil {
		errs = append(errs, err)
	}
	if _, err := kinds.ParseCustom(o.CustomResources); err != nil {
		errs = append(errs, fmt.Errorf("--custom-resources: %w", err))
	}
	if o.PodAPIEndpoint != "" {
		if _, port, err := net.SplitHostPort(o.PodAPIEndpoint); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("--pod-api-endpoint %q is not HOST:PORT (example: 10.96.12.34:443)", o.PodAPIEndpoint))
		}
	}
	if o.KubeconfigServer != "" {
		if u, err := url.Parse(o.KubeconfigServer); err != nil || u.Scheme != "https" || u.Hostname() == "" {
			errs = append(errs, fmt.Errorf("--kubeconfig-server %q is not an https URL (example: https://demo.team-a.svc:443)", o.KubeconfigServer))
		}
	}
	if (o.KubeconfigSecret == "") != (o.KubeconfigServer == "") {
		errs = append(errs, errors.New("--kubeconfig-secret and --kubeconfig-server go together"))
	}
	if _, err := syncer.NewPodSecurity(o.PodSecurityStandard); err != nil {
		errs = append(errs, fmt.Errorf("--pod-security-standard: %w", err))
	}
	if p, err := isolation.Parse(o.IsolationPolicy); err != nil {
		errs = append(errs, fmt.Errorf("--isolation-policy: %w", err))
	} else if len(p.Egress.AllowedCIDRs) > 0 {
		errs = append(errs, errors.New("--isolation-policy: egress.allowedCIDRs goes in --egress-allowed-cidrs, which the egress guard reads"))
	}
	if o.DNSListen != "" {
		if _, _, err := net.SplitHostPort(o.DNSListen); err != nil {
			errs = append(errs, fmt.Errorf("--dns-listen %q is not HOST:PORT (example: 10.0.0.5:1053)", o.DNSListen))
		}
	}
	if _, err := isolation.ParseCIDRs(o.EgressAllowedCIDRs); err != nil {
		errs = append(errs, fmt.Errorf("--egress-allowed-cidrs: %w", err))
	}
	if o.PodDNS != "" && net.ParseIP(o.PodDNS) == nil {
		errs = append(errs, fmt.Errorf("--pod-dns %q is not an IP address", o.PodDNS))
	}
	return errors.Join(errs...)
}

// podRuntime is where host pods find the virtual API server and DNS.
func (o *Options) podRuntime(info controlplane.Info) (syncer.PodRuntime, error) {
	endpoint := o.PodAPIEndpoint
	if endpoint == "" {
		u, err := url.Parse(info.URL)
		if err != nil {
			return syncer.PodRuntime{}, err
		}
		endpoint = net.JoinHostPort(o.ControlPlane.AdvertiseAddress, u.Port())
	}
	host, port, err := net.SplitHostPort(endpoint)
	if err != nil {
		return syncer.PodRuntime{}, err
	}
	p, err := strconv.ParseInt(port, 10, 32)
	if err != nil {
		return syncer.PodRuntime{}, fmt.Errorf("pod API endpoint %q: %w", endpoint, err)
	}
	return syncer.PodRuntime{APIHost: host, APIPort: int32(p), DNSServer: o.PodDNS}, nil
}

func (o *Options) hostConfig() (*rest.Config, error) {
	return restconfig.Load(o.HostKubeconfig, "--host-kubeconfig")
}

// Info describes a running virtual cluster.
type Info struct {
	controlplane.Info
	// Name is the virtual cluster's (a warm control plane's is known only
	// once assigned).
	Name string
	// DNSAddress is where its DNS answers (HOST:PORT, UDP and TCP).
	DNSAddress string
}

// Run runs the virtual cluster's parts on cp: the egress guard, the
// control plane, then, once it is ready, what connects it to its host
// namespace (DNS, kubelet proxy, syncer); ready is called after all
// started. A warm control plane (o.AwaitAssignment) waits for its
// assignment before the last. They stop in reverse order.
func Run(ctx context.Context, cp *controlplane.ControlPlane, o Options, log klog.Logger, reg prometheus.Registerer, ready func(Info) error) error {
	var hostCfg *rest.Config
	if o.AwaitAssignment == "" {
		// Fail fast, before the control plane starts.
		var err error
		if hostCfg, err = o.checkHost(ctx); err != nil {
			return err
		}
	} else if err := setNice(backgroundNice); err != nil {
		log.Error(err, "warm control plane: could not lower its CPU priority")
	}
	metrics := syncer.NewMetrics(reg)
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	// Service and pod proxying reach the host copies (once the syncer runs).
	handlers, err := newAPIHandlers()
	if err != nil {
		return err
	}
	if o.KubeconfigSecret != "" {
		// The agent cannot reach this data dir: it copies and replaces
		// it through the data endpoint, with the token published beside
		// the kubeconfig.
		if handlers.data, err = newDataEndpoint(cp.DataDir(), func() { stop(ErrDataReplaced) }, log); err != nil {
			return err
		}
	}
	cp.WrapAPIHandler(handlers.wrap)
	guard, err := newEgressGuard(cp, o, log, reg)
	if err != nil {
		return fmt.Errorf("egress guard: %w", err)
	}
	defer guard.socket.Close()

	parts := component.NewGroup(ctx)
	defer parts.Stop()
	if err := parts.Start(guard.component()); err != nil {
		return component.Interrupted(ctx, err)
	}
	var info controlplane.Info
	if err := parts.Start(component.Component{Name: "control plane", Run: func(ctx context.Context, started func()) error {
		return cp.Run(ctx, func(i controlplane.Info) error {
			info = i
			started()
			return nil
		})
	}}); err != nil {
		return component.Interrupted(ctx, err)
	}
	err = parts.Start(component.Component{Name: "host connection", Run: func(ctx context.Context, started func()) error {
		if o.AwaitAssignment != "" {
			// The control plane keeps running (and is watched) while it waits.
			cfg, err := o.assigned(ctx, log)
			if err != nil {
				return err
			}
			hostCfg = cfg
		}
		if err := o.startSyncing(ctx, cp, hostCfg, info, handlers, guard.Guard, metrics, log, ready); err != nil {
			return err
		}
		started()
		<-ctx.Done()
		return nil
	}})
	if err != nil {
		return component.Interrupted(ctx, err)
	}
	err = parts.Wait()
	if errors.Is(context.Cause(ctx), ErrDataReplaced) {
		return ErrDataReplaced
	}
	return err
}

// assigned waits for a warm control plane's assignment, then checks the
// host it names and returns a client config of it.
func (o *Options) assigned(ctx context.Context, log klog.Logger) (*rest.Config, error) {
	if err := o.awaitAssignment(ctx, log); err != nil {
		return nil, err
	}
	log.Info("warm control plane assigned", "virtualcluster", o.Name, "hostNamespace", o.HostNamespace)
	if err := setNice(0); err != nil {
		log.Error(err, "runs at background CPU priority until its next restart", "virtualcluster", o.Name)
	}
	return o.checkHost(ctx)
}

// checkHost returns a client of the host and checks that the host
// namespace exists.
func (o *Options) checkHost(ctx context.Context) (*rest.Config, error) {
	hostCfg, err := o.hostConfig()
	if err != nil {
		return nil, err
	}
	host, err := kubernetes.NewForConfig(hostCfg)
	if err != nil {
		return nil, err
	}
	if _, err := host.CoreV1().Namespaces().Get(ctx, o.HostNamespace, metav1.GetOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, exitcode.Configf("host namespace %q does not exist: create it (kubectl create namespace %s) or pass another --host-namespace", o.HostNamespace, o.HostNamespace)
		}
		if !apierrors.IsForbidden(err) {
			return nil, fmt.Errorf("reach the host cluster: %w", err)
		}
		// Namespace-scoped credentials may not read namespaces: go on.
	}
	return hostCfg, nil
}

// startSyncing starts what connects the running control plane to its host
// namespace (checked with checkHost, which gave hostCfg): DNS, the
// kubeconfig Secret, the kubelet proxy, the syncer; and tells the egress
// guard what they make reachable.
func (o Options) startSyncing(ctx context.Context, cp *controlplane.ControlPlane, hostCfg *rest.Config, info controlplane.Info,
	handlers apiHandlers, guard *egress.Guard, metrics *syncer.Metrics, log klog.Logger, ready func(Info) error) error {
	sync, err := o.syncSettings()
	if err != nil {
		return err
	}
	selected, selectors, custom, policy := sync.selected, sync.selectors, sync.custom, sync.policy
	handlers.readOnly.guard(selected, custom)
	virtualCfg, hostSyncCfg := handlers.readOnly.syncerConfig(withThroughput(info.Admin, virtualQPS)), withThroughput(hostCfg, hostQPS)
	virtual, err := kubernetes.NewForConfig(virtualCfg)
	if err != nil {
		return fmt.Errorf("virtual cluster client: %w", err)
	}
	pods, err := o.podRuntime(info)
	if err != nil {
		return fmt.Errorf("pod runtime: %w", err)
	}
	podSecurity, err := syncer.NewPodSecurity(o.PodSecurityStandard)
	if err != nil {
		return err
	}
	dnsAddress, err := o.clusterDNS(ctx, virtual, &pods, log)
	if err != nil {
		return err
	}
	sctx := &syncer.Context{
		PodSecurity:            podSecurity,
		Policy:                 policy,
		Translator:             translate.Translator{VCluster: o.Name, HostNamespace: o.HostNamespace},
		Virtual:                virtual,
		Host:                   kubernetes.NewForConfigOrDie(hostSyncCfg),
		VirtualDynamic:         dynamic.NewForConfigOrDie(virtualCfg),
		HostDynamic:            dynamic.NewForConfigOrDie(hostSyncCfg),
		Log:                    log.WithName("syncer"),
		Pods:                   pods,
		FromHostSelectors:      selectors,
		Custom:                 custom,
		NetworkPolicyIsolation: o.NetworkPolicyIsolation,
	}
	if o.KubeconfigSecret != "" {
		var token string
		if handlers.data != nil {
			token = handlers.data.token
		}
		if err := publishKubeconfig(ctx, sctx.Host, o, info, token); err != nil {
			return fmt.Errorf("--kubeconfig-secret %s: %w", o.KubeconfigSecret, err)
		}
	}
	hostAPI, err := kubeproxy.NewBackend(withThroughput(hostCfg, hostQPS))
	if err != nil {
		return fmt.Errorf("host API proxy: %w", err)
	}
	kubelet, err := startKubeletProxy(ctx, sctx, hostAPI, cp.DataDir(), o.ControlPlane.AdvertiseAddress, log)
	if err != nil {
		return fmt.Errorf("kubelet proxy: %w", err)
	}
	sctx.Kubelet = kubelet
	if err := allowEgress(guard, o, sctx, kubelet); err != nil {
		return fmt.Errorf("egress guard: %w", err)
	}
	handlers.redirect.Start(sctx, hostAPI)
	go func() {
		if err := syncer.Run(ctx, sctx, selected, metrics); err != nil {
			log.Error(err, "syncer stopped")
		}
	}()
	if ready != nil {
		return ready(Info{Info: info, Name: o.Name, DNSAddress: dnsAddress})
	}
	return nil
}

// withThroughput raises client-side rate limits: the syncer is the virtual
// cluster's kubelet and scheduler in one and must keep up with bursts of
// pods (client-go's default of 5 per second would take minutes for 1,000).
func withThroughput(cfg *rest.Config, qps float32) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = qps, int(2*qps)
	return c
}
