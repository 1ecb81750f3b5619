// Package restconfig loads the client configuration a command is given:
// a kubeconfig file, or the pod's in-cluster credentials without one.
package restconfig

import (
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Load reads kubeconfig, or uses the in-cluster configuration when it is
// empty; flag names the option in errors (e.g. "--host-kubeconfig").
func Load(kubeconfig, flag string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no %s and not running in a cluster: %w", flag, err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", flag, err)
	}
	return cfg, nil
}
