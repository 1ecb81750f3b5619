package controlplane

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	apirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericapiserver "k8s.io/apiserver/pkg/server"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	cliflag "k8s.io/component-base/cli/flag"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	apiserveroptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"
	cmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	cmconfig "k8s.io/kubernetes/cmd/kube-controller-manager/app/config"
	cmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	schedulerapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	scheduleroptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
)

func init() {
	// Three components share one process and one klog; each would otherwise
	// refuse a second logging configuration.
	logsapi.ReapplyHandling = logsapi.ReapplyHandlingIgnoreUnchanged
}

// parseComponentFlags parses args into the component's own flag sets, the
// same flags its command line takes.
func parseComponentFlags(name string, fss cliflag.NamedFlagSets, args []string) error {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	for _, f := range fss.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s flags: %w", name, err)
	}
	return nil
}

// runAPIServer runs kube-apiserver with args, serving on listener, until
// ctx ends. Its logs, and those of every component in the process, go to
// logOut. wrap, if not nil, wraps the API handler inside the server's
// filters (see ControlPlane.WrapAPIHandler); tune, if not nil, changes the
// server's configuration before it is completed. With lazyOpenAPI the
// kube-apiserver's OpenAPI documents are built when first asked for and kept
// only serialised (see serveOpenAPILazily).
func runAPIServer(ctx context.Context, args []string, listener net.Listener, logOut io.Writer, wrap func(http.Handler) http.Handler, tune func(*apiserverapp.Config), lazyOpenAPI bool) error {
	s := apiserveroptions.NewServerRunOptions()
	if err := parseComponentFlags("kube-apiserver", s.Flags(), args); err != nil {
		return err
	}
	s.SecureServing.Listener = listener
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	// The apiserver's loopback clients would log warnings about themselves.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	streams := &logsapi.LoggingOptions{ErrorStream: logOut, InfoStream: logOut}
	if err := logsapi.ValidateAndApplyWithOptions(s.Logs, streams, utilfeature.DefaultFeatureGate); err != nil {
		return fmt.Errorf("kube-apiserver logging: %w", err)
	}
	completed, err := s.Complete(ctx)
	if err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	if errs := completed.Validate(); len(errs) > 0 {
		return fmt.Errorf("kube-apiserver: %w", utilerrors.NewAggregate(errs))
	}
	// What apiserverapp.Run does, with wrap inside the outermost server's
	// handler chain (the aggregator's: every request passes its filters,
	// then reaches wrap, then the servers it delegates to) and tune applied.
	if completed.InformerName == nil {
		name, err := cache.NewInformerName("kube-apiserver")
		if err != nil {
			return err
		}
		completed.InformerName = name
	}
	config, err := apiserverapp.NewConfig(completed)
	if err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	if wrap != nil {
		chain := config.Aggregator.GenericConfig.BuildHandlerChainFunc
		config.Aggregator.GenericConfig.BuildHandlerChainFunc = func(h http.Handler, c *genericapiserver.Config) http.Handler {
			// What wrap serves at the data endpoint streams data dirs: no
			// request timeout, no in-flight limit. Only that path: a
			// tenant's requests elsewhere keep both.
			longRunning := c.LongRunningFunc
			c.LongRunningFunc = func(r *http.Request, ri *apirequest.RequestInfo) bool {
				return r.URL.Path == storagev1.DataPath || longRunning(r, ri)
			}
			return chain(wrap(h), c)
		}
	}
	if tune != nil {
		tune(config)
	}
	kubeGeneric := config.KubeAPIs.ControlPlane.Generic
	if lazyOpenAPI {
		prepareLazyOpenAPI(config)
	}
	cc, err := config.Complete()
	if err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	server, err := apiserverapp.CreateServerChain(cc)
	if err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	if lazyOpenAPI {
		// The aggregator delegates to the kube-apiserver's server.
		kube, ok := server.GenericAPIServer.NextDelegate().(*genericapiserver.GenericAPIServer)
		if !ok {
			return fmt.Errorf("kube-apiserver: the aggregator delegates to a %T, not the kube-apiserver's server", server.GenericAPIServer.NextDelegate())
		}
		if err := serveOpenAPILazily(kube, kubeGeneric.OpenAPIConfig, kubeGeneric.OpenAPIV3Config); err != nil {
			return fmt.Errorf("kube-apiserver: %w", err)
		}
	}
	prepared, err := server.PrepareRun()
	if err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	return prepared.Run(ctx)
}

// runControllerManager runs kube-controller-manager with args until ctx ends.
func runControllerManager(ctx context.Context, args []string) error {
	c, err := controllerManagerConfig(ctx, args)
	if err != nil {
		return err
	}
	return cmapp.Run(ctx, c)
}

// runVirtualControllerManager runs kube-controller-manager with args, which
// disable policyStatusController, and that controller in its place
// (policystatus.go), until ctx ends.
func runVirtualControllerManager(ctx context.Context, args []string) error {
	c, err := controllerManagerConfig(ctx, args)
	if err != nil {
		return err
	}
	go func() {
		if err := runPolicyStatusController(ctx, c); err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "Policy status controller stopped", "controller", policyStatusController)
		}
	}()
	return cmapp.Run(ctx, c)
}

// controllerManagerConfig is kube-controller-manager's configuration from args.
func controllerManagerConfig(ctx context.Context, args []string) (*cmconfig.CompletedConfig, error) {
	s, err := cmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return nil, fmt.Errorf("kube-controller-manager: %w", err)
	}
	known, disabled, aliases := cmapp.KnownControllers(), cmapp.ControllersDisabledByDefault(), cmapp.ControllerAliases()
	fss := s.Flags(known, disabled, aliases)
	s.ParsedFlags = &fss
	if err := parseComponentFlags("kube-controller-manager", fss, args); err != nil {
		return nil, err
	}
	if err := s.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, fmt.Errorf("kube-controller-manager: %w", err)
	}
	c, err := s.Config(ctx, known, disabled, aliases)
	if err != nil {
		return nil, fmt.Errorf("kube-controller-manager: %w", err)
	}
	return c.Complete(), nil
}

// runScheduler runs kube-scheduler with args until ctx ends. It goes through
// Setup and Run rather than the cobra command, which would install a second
// process-wide signal handler.
func runScheduler(ctx context.Context, args []string) error {
	o := scheduleroptions.NewOptions()
	if err := parseComponentFlags("kube-scheduler", *o.Flags, args); err != nil {
		return err
	}
	if err := o.ComponentGlobalsRegistry.Set(); err != nil {
		return fmt.Errorf("kube-scheduler: %w", err)
	}
	cc, sched, err := schedulerapp.Setup(ctx, o)
	if err != nil {
		return fmt.Errorf("kube-scheduler: %w", err)
	}
	return schedulerapp.Run(ctx, cc, sched)
}
