package agent

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/kubernetes"

	"github.com/sublet-dev/sublet/internal/restconfig"
)

// probe reports whether the API server behind an admin kubeconfig file
// passes readiness check readyz, and its version.
func probe(ctx context.Context, kubeconfig, readyz string) (State, error) {
	data, err := os.ReadFile(kubeconfig)
	if err != nil {
		return State{Message: "waiting for the control plane's admin kubeconfig"}, nil
	}
	return probeKubeconfig(ctx, data, readyz)
}

// probeKubeconfig reports whether the API server behind an admin
// kubeconfig passes readiness check readyz (a path, see
// readiness.Path), and its version.
func probeKubeconfig(ctx context.Context, data []byte, readyz string) (State, error) {
	cfg, err := restconfig.FromInlineKubeconfig(data)
	if err != nil {
		return State{}, fmt.Errorf("read the virtual cluster's admin kubeconfig: %w", err)
	}
	cfg.Timeout = 5 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return State{}, err
	}
	body, err := cs.Discovery().RESTClient().Get().RequestURI(readyz).DoRaw(ctx)
	if err != nil || strings.TrimSpace(string(body)) != "ok" {
		return State{Endpoint: cfg.Host, Message: "waiting for the virtual API server to be ready"}, nil
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		return State{Endpoint: cfg.Host, Message: "waiting for the virtual API server's version"}, nil
	}
	return State{Ready: true, Kubeconfig: data, Endpoint: cfg.Host, Version: servedVersion(v)}, nil
}

// servedVersion is the Kubernetes version an API server behaves as: its
// emulation version when it emulates an older minor (then /version's
// emulationMinor says so), else its gitVersion.
func servedVersion(v *version.Info) string {
	if v.EmulationMajor != "" && v.EmulationMinor != "" && v.EmulationMinor != strings.TrimSuffix(v.Minor, "+") {
		return "v" + v.EmulationMajor + "." + v.EmulationMinor
	}
	return v.GitVersion
}
