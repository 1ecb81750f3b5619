package cli

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sublet-dev/sublet/config/crd"
	"github.com/sublet-dev/sublet/internal/pki"
	"github.com/sublet-dev/sublet/internal/restconfig"
	"github.com/sublet-dev/sublet/internal/server"
)

// serverReadyPrefix starts the line the server prints once it serves.
const serverReadyPrefix = "Sublet server is running at "

type platformOptions struct {
	kubeconfig  string
	listen      string
	stateDir    string
	certFile    string
	keyFile     string
	sans        []string
	auditLog    string
	installCRDs bool
}

func newServerCommand() *cobra.Command {
	home, _ := os.UserHomeDir()
	o := &platformOptions{listen: "127.0.0.1:9443", stateDir: filepath.Join(home, ".sublet", "server"), auditLog: "-", installCRDs: true}
	cmd := &cobra.Command{
		Use:   "server --kubeconfig FILE",
		Short: "Run the platform server: access keys and the authenticated proxy to clusters and virtual clusters",
		Long: `Serves HTTPS. Users authenticate with an access key (Authorization: Bearer KEY;
AccessKey objects in the management cluster hold its SHA-256). Paths:

  /kubernetes/cluster/CLUSTER/...                     the connected host cluster's API,
                                                      impersonating the user (its RBAC decides)
  /kubernetes/virtualcluster/CLUSTER/NAMESPACE/NAME/... the virtual cluster's API, if the user may
                                                      get virtualclusters.storage.loft.sh in
                                                      NAMESPACE of CLUSTER; then as cluster-admin
  /api/v1/whoami, /api/v1/clusters, /api/v1/virtualclusters

Without --tls-cert-file it serves a certificate of its own CA, kept in --state-dir;
that CA is what clients trust. Every request is audit-logged as JSON.`,
		Example: `  sublet server --kubeconfig mgmt.kubeconfig --listen 0.0.0.0:9443 --tls-san platform.example.com`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPlatformServer(cmd, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.kubeconfig, "kubeconfig", o.kubeconfig, "Kubeconfig of the management cluster (where Cluster and AccessKey objects live); default: in-cluster.")
	f.StringVar(&o.listen, "listen", o.listen, "HOST:PORT to serve HTTPS on.")
	f.StringVar(&o.stateDir, "state-dir", o.stateDir, "Directory for the server's CA and certificate.")
	f.StringVar(&o.certFile, "tls-cert-file", o.certFile, "Serving certificate (PEM); default: one issued by the server's own CA.")
	f.StringVar(&o.keyFile, "tls-key-file", o.keyFile, "Key of --tls-cert-file.")
	f.StringSliceVar(&o.sans, "tls-san", o.sans, "Extra DNS name or IP for the server's own certificate (repeatable).")
	f.StringVar(&o.auditLog, "audit-log", o.auditLog, "File the JSON audit log is appended to; - for stderr.")
	f.BoolVar(&o.installCRDs, "install-crds", o.installCRDs, "Create or upgrade the storage.loft.sh CRDs in the management cluster at start.")
	return cmd
}

func runPlatformServer(cmd *cobra.Command, o *platformOptions) error {
	if (o.certFile == "") != (o.keyFile == "") {
		return errors.New("--tls-cert-file and --tls-key-file go together")
	}
	host, port, err := net.SplitHostPort(o.listen)
	if err != nil || port == "" {
		return fmt.Errorf("--listen %q is not HOST:PORT (example: 127.0.0.1:9443)", o.listen)
	}
	cfg, err := restconfig.Load(o.kubeconfig, "--kubeconfig")
	if err != nil {
		return fmt.Errorf("management cluster: %w", err)
	}
	certFile, keyFile, caFile := o.certFile, o.keyFile, ""
	if certFile == "" {
		p := pki.Dir{Path: filepath.Join(o.stateDir, "pki")}
		hosts := append([]string{"localhost", "127.0.0.1"}, o.sans...)
		if host != "" && !net.ParseIP(host).IsUnspecified() {
			hosts = append(hosts, host)
		}
		if err := p.Ensure(hosts); err != nil {
			return err
		}
		certFile, keyFile, caFile = p.ServingCert(), p.ServingKey(), p.CACert()
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	auditOut := os.Stderr
	if o.auditLog != "-" {
		f, err := os.OpenFile(o.auditLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("--audit-log: %w", err)
		}
		defer f.Close()
		auditOut = f
	}
	ctx := cmd.Context()
	if o.installCRDs {
		if err := crd.Install(ctx, cfg); err != nil {
			return err
		}
	}
	srv, err := server.New(ctx, cfg, slog.New(slog.NewJSONHandler(auditOut, nil)).With("log", "audit"))
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	l, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.listen, err)
	}
	url := "https://" + l.Addr().String()
	fmt.Fprintf(cmd.OutOrStdout(), "%s%s\n", serverReadyPrefix, url)
	if caFile != "" {
		fmt.Fprintf(cmd.OutOrStdout(), "CA certificate (clients trust it): %s\n", caFile)
	}
	return srv.Serve(ctx, l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
}
