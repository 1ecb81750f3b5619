// Package agent reconciles VirtualCluster objects in a host cluster: it
// merges their values, runs each through a runtime (a child process here,
// a pod in real clusters), publishes its admin kubeconfig and reports
// status, and on deletion removes everything the virtual cluster owned.
package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/config/crd"
	"github.com/sublet-dev/sublet/config/policy"
	"github.com/sublet-dev/sublet/internal/controlplane"
	"github.com/sublet-dev/sublet/internal/pathflag"
	"github.com/sublet-dev/sublet/internal/restconfig"
	"github.com/sublet-dev/sublet/internal/snapshot"
)

// Options configure the agent.
type Options struct {
	Kubeconfig              string
	StateDir                string
	Runtime                 string
	InstallCRDs             bool
	LeaderElect             bool
	LeaderElectionNamespace string
	MetricsAddr             string
	DefaultTemplate         string
	// PolicyNamespace holds the admission policy's parameter, the list of
	// templates that loosen isolation, which the agent keeps.
	PolicyNamespace string
	// Binary is the sublet binary children run; default this executable.
	Binary string
	// Image is the sublet image of the pod runtime; default the chart's.
	Image string
	// WarmPool is how many started, unassigned control planes the process
	// runtime keeps for new virtual clusters.
	WarmPool int
	// SnapshotDir holds snapshots kept as files (default STATE-DIR/snapshots).
	SnapshotDir string
	// SnapshotRegistries are the OCI repository prefixes snapshots may go to.
	SnapshotRegistries []string
	// SnapshotMinInterval is the shortest time between two scheduled
	// snapshots of one virtual cluster.
	SnapshotMinInterval time.Duration
	// SnapshotMaxSize bounds a snapshot's data, taken or restored.
	SnapshotMaxSize int64
}

// NewOptions returns defaults.
func NewOptions() *Options {
	home, _ := os.UserHomeDir()
	return &Options{
		StateDir:                filepath.Join(home, ".sublet", "agent"),
		Runtime:                 "process",
		InstallCRDs:             true,
		LeaderElect:             true,
		LeaderElectionNamespace: "kube-system",
		MetricsAddr:             "127.0.0.1:9464",
		PolicyNamespace:         policy.DefaultNamespace,
		SnapshotMinInterval:     DefaultSnapshotMinInterval,
		SnapshotMaxSize:         snapshot.DefaultLimits.Bytes,
	}
}

// AddFlags binds the options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	pathflag.Var(fs, &o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Kubeconfig of the host cluster; default: in-cluster credentials.")
	pathflag.Var(fs, &o.StateDir, "state-dir", o.StateDir, "Directory for the process runtime's virtual clusters (data, logs, credentials).")
	fs.StringVar(&o.Runtime, "runtime", o.Runtime, "How virtual clusters run: process (children of the agent, the local default) or pod.")
	fs.BoolVar(&o.InstallCRDs, "install-crds", o.InstallCRDs, "Create or upgrade the storage.loft.sh CRDs and the admission policy at start; false where an admin applies config/crd and config/policy (or the chart does).")
	fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "Run only while holding the leader lease, so agents can run replicated.")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", o.LeaderElectionNamespace, "Namespace of the leader lease.")
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", o.MetricsAddr, "Address of the Prometheus /metrics endpoint; 0 turns it off.")
	fs.StringVar(&o.PolicyNamespace, "policy-namespace", o.PolicyNamespace, "Namespace of ConfigMap "+policy.TemplateIsolation+", which the agent keeps for the admission policy of config/policy: the templates that loosen isolation.")
	fs.StringVar(&o.DefaultTemplate, "default-template", o.DefaultTemplate, "VirtualClusterTemplate whose values every virtual cluster starts from.")
	fs.IntVar(&o.WarmPool, "warm-pool", o.WarmPool, "Keep this many control planes started and unassigned (process runtime): a new virtual cluster whose values leave the control plane as default (no Kubernetes version, datastore or API server arguments) takes one and is ready in about a second. Each costs an idle control plane's memory and CPU.")
	pathflag.Var(fs, &o.SnapshotDir, "snapshot-dir", o.SnapshotDir, "Directory of the snapshots kept as files, one subdirectory per namespace; default STATE-DIR/snapshots.")
	fs.StringSliceVar(&o.SnapshotRegistries, "snapshot-registries", o.SnapshotRegistries, "OCI repository prefixes (REGISTRY/PATH) snapshots may be written to and read from: namespace NS may use oci://PREFIX/NS/...; none: OCI locations are refused.")
	fs.DurationVar(&o.SnapshotMinInterval, "snapshot-min-interval", o.SnapshotMinInterval, "Shortest time between two scheduled snapshots of one virtual cluster: a storage.loft.sh/snapshot-schedule that runs more often is refused (condition SnapshotScheduleValid=False).")
	controlplane.BytesVar(fs, &o.SnapshotMaxSize, "snapshot-max-size", "Most data a snapshot may hold (e.g. 8Gi): larger clusters are not snapshotted, and larger snapshots are not unpacked (a snapshot is compressed, so its own size says nothing of this).")
	fs.StringVar(&o.Image, "image", o.Image, "Image (REPO:TAG) the pod runtime runs; default the chart's, built from the repository's Dockerfile.")
}

