package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/config/crd"
	"github.com/sublet-dev/sublet/config/policy"
	"github.com/sublet-dev/sublet/internal/agent"
	"github.com/sublet-dev/sublet/internal/controlplane"
	"github.com/sublet-dev/sublet/internal/exitcode"
	"github.com/sublet-dev/sublet/internal/hostcluster"
	"github.com/sublet-dev/sublet/internal/pathflag"
	"github.com/sublet-dev/sublet/internal/pki"
	"github.com/sublet-dev/sublet/internal/server"
)

// upReadyLine is printed once `sublet up` is fully up; tests wait for it.
const upReadyLine = "Sublet is up."

type upOptions struct {
	stateDir   string
	kubeconfig string
	listen     string
	nodes      int
	vcluster   string
	warmPool   int
}

func newUpCommand() *cobra.Command {
	home, _ := os.UserHomeDir()
	o := &upOptions{stateDir: filepath.Join(home, ".sublet"), listen: "127.0.0.1:9443", nodes: 2, vcluster: "demo"}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the whole platform locally and create a first virtual cluster",
		Long: `Starts, in this process, a local host cluster (unless --kubeconfig names one),
the agent and the platform server; connects the host as cluster "local"; creates an
admin access key and logs the CLI in; creates the virtual cluster "demo" and switches
kubectl to it. Ctrl-C stops everything; the next 'sublet up' resumes with the same
state (in --state-dir, where the host's admin kubeconfig is written too).`,
		Example: `  sublet up
  kubectl get namespaces               # inside the demo virtual cluster
  sublet create vcluster team-a`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runUp(cmd, o) },
	}
	f := cmd.Flags()
	pathflag.Var(f, &o.stateDir, "state-dir", o.stateDir, "Directory for all state: host cluster, agent, server, admin key.")
	pathflag.Var(f, &o.kubeconfig, "kubeconfig", o.kubeconfig, "Use this host cluster instead of starting a local one.")
	f.StringVar(&o.listen, "listen", o.listen, "HOST:PORT of the platform server.")
	f.IntVar(&o.nodes, "nodes", o.nodes, "Simulated nodes of the local host cluster.")
	f.StringVar(&o.vcluster, "vcluster", o.vcluster, "Name of the first virtual cluster; empty for none.")
	f.IntVar(&o.warmPool, "warm-pool", o.warmPool, "Keep this many control planes started for the next 'sublet create vcluster' (about a second instead of several); each costs an idle virtual cluster's memory.")
	return cmd
}

