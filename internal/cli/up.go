package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
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
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/config/crd"
	"github.com/sublet-dev/sublet/config/policy"
	"github.com/sublet-dev/sublet/internal/agent"
	"github.com/sublet-dev/sublet/internal/component"
	"github.com/sublet-dev/sublet/internal/controlplane"
	"github.com/sublet-dev/sublet/internal/exitcode"
	"github.com/sublet-dev/sublet/internal/hostcluster"
	"github.com/sublet-dev/sublet/internal/pathflag"
	"github.com/sublet-dev/sublet/internal/pki"
	"github.com/sublet-dev/sublet/internal/platformapi"
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

// up is one run of `sublet up`: what it started, and its progress lines.
type up struct {
	o     *upOptions
	out   io.Writer
	start time.Time
	parts *component.Group
}

func (u *up) step(format string, args ...interface{}) {
	fmt.Fprintf(u.out, "[%5.1fs] %s\n", time.Since(u.start).Seconds(), fmt.Sprintf(format, args...))
}

func runUp(cmd *cobra.Command, o *upOptions) error {
	if o.warmPool < 0 {
		return exitcode.Configf("--warm-pool %d: must be 0 (none) or more", o.warmPool)
	}
	// The port first: a port in use must fail before anything starts.
	listener, err := listenPlatform(o.listen)
	if err != nil {
		return err
	}
	defer listener.Close()
	if err := os.MkdirAll(o.stateDir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	ctx := cmd.Context()
	u := &up{o: o, out: cmd.OutOrStdout(), start: time.Now(), parts: component.NewGroup(ctx)}
	defer u.stopVirtualClusters() // those of an earlier run, if the agent did not start
	defer u.parts.Stop()

	hostKubeconfig, err := u.startHost()
	if err != nil {
		return component.Interrupted(ctx, err)
	}
	cfg, mgmt, err := u.installPlatformAPI(ctx, hostKubeconfig)
	if err != nil {
		return err
	}
	if err := u.startAgent(hostKubeconfig); err != nil {
		return component.Interrupted(ctx, err)
	}
	login, err := u.startServer(ctx, cfg, mgmt, listener, hostKubeconfig)
	if err != nil {
		return component.Interrupted(ctx, err)
	}
	if o.vcluster != "" {
		if err := u.firstVirtualCluster(ctx, mgmt, login); err != nil {
			if errors.Is(err, errInterrupted) {
				u.step("interrupted while waiting for virtual cluster %s; stopping everything ('sublet up' again resumes)", o.vcluster)
				return nil
			}
			return err
		}
	}
	u.printTry(hostKubeconfig, login)
	err = u.parts.Wait()
	u.step("stopping")
	return err
}

func (u *up) agentDir() string { return filepath.Join(u.o.stateDir, "agent") }

// stopVirtualClusters stops the virtual clusters the agent started: they
// outlive an agent, not `sublet up`.
func (u *up) stopVirtualClusters() {
	if n := agent.StopVirtualClusters(u.agentDir(), 30*time.Second); n > 0 {
		u.step("stopped %d virtual cluster(s)", n)
	}
}

// startHost starts the local host cluster, unless --kubeconfig names one,
// and returns the host's kubeconfig.
func (u *up) startHost() (string, error) {
	if u.o.kubeconfig != "" {
		return u.o.kubeconfig, nil
	}
	u.step("starting the local host cluster (%d simulated nodes) in %s", u.o.nodes, filepath.Join(u.o.stateDir, "host"))
	ho := hostcluster.NewOptions()
	ho.ControlPlane.DataDir = filepath.Join(u.o.stateDir, "host")
	ho.Nodes = u.o.nodes
	var kubeconfig string
	err := u.parts.Start(component.Component{Name: "host cluster", Run: func(ctx context.Context, ready func()) error {
		return runServer(ho, ho.ControlPlane, "host.log", func(cp *controlplane.ControlPlane, _ string) error {
			return hostcluster.Run(ctx, cp, *ho, klog.Background(), io.Discard, func(info hostcluster.Info) error {
				kubeconfig = info.AdminKubeconfig
				ready()
				return nil
			})
		})
	}})
	if err != nil {
		return "", err
	}
	u.step("host cluster ready; its admin kubeconfig: %s", kubeconfig)
	return kubeconfig, nil
}

// installPlatformAPI installs the CRDs and the admission policy in the
// host and returns a client of it.
func (u *up) installPlatformAPI(ctx context.Context, hostKubeconfig string) (*rest.Config, client.Client, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", hostKubeconfig)
	if err != nil {
		return nil, nil, fmt.Errorf("host kubeconfig: %w", err)
	}
	if err := crd.Install(ctx, cfg); err != nil {
		return nil, nil, fmt.Errorf("install the CRDs: %w", err)
	}
	if err := policy.Install(ctx, cfg, policy.DefaultNamespace); err != nil {
		return nil, nil, fmt.Errorf("install the admission policy: %w", err)
	}
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = storagev1.AddToScheme(scheme)
	mgmt, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, nil, fmt.Errorf("host client: %w", err)
	}
	return cfg, mgmt, nil
}