// Validate reports invalid options.
func (o *Options) Validate() error {
	var errs []error
	switch o.Runtime {
	case "process", "pod":
	default:
		errs = append(errs, fmt.Errorf("--runtime %q: must be process or pod", o.Runtime))
	}
	if o.StateDir == "" {
		errs = append(errs, errors.New("--state-dir is required"))
	}
	if o.WarmPool < 0 {
		errs = append(errs, fmt.Errorf("--warm-pool %d: must be 0 (none) or more", o.WarmPool))
	}
	if o.SnapshotMinInterval < 0 {
		errs = append(errs, fmt.Errorf("--snapshot-min-interval %s: must not be negative", o.SnapshotMinInterval))
	}
	if o.SnapshotMaxSize <= 0 {
		errs = append(errs, fmt.Errorf("--snapshot-max-size %d: must be more than 0", o.SnapshotMaxSize))
	}
	if o.WarmPool > 0 && o.Runtime != "process" {
		errs = append(errs, fmt.Errorf("--warm-pool needs --runtime process (the pod runtime keeps no pool)"))
	}
	return errors.Join(errs...)
}

func (o *Options) restConfig() (*rest.Config, error) {
	return restconfig.Load(o.Kubeconfig, "--kubeconfig")
}

// Run runs the agent until ctx ends; started is called once it reconciles.
func Run(ctx context.Context, o Options, log klog.Logger, started func()) error {
	cfg, err := o.prepare(ctx, log)
	if err != nil {
		return err
	}
	mgr, err := newManager(cfg, o, log)
	if err != nil {
		return fmt.Errorf("controller manager: %w", err)
	}
	host, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("host client: %w", err)
	}
	rt, err := newRuntime(mgr, cfg, host, o, log)
	if err != nil {
		return fmt.Errorf("%s runtime: %w", o.Runtime, err)
	}
	snaps := newSnapshots(mgr, host, rt, o, log.WithName("snapshots"))
	if err := addVirtualClusterController(mgr, host, rt, snaps, o, log); err != nil {
		return fmt.Errorf("virtual cluster controller: %w", err)
	}
	if err := ctrl.NewControllerManagedBy(mgr).For(&storagev1.VirtualClusterSnapshot{}).Named("virtualclustersnapshot").
		WithOptions(controller.Options{MaxConcurrentReconciles: 2}).Complete(snaps); err != nil {
		return fmt.Errorf("snapshot controller: %w", err)
	}
	if err := policy.EnsureParameter(ctx, host, o.PolicyNamespace); err != nil {
		return fmt.Errorf("admission policy parameter: %w", err)
	}
	if err := addTemplateController(mgr, host, o); err != nil {
		return fmt.Errorf("template controller: %w", err)
	}
	if started != nil {
		go func() {
			select {
			case <-mgr.Elected():
				started()
			case <-ctx.Done():
			}
		}()
	}
	return mgr.Start(ctx)
}

// prepare completes o (the binary), makes the state dir, installs the CRDs
// and policy if asked, and returns the host's client config.
func (o *Options) prepare(ctx context.Context, log klog.Logger) (*rest.Config, error) {
	cfg, err := o.restConfig()
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 50, 100
	if o.Binary == "" {
		if o.Binary, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("the agent's binary: %w", err)
		}
	}
	if err := os.MkdirAll(o.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	if o.SnapshotDir == "" {
		o.SnapshotDir = filepath.Join(o.StateDir, "snapshots")
	}
	if o.InstallCRDs {
		if err := crd.Install(ctx, cfg); err != nil {
			return nil, fmt.Errorf("install the CRDs: %w", err)
		}
		if err := policy.Install(ctx, cfg, o.PolicyNamespace); err != nil {
			return nil, fmt.Errorf("install the admission policy: %w", err)
		}
		log.Info("CRDs and admission policies installed", "group", storagev1.GroupVersion.Group)
	}
	return cfg, nil
}

