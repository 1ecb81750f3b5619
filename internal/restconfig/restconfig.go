// Package restconfig loads the client configuration a command is given:
// a kubeconfig file, or the pod's in-cluster credentials without one.
package restconfig

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
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

// FromInlineKubeconfig builds a client configuration from kubeconfig data
// that Sublet did not write itself or that others can edit (a Secret's
// config key). It accepts inline credentials only: an exec plugin or auth
// provider would run or load code on this machine, and a file path
// (tokenFile, certificate and key files) would read this machine's files,
// so each is refused, naming the entry, before any client is built.
func FromInlineKubeconfig(data []byte) (*rest.Config, error) {
	return FromKubeconfig(data, false)
}

// FromKubeconfig is FromInlineKubeconfig that, with allowExec, also accepts
// exec plugins: an admin's explicit choice (sublet connect cluster
// --allow-exec-plugin) to run that command on this machine.
func FromKubeconfig(data []byte, allowExec bool) (*rest.Config, error) {
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return nil, fmt.Errorf("not a kubeconfig: %w", err)
	}
	if err := inlineOnly(cfg, allowExec); err != nil {
		return nil, err
	}
	return clientcmd.NewDefaultClientConfig(*cfg, &clientcmd.ConfigOverrides{}).ClientConfig()
}

// inlineOnly returns an error naming every user or cluster entry of cfg
// that uses an exec plugin (unless allowExec), an auth provider or a file
// path.
func inlineOnly(cfg *clientcmdapi.Config, allowExec bool) error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(cfg.AuthInfos)) {
		a := cfg.AuthInfos[name]
		refuse := func(what string) {
			errs = append(errs, fmt.Errorf("user %q uses %s; only inline credentials (token, client-certificate-data, client-key-data) are accepted", name, what))
		}
		if a.Exec != nil && !allowExec {
			refuse("an exec plugin (" + a.Exec.Command + "), which would run on this machine")
		}
		if a.AuthProvider != nil {
			refuse("auth provider " + a.AuthProvider.Name)
		}
		if a.TokenFile != "" {
			refuse("tokenFile " + a.TokenFile)
		}
		if a.ClientCertificate != "" || a.ClientKey != "" {
			refuse("client certificate or key files")
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Clusters)) {
		if c := cfg.Clusters[name]; c.CertificateAuthority != "" {
			errs = append(errs, fmt.Errorf("cluster %q names certificate-authority file %s; only certificate-authority-data is accepted", name, c.CertificateAuthority))
		}
	}
	return errors.Join(errs...)
}
