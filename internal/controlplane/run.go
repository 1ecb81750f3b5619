package controlplane

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"

	"github.com/sublet-dev/sublet/internal/controlplane/readiness"
	"github.com/sublet-dev/sublet/internal/pki"
	"github.com/sublet-dev/sublet/internal/workqueuemetrics"
)

// Run starts the control plane, calls ready once the apiserver is ready and
// the controllers are started, and runs until ctx ends; then it stops the
// components in order: controllers, apiserver, datastore.
func (cp *ControlPlane) Run(ctx context.Context, ready func(Info) error) error {
	started := time.Now()
	if err := cp.Prepare(); err != nil {
		return err
	}
	defer func() { cp.lock.Close(); cp.lock = nil }()
	cp.applyMemorySettings(ctx)
	if w := cp.opts.WorkqueueMetrics; w.Provided() && !w.Value() {
		if err := workqueuemetrics.Disable(); err != nil {
			cp.log.Error(err, "work-queue metrics stay on")
		}
	}

	// The listener stays open and is handed to the apiserver, so no other
	// process can take the port in between.
	listener, port, err := listen(cp.opts.BindAddress, cp.opts.Port)
	if err != nil {
		return err
	}
	served := false // from then on the apiserver owns and closes the listener
	defer func() {
		if !served {
			listener.Close()
		}
	}()
	p, err := cp.ensurePKI()
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	storeURL, stopStore, err := cp.startDatastore(ctx, p)
	if err != nil {
		return fmt.Errorf("datastore (%s): %w", cp.opts.Datastore, err)
	}
	defer stopStore()
	cp.log.Info("datastore ready", "datastore", cp.opts.Datastore, "url", storeURL, "sinceStart", time.Since(started))

	url := "https://" + net.JoinHostPort(clientHost(cp.opts.BindAddress), strconv.Itoa(port))
	admin, err := p.KubeconfigForClient(url, "sublet", pki.Admin)
	if err != nil {
		return fmt.Errorf("admin kubeconfig: %w", err)
	}
	adminREST, err := clientcmd.NewDefaultClientConfig(*admin, nil).ClientConfig()
	if err != nil {
		return fmt.Errorf("admin kubeconfig: %w", err)
	}

	// Components stop in reverse order of start, each with its own context.
	served = true
	api, err := cp.startAPIServer(ctx, storeURL, port, listener, adminREST, started)
	if err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	defer api.stop(cp.log)
	if err := cp.writeKubeconfigs(p, url, admin); err != nil {
		return err
	}
	ctrls := cp.startControllers()
	defer ctrls.stop()

	info := Info{URL: url, AdminKubeconfig: cp.dir.AdminKubeconfig(), Admin: adminREST, Version: BinaryVersion()}
	if ready != nil {
		if err := ready(info); err != nil {
			return err
		}
	}
	var runErr error
	select {
	case <-ctx.Done():
	case err := <-api.done:
		api.exited = true
		runErr = fmt.Errorf("kube-apiserver stopped: %w", err)
	case err := <-ctrls.errs:
		runErr = err
	}
	cp.log.Info("stopping control plane")
	return runErr
}

// ensurePKI makes the certificates the components serve and use, for
// every name the apiserver answers to.
func (cp *ControlPlane) ensurePKI() (pki.Dir, error) {
	serviceIP, err := firstServiceIP(cp.opts.ServiceCIDR)
	if err != nil {
		return pki.Dir{}, err
	}
	hosts := []string{"localhost", "127.0.0.1", serviceIP, "kubernetes", "kubernetes.default",
		"kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
	for _, h := range append([]string{cp.opts.BindAddress, cp.opts.AdvertiseAddress}, cp.opts.TLSSANs...) {
		if h != "" && !net.ParseIP(h).IsUnspecified() {
			hosts = append(hosts, h)
		}
	}
	p := cp.dir.pkiDir()
	return p, p.Ensure(hosts)
}

// startDatastore starts the datastore the options name and returns its URL
// and what stops it.
func (cp *ControlPlane) startDatastore(ctx context.Context, p pki.Dir) (string, func(), error) {
	var store datastore
	if cp.opts.Datastore == DatastoreSQLite {
		store = &kineStore{file: cp.dir.sqlite(), pki: p, log: cp.log}
	} else {
		store = cp.dir.etcdStore(p)
	}
	url, err := store.start(ctx)
	if err != nil {
		return "", nil, err
	}
	return url, store.stop, nil
}

// runningAPIServer is the apiserver this control plane runs.
type runningAPIServer struct {
	cancel context.CancelFunc
	done   chan error
	exited bool // done was read: it stopped by itself
}

// stop stops the apiserver and waits for it (up to 30 s).
func (a *runningAPIServer) stop(log klog.Logger) {
	a.cancel()
	if a.exited {
		return
	}
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		log.Info("kube-apiserver did not stop in 30s")
	}
}