func newManager(cfg *rest.Config, o Options, log klog.Logger) (ctrl.Manager, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := storagev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	ctrl.SetLogger(log)
	return ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: o.MetricsAddr},
		LeaderElection:          o.LeaderElect,
		LeaderElectionID:        "sublet-agent",
		LeaderElectionNamespace: o.LeaderElectionNamespace,
		Logger:                  log,
	})
}

// newRuntime is the runtime o names; the process runtime's warm pool runs
// in mgr (while this agent leads).
func newRuntime(mgr ctrl.Manager, cfg *rest.Config, host kubernetes.Interface, o Options, log klog.Logger) (Runtime, error) {
	if o.Runtime == "pod" {
		return newPodRuntime(cfg, host, o.Image, o.StateDir, log.WithName("pod"))
	}
	sup := newSupervisor()
	proc := newProcessRuntime(o.StateDir, o.Binary, host, cfg, sup, log.WithName("process"))
	if o.WarmPool > 0 {
		proc.pool = newWarmPool(o.WarmPool, o.StateDir, o.Binary, host, sup, log.WithName("warmpool"))
		if err := mgr.Add(proc.pool); err != nil {
			return nil, fmt.Errorf("warm pool: %w", err)
		}
	}
	return proc, nil
}

// addVirtualClusterController drives VirtualClusters to rt's state.
func addVirtualClusterController(mgr ctrl.Manager, host kubernetes.Interface, rt Runtime, snaps *snapshots, o Options, log klog.Logger) error {
	r := &reconciler{
		client:          mgr.GetClient(),
		host:            host,
		runtime:         rt,
		recorder:        mgr.GetEventRecorder("sublet-agent"),
		defaultTemplate: o.DefaultTemplate,
		clock:           time.Now,
		log:             log.WithName("sleepmode"),
		snaps:           snaps,
	}
	// A template change re-evaluates every virtual cluster's values.
	allVirtualClusters := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		list := &storagev1.VirtualClusterList{}
		if err := mgr.GetClient().List(ctx, list); err != nil {
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(list.Items))
		for _, vc := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: vc.Namespace, Name: vc.Name}})
		}
		return reqs
	})
	return ctrl.NewControllerManagedBy(mgr).
		For(&storagev1.VirtualCluster{}).
		// The guard rails of isolation.*: one edited or deleted is put
		// back at once.
		Owns(&corev1.ResourceQuota{}).Owns(&corev1.LimitRange{}).Owns(&networkingv1.NetworkPolicy{}).
		Watches(&storagev1.VirtualClusterTemplate{}, allVirtualClusters).
		Named("virtualcluster").
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		Complete(r)
}

// addTemplateController keeps templates' loosens-isolation labels and the
// admission policy's parameter.
func addTemplateController(mgr ctrl.Manager, host kubernetes.Interface, o Options) error {
	labeler := &templateLabeler{client: mgr.GetClient(), configMaps: host.CoreV1().ConfigMaps(o.PolicyNamespace)}
	return ctrl.NewControllerManagedBy(mgr).
		For(&storagev1.VirtualClusterTemplate{}).
		Named("virtualclustertemplate").
		Complete(reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
			return reconcile.Result{}, labeler.label(ctx, req.Name)
		}))
}

// newSnapshots takes and reads the snapshots of rt's virtual clusters.
// Work a stopped agent left in the snapshot dir is removed: the snapshots
// it was writing are taken again.
func newSnapshots(mgr ctrl.Manager, host kubernetes.Interface, rt Runtime, o Options, log klog.Logger) *snapshots {
	if err := os.RemoveAll(filepath.Join(o.SnapshotDir, ".work")); err != nil {
		log.Error(err, "remove the work of snapshots a stopped agent left")
	}
	return &snapshots{
		client: mgr.GetClient(), host: host, runtime: rt, recorder: mgr.GetEventRecorder("sublet-agent"), log: log,
		dir: o.SnapshotDir, keySecret: o.PolicyNamespace, registries: o.SnapshotRegistries, clock: time.Now,
		minInterval: o.SnapshotMinInterval, limits: snapshot.Limits{Bytes: o.SnapshotMaxSize, Entries: snapshot.DefaultLimits.Entries},
	}
}