func runUp(cmd *cobra.Command, o *upOptions) error {
	out := cmd.OutOrStdout()
	start := time.Now()
	step := func(format string, args ...interface{}) {
		fmt.Fprintf(out, "[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	if o.warmPool < 0 {
		return exitcode.Configf("--warm-pool %d: must be 0 (none) or more", o.warmPool)
	}
	// The port first: a port in use must fail before anything starts.
	listener, err := listenPlatform(o.listen)
	if err != nil {
		return err
	}
	defer listener.Close()
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	if err := os.MkdirAll(o.stateDir, 0o700); err != nil {
		return err
	}
	errc := make(chan error, 4)
	agentDir := filepath.Join(o.stateDir, "agent")
	defer func() {
		if n := agent.StopVirtualClusters(agentDir, 30*time.Second); n > 0 {
			step("stopped %d virtual cluster(s)", n)
		}
	}()

	hostKubeconfig := o.kubeconfig
	if hostKubeconfig == "" {
		step("starting the local host cluster (%d simulated nodes) in %s", o.nodes, filepath.Join(o.stateDir, "host"))
		ho := hostcluster.NewOptions()
		ho.ControlPlane.DataDir = filepath.Join(o.stateDir, "host")
		ho.Nodes = o.nodes
		ready := make(chan string, 1)
		go func() {
			errc <- runServer(ho, ho.ControlPlane, "host.log", func(cp *controlplane.ControlPlane, logFile string) error {
				return hostcluster.Run(ctx, cp, *ho, klog.Background(), io.Discard, func(info hostcluster.Info) error {
					ready <- info.AdminKubeconfig
					return nil
				})
			})
		}()
		select {
		case hostKubeconfig = <-ready:
		case err := <-errc:
			return fmt.Errorf("host cluster: %w", err)
		case <-ctx.Done():
			return nil
		}
		step("host cluster ready; its admin kubeconfig: %s", hostKubeconfig)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", hostKubeconfig)
	if err != nil {
		return err
	}
	if err := crd.Install(ctx, cfg); err != nil {
		return err
	}
	if err := policy.Install(ctx, cfg, policy.DefaultNamespace); err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = storagev1.AddToScheme(scheme)
	mgmt, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}

	ao := agent.NewOptions()
	ao.Kubeconfig, ao.StateDir, ao.InstallCRDs, ao.LeaderElect, ao.MetricsAddr = hostKubeconfig, agentDir, false, false, "0"
	ao.WarmPool = o.warmPool
	agentUp := make(chan struct{})
	go func() { errc <- agent.Run(ctx, *ao, klog.Background().WithName("agent"), func() { close(agentUp) }) }()
	select {
	case <-agentUp:
	case err := <-errc:
		return fmt.Errorf("agent: %w", err)
	}
	step("agent running (process runtime, state in %s)", agentDir)

	url, caFile, err := startPlatformServer(ctx, cfg, &platformOptions{
		listen: o.listen, stateDir: filepath.Join(o.stateDir, "server"), auditLog: filepath.Join(o.stateDir, "server", "audit.log"),
	}, listener, errc)
	if err != nil {
		return err
	}
	step("platform server at %s (CA %s)", url, caFile)

	if err := connectLocal(ctx, mgmt, hostKubeconfig); err != nil {
		return err
	}
	key, err := adminKey(ctx, mgmt, filepath.Join(o.stateDir, "admin.key"))
	if err != nil {
		return err
	}
	login := &loginConfig{Server: url, AccessKey: key, CAFile: caFile}
	if err := login.save(); err != nil {
		return err
	}
	step("host connected as cluster \"local\"; CLI logged in as admin (%s)", configPath())

	if o.vcluster != "" {
		ns := storagev1.DefaultNamespace(o.vcluster)
		if err := mgmt.Create(ctx, ownedNamespace(ns, o.vcluster)); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
		vc := &storagev1.VirtualCluster{ObjectMeta: metav1.ObjectMeta{Name: o.vcluster, Namespace: ns}}
		if err := mgmt.Create(ctx, vc); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
		step("waiting for virtual cluster %s", o.vcluster)
		err := waitReady(ctx, out, mgmt, ns, o.vcluster, 5*time.Minute)
		if err == nil {
			// A resumed virtual cluster may still show the status of the
			// last run: wait until it answers through the platform's proxy.
			err = waitServing(ctx, login, "local", ns, o.vcluster, 5*time.Minute)
		}
		if errors.Is(err, errInterrupted) {
			step("interrupted while waiting for virtual cluster %s; stopping everything ('sublet up' again resumes)", o.vcluster)
			return nil
		}
		if err != nil {
			return err
		}
		ctxName, err := useContext(ctx, login, "local", ns, o.vcluster, false)
		if err != nil {
			return err
		}
		step("virtual cluster %s is ready; kubectl now uses context %s", o.vcluster, ctxName)
	}
	fmt.Fprintf(out, `
%s Try:
  kubectl get namespaces                 # in the %s virtual cluster
  sublet create vcluster team-a          # another one; kubectl switches to it
  sublet use vcluster                    # list them; 'sublet use vcluster NAME' switches
  sublet delete vcluster team-a
  KUBECONFIG=%s kubectl get pods -A   # the host: synced pods under translated names
Web UI: %s/ (log in with the admin access key in %s; the certificate is signed by %s)
Press Ctrl-C to stop; 'sublet up' again resumes.
`, upReadyLine, o.vcluster, hostKubeconfig, url, filepath.Join(o.stateDir, "admin.key"), caFile)

	select {
	case <-ctx.Done():
		step("stopping")
		return nil
	case err := <-errc:
		return err
	}
}

// connectLocal registers the host as cluster "local" of the platform.
func connectLocal(ctx context.Context, mgmt client.Client, kubeconfig string) error {
	data, err := os.ReadFile(kubeconfig)
	if err != nil {
		return err
	}
	cl := &storagev1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "local"},
		Spec: storagev1.ClusterSpec{DisplayName: "Local host cluster", Runtime: "process"}}
	return server.Connect(ctx, mgmt, cl, data, true)
}

// adminKey returns the admin access key kept in path, creating it (and its
// AccessKey) when missing or no longer valid.
func adminKey(ctx context.Context, mgmt client.Client, path string) (string, error) {
	const name = "sublet-up-admin"
	if data, err := os.ReadFile(path); err == nil {
		key := strings.TrimSpace(string(data))
		ak := &storagev1.AccessKey{}
		if err := mgmt.Get(ctx, types.NamespacedName{Name: name}, ak); err == nil && ak.Spec.KeySHA256 == server.HashKey(key) {
			return key, nil
		}
	}
	key, err := server.NewKey()
	if err != nil {
		return "", err
	}
	ak := &storagev1.AccessKey{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: storagev1.AccessKeySpec{
		User: "admin", Groups: []string{"system:masters"}, KeySHA256: server.HashKey(key),
		Description: "created by sublet up",
	}}
	old := &storagev1.AccessKey{}
	if err := mgmt.Get(ctx, types.NamespacedName{Name: name}, old); err == nil {
		ak.ResourceVersion = old.ResourceVersion
		err = mgmt.Update(ctx, ak)
		if err != nil {
			return "", err
		}
	} else if err := mgmt.Create(ctx, ak); err != nil {
		return "", err
	}
	return key, pki.WriteFileAtomic(path, []byte(key+"\n"), 0o600)
}

// waitServing waits until the virtual cluster's /readyz answers ok through
// the platform server.
func waitServing(ctx context.Context, login *loginConfig, cluster, ns, name string, timeout time.Duration) error {
	cs, err := kubernetes.NewForConfig(login.restConfig(fmt.Sprintf("/kubernetes/virtualcluster/%s/%s/%s", cluster, ns, name)))
	if err != nil {
		return err
	}
	var last error
	err = poll(ctx, 250*time.Millisecond, timeout, func(ctx context.Context) (bool, error) {
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		last = err
		return err == nil && string(body) == "ok", nil
	})
	if errors.Is(err, errTimedOut) {
		return fmt.Errorf("virtual cluster %s does not answer through the platform server after %s: %v", name, timeout, last)
	}
	return err
}