// startAPIServer starts the apiserver on listener (which it then owns)
// and waits until it is ready.
func (cp *ControlPlane) startAPIServer(ctx context.Context, storeURL string, port int, listener net.Listener, adminREST *rest.Config, started time.Time) (*runningAPIServer, error) {
	if err := cp.writeEgressSelectorConfig(); err != nil {
		listener.Close()
		return nil, err
	}
	apiCtx, cancel := context.WithCancel(context.Background())
	api := &runningAPIServer{cancel: cancel, done: make(chan error, 1)}
	go func() {
		api.done <- runAPIServer(apiCtx, cp.apiserverArgs(storeURL, port), listener, cp.logOut(), cp.wrap, cp.apiserverTuning(), cp.opts.Mode == ModeVirtual)
	}()
	bootstrapped := readiness.Bootstrapped(cp.dir.root)
	if err := waitReady(ctx, adminREST, readiness.Path(bootstrapped), api.done); err != nil {
		cancel()
		return nil, err
	}
	cp.log.Info("kube-apiserver ready", "sinceStart", time.Since(started), "bootstrapped", bootstrapped)
	if !bootstrapped {
		if err := readiness.MarkBootstrapped(cp.dir.root); err != nil {
			api.stop(cp.log)
			return nil, err
		}
	}
	return api, nil
}

// writeKubeconfigs writes the controller-manager's, the scheduler's and
// the admin's kubeconfig, the admin's last: it says the control plane is
// ready.
func (cp *ControlPlane) writeKubeconfigs(p pki.Dir, url string, admin *clientcmdapi.Config) error {
	for name, client := range map[string]string{"controller-manager": pki.ControllerManager, "scheduler": pki.Scheduler} {
		cfg, err := p.KubeconfigForClient(url, name, client)
		if err != nil {
			return fmt.Errorf("%s kubeconfig: %w", name, err)
		}
		if err := pki.WriteKubeconfig(cp.dir.componentKubeconfig(name), cfg); err != nil {
			return fmt.Errorf("%s kubeconfig: %w", name, err)
		}
	}
	if err := pki.WriteKubeconfig(cp.dir.AdminKubeconfig(), admin); err != nil {
		return fmt.Errorf("admin kubeconfig: %w", err)
	}
	return nil
}

// runningControllers are the controller-manager and the scheduler.
type runningControllers struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	errs   chan error
}

// stop stops them and waits for them (up to 20 s).
func (c *runningControllers) stop() {
	c.cancel()
	waitTimeout(&c.wg, 20*time.Second)
}

func (cp *ControlPlane) startControllers() *runningControllers {
	ctx, cancel := context.WithCancel(context.Background())
	c := &runningControllers{cancel: cancel, errs: make(chan error, 2)}
	start := func(name string, run func(context.Context, []string) error, args []string) {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			if err := run(ctx, args); err != nil && ctx.Err() == nil {
				c.errs <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	runCM := runControllerManager
	if cp.opts.Mode == ModeVirtual {
		runCM = runVirtualControllerManager
	}
	start("kube-controller-manager", runCM, cp.controllerManagerArgs())
	if cp.opts.Scheduler {
		start("kube-scheduler", runScheduler, cp.schedulerArgs())
	}
	return c
}