// startAgent starts the agent (process runtime) against the host.
func (u *up) startAgent(hostKubeconfig string) error {
	ao := agent.NewOptions()
	ao.Kubeconfig, ao.StateDir, ao.InstallCRDs, ao.LeaderElect, ao.MetricsAddr = hostKubeconfig, u.agentDir(), false, false, "0"
	ao.WarmPool = u.o.warmPool
	if err := u.parts.Start(component.Component{Name: "agent", Run: func(ctx context.Context, ready func()) error {
		err := agent.Run(ctx, *ao, klog.Background().WithName("agent"), ready)
		// Its virtual clusters outlive an agent, not `sublet up`: they
		// stop with it, before the host they sync to.
		u.stopVirtualClusters()
		return err
	}}); err != nil {
		return err
	}
	u.step("agent running (process runtime, state in %s)", u.agentDir())
	return nil
}

// startServer starts the platform server on listener, connects the host
// as cluster "local", and logs the CLI in as admin.
func (u *up) startServer(ctx context.Context, cfg *rest.Config, mgmt client.Client, listener net.Listener, hostKubeconfig string) (*loginConfig, error) {
	var url, caFile string
	err := u.parts.Start(component.Component{Name: "platform server", Run: func(ctx context.Context, ready func()) error {
		errc := make(chan error, 1)
		var err error
		url, caFile, err = startPlatformServer(ctx, cfg, &platformOptions{
			listen: u.o.listen, stateDir: filepath.Join(u.o.stateDir, "server"), auditLog: filepath.Join(u.o.stateDir, "server", "audit.log"),
		}, listener, errc)
		if err != nil {
			return err
		}
		ready()
		return <-errc
	}})
	if err != nil {
		return nil, err
	}
	u.step("platform server at %s (CA %s)", url, caFile)
	if err := connectLocal(ctx, mgmt, hostKubeconfig); err != nil {
		return nil, fmt.Errorf("connect the host as cluster \"local\": %w", err)
	}
	key, err := adminKey(ctx, mgmt, filepath.Join(u.o.stateDir, "admin.key"))
	if err != nil {
		return nil, fmt.Errorf("admin access key: %w", err)
	}
	login := &loginConfig{Server: url, AccessKey: key, CAFile: caFile}
	if err := login.save(); err != nil {
		return nil, fmt.Errorf("log the CLI in: %w", err)
	}
	u.step("host connected as cluster \"local\"; CLI logged in as admin (%s)", configPath())
	return login, nil
}

// firstVirtualCluster creates (or resumes) the first virtual cluster,
// waits until it answers through the platform, and switches kubectl to it.
func (u *up) firstVirtualCluster(ctx context.Context, mgmt client.Client, login *loginConfig) error {
	name := u.o.vcluster
	ns := storagev1.DefaultNamespace(name)
	if err := mgmt.Create(ctx, ownedNamespace(ns, name)); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", ns, err)
	}
	vc := &storagev1.VirtualCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	if err := mgmt.Create(ctx, vc); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create virtual cluster %s: %w", name, err)
	}
	u.step("waiting for virtual cluster %s", name)
	if err := waitReady(ctx, u.out, mgmt, ns, name, 5*time.Minute); err != nil {
		return err
	}
	// A resumed virtual cluster may still show the status of the last
	// run: wait until it answers through the platform's proxy.
	if err := waitServing(ctx, login, "local", ns, name, 5*time.Minute); err != nil {
		return err
	}
	ctxName, err := useContext(ctx, login, "local", ns, name, false)
	if err != nil {
		return fmt.Errorf("kube-context of virtual cluster %s: %w", name, err)
	}
	u.step("virtual cluster %s is ready; kubectl now uses context %s", name, ctxName)
	return nil
}

func (u *up) printTry(hostKubeconfig string, login *loginConfig) {
	fmt.Fprintf(u.out, `
%s Try:
  kubectl get namespaces                 # in the %s virtual cluster
  sublet create vcluster team-a          # another one; kubectl switches to it
  sublet use vcluster                    # list them; 'sublet use vcluster NAME' switches
  sublet delete vcluster team-a
  KUBECONFIG=%s kubectl get pods -A   # the host: synced pods under translated names
Web UI: %s/ (log in with the admin access key in %s; the certificate is signed by %s)
Press Ctrl-C to stop; 'sublet up' again resumes.
`, upReadyLine, u.o.vcluster, hostKubeconfig, login.Server, filepath.Join(u.o.stateDir, "admin.key"), login.CAFile)
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
		if err := mgmt.Get(ctx, types.NamespacedName{Name: name}, ak); err == nil && ak.Spec.KeySHA256 == platformapi.HashKey(key) {
			return key, nil
		}
	}
	key, err := platformapi.NewKey()
	if err != nil {
		return "", err
	}
	ak := &storagev1.AccessKey{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: storagev1.AccessKeySpec{
		User: "admin", Groups: []string{"system:masters"}, KeySHA256: platformapi.HashKey(key),
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
