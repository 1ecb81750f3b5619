package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"github.com/sublet-dev/sublet/config/crd"
	"github.com/sublet-dev/sublet/internal/pathflag"
	"github.com/sublet-dev/sublet/internal/pki"
	"github.com/sublet-dev/sublet/internal/restconfig"
	"github.com/sublet-dev/sublet/internal/server"
	"github.com/sublet-dev/sublet/internal/snapshot"
)

// serverReadyPrefix starts the line the server prints once it serves.
const serverReadyPrefix = "Sublet server is running at "

type platformOptions struct {
	kubeconfig  string
	listen      string
	stateDir    string
	certFile    string
	keyFile     string
	caCertFile  string
	caKeyFile   string
	sans        []string
	auditLog    string
	installCRDs bool
	limits      server.Limits
	// moveRegistry is the OCI repository prefix moves go through.
	moveRegistry string
}

func newServerCommand() *cobra.Command {
	home, _ := os.UserHomeDir()
	o := &platformOptions{listen: "127.0.0.1:9443", stateDir: filepath.Join(home, ".sublet", "server"), auditLog: "-", installCRDs: true,
		limits: server.DefaultLimits()}
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
  /api/v1/whoami, /api/v1/info, /api/v1/clusters, /api/v1/virtualclusters, /api/v1/moves
  any other path, with a key scoped to a virtual cluster
                                                      that virtual cluster's API, as by its path

A client's impersonation headers (kubectl --as, --as-group) are honoured as the API server
would: if the target cluster (the host, or the virtual cluster) lets the user impersonate
that identity, the request is served as it; else it is refused with the API server's 403.

Without --tls-cert-file it serves a certificate of its own CA, kept in --state-dir
(or the CA of --ca-cert-file, e.g. a Secret mounted read-only); that CA is what
clients trust. It then also serves every virtual cluster at the root of
its address to clients that send the server name NAME.NAMESPACE.CLUSTER.vcluster.sublet.invalid
in the TLS handshake (kubeconfig tls-server-name; the name is never looked up), with a
certificate for exactly that name. A key scoped to a virtual cluster ('sublet create
accesskey --vcluster', and the kube-contexts 'sublet use vcluster' writes) is good for that
cluster's API alone, and needs neither path nor server name: clients that know only the
address, the CA and the key (kubectl proxy, kubectl --server, CI systems) reach it. Every
request is audit-logged as JSON, naming the virtual cluster and how the request named it.

What one user may spend is bounded: access keys and web UI sessions per user by count,
access reviews and key creations per user and failed logins per client address and per
key by rate (see the flags below). Each user has buckets of their own, so one user at a
limit does not slow another; a refusal says which limit, and when to retry (HTTP 429 with
Retry-After, or 422 at the access key cap).`,
		Example: `  sublet server --kubeconfig mgmt.kubeconfig --listen 0.0.0.0:9443 --tls-san platform.example.com`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPlatformServer(cmd, o)
		},
	}
	f := cmd.Flags()
	pathflag.Var(f, &o.kubeconfig, "kubeconfig", o.kubeconfig, "Kubeconfig of the management cluster (where Cluster and AccessKey objects live); default: in-cluster.")
	f.StringVar(&o.listen, "listen", o.listen, "HOST:PORT to serve HTTPS on.")
	pathflag.Var(f, &o.stateDir, "state-dir", o.stateDir, "Directory for the server's CA and certificate.")
	pathflag.Var(f, &o.certFile, "tls-cert-file", o.certFile, "Serving certificate (PEM); default: one issued by the server's own CA.")
	pathflag.Var(f, &o.keyFile, "tls-key-file", o.keyFile, "Key of --tls-cert-file.")
	pathflag.Var(f, &o.caCertFile, "ca-cert-file", o.caCertFile, "CA certificate (PEM) the server issues its own certificates from, copied into --state-dir; default: a CA the server makes there.")
	pathflag.Var(f, &o.caKeyFile, "ca-key-file", o.caKeyFile, "Key of --ca-cert-file.")
	f.StringSliceVar(&o.sans, "tls-san", o.sans, "Extra DNS name or IP for the server's own certificate (repeatable).")
	pathflag.Var(f, &o.auditLog, "audit-log", o.auditLog, "File the JSON audit log is appended to; - for stderr.")
	f.BoolVar(&o.installCRDs, "install-crds", o.installCRDs, "Create or upgrade the storage.loft.sh CRDs in the management cluster at start.")
	f.StringVar(&o.moveRegistry, "move-registry", o.moveRegistry, "OCI repository prefix REGISTRY/PATH that 'sublet move vcluster' goes through when not given --via: a move of NAMESPACE/NAME snapshots to oci://REGISTRY/PATH/NAMESPACE/NAME:move-TIME. Every connected cluster's agent must allow it (its --snapshot-registries).")
	o.limits.AddFlags(f)
	return cmd
}

func runPlatformServer(cmd *cobra.Command, o *platformOptions) error {
	if (o.certFile == "") != (o.keyFile == "") {
		return errors.New("--tls-cert-file and --tls-key-file go together")
	}
	if (o.caCertFile == "") != (o.caKeyFile == "") {
		return errors.New("--ca-cert-file and --ca-key-file go together")
	}
	if o.caCertFile != "" && o.certFile != "" {
		return errors.New("--ca-cert-file issues the server's own certificate, and --tls-cert-file replaces it: pass one of them")
	}
	if err := o.limits.Validate(); err != nil {
		return err
	}
	if o.moveRegistry = strings.TrimSuffix(o.moveRegistry, "/"); o.moveRegistry != "" {
		if _, err := snapshot.ParseLocation("oci://" + o.moveRegistry + "/ns/name:tag"); err != nil {
			return fmt.Errorf("--move-registry %q: want an OCI repository prefix REGISTRY/PATH, such as registry.example.com/sublet-moves", o.moveRegistry)
		}
	}
	l, err := listenPlatform(o.listen)
	if err != nil {
		return err
	}
	defer l.Close()
	cfg, err := restconfig.Load(o.kubeconfig, "--kubeconfig")
	if err != nil {
		return fmt.Errorf("management cluster: %w", err)
	}
	ctx := cmd.Context()
	if o.installCRDs {
		if err := crd.Install(ctx, cfg); err != nil {
			return err
		}
	}
	errc := make(chan error, 1)
	url, caFile, err := startPlatformServer(ctx, cfg, o, l, errc)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s%s\n", serverReadyPrefix, url)
	if caFile != "" {
		fmt.Fprintf(cmd.OutOrStdout(), "CA certificate (clients trust it): %s\n", caFile)
	}
	return <-errc
}

// listenPlatform opens the platform server's listener, first of all, so a
// port in use is reported before anything starts.
func listenPlatform(addr string) (net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return nil, fmt.Errorf("--listen %q is not HOST:PORT (example: 127.0.0.1:9443)", addr)
	}
	l, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("--listen %s: port %s is already in use (another 'sublet up' or 'sublet server'?): stop that, or pass --listen %s:PORT with a free port", addr, port, host)
	}
	if err != nil {
		return nil, fmt.Errorf("--listen %s: %w", addr, err)
	}
	return l, nil
}

// startPlatformServer serves the platform on l (with o's certificate, or
// one of its own CA in o.stateDir) until ctx ends, then sends the result to
// errc. It returns the URL and the CA file ("" with a given cert). l is
// closed when serving ends.
func startPlatformServer(ctx context.Context, cfg *rest.Config, o *platformOptions, l net.Listener, errc chan<- error) (url, caFile string, err error) {
	certFile, keyFile := o.certFile, o.keyFile
	var issuer *pki.Issuer
	if certFile == "" {
		p := pki.Dir{Path: filepath.Join(o.stateDir, "pki")}
		if o.caCertFile != "" {
			if err := adoptCA(p, o.caCertFile, o.caKeyFile); err != nil {
				return "", "", err
			}
		}
		hosts := append([]string{"localhost", "127.0.0.1"}, o.sans...)
		if host, _, _ := net.SplitHostPort(o.listen); host != "" && !net.ParseIP(host).IsUnspecified() {
			hosts = append(hosts, host)
		}
		if err := p.Ensure(hosts); err != nil {
			return "", "", err
		}
		certFile, keyFile, caFile = p.ServingCert(), p.ServingKey(), p.CACert()
		// Its own CA also certifies each virtual cluster's server name.
		if issuer, err = p.Issuer(); err != nil {
			return "", "", err
		}
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return "", "", fmt.Errorf("serving certificate: %w", err)
	}
	var auditOut io.WriteCloser = nopCloser{os.Stderr}
	if o.auditLog != "-" {
		if auditOut, err = os.OpenFile(o.auditLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
			return "", "", fmt.Errorf("audit log: %w", err)
		}
	}
	srv, err := server.New(ctx, cfg, slog.New(slog.NewJSONHandler(auditOut, nil)).With("log", "audit"), o.limits)
	if err == nil {
		srv.SetMoveRegistry(o.moveRegistry)
		err = srv.Start(ctx)
	}
	if err != nil {
		auditOut.Close()
		return "", "", err
	}
	go func() {
		defer auditOut.Close()
		errc <- srv.Serve(ctx, l, srv.TLSConfig(cert, issuer))
	}()
	return "https://" + l.Addr().String(), caFile, nil
}

// adoptCA copies the CA of certFile and keyFile into p, where the server
// keeps its own, after checking that they are a CA certificate and its
// key. The server issues its serving certificate from it next to it, so p
// must be writable even where the CA comes from a read-only mount.
func adoptCA(p pki.Dir, certFile, keyFile string) error {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return fmt.Errorf("--ca-cert-file: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return fmt.Errorf("--ca-key-file: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("--ca-cert-file %s and --ca-key-file %s: %w", certFile, keyFile, err)
	}
	if !pair.Leaf.IsCA {
		return fmt.Errorf("--ca-cert-file %s is not a CA certificate (basic constraints CA:TRUE); pass the CA the server issues its certificates from", certFile)
	}
	if err := os.MkdirAll(p.Path, 0o700); err != nil {
		return fmt.Errorf("create pki dir: %w", err)
	}
	if err := pki.WriteFileAtomic(p.CACert(), certPEM, 0o644); err != nil {
		return err
	}
	return pki.WriteFileAtomic(p.CAKey(), keyPEM, 0o600)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
