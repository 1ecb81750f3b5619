package vcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/controlplane"
	"github.com/sublet-dev/sublet/internal/exitcode"
	"github.com/sublet-dev/sublet/internal/kubeproxy"
)

// RunDataOnly serves the data endpoint alone, on o.Listen, with the data
// dir's serving certificate, to clients with a certificate of its CA that
// send the token it publishes in o.KubeconfigSecret; /readyz and /livez
// answer ok. Nothing else runs: no control plane, no syncer. The pod
// runtime runs a sleeping cluster's pod so to snapshot or restore it
// without waking it. A data dir sent to it is put in place at the next
// start.
func RunDataOnly(ctx context.Context, o Options, log klog.Logger) error {
	data := o.ControlPlane.DataDir
	if _, err := controlplane.DatastoreOf(data); err != nil {
		return exitcode.Configf("--data-only serves a data dir a virtual cluster ran on: %v", err)
	}
	if o.KubeconfigSecret == "" || o.Listen == "" || o.HostNamespace == "" {
		return exitcode.Configf("--data-only needs --listen, --host-namespace and --kubeconfig-secret")
	}
	tlsConfig, err := dataOnlyTLS(controlplane.PKI(data).CACert(), controlplane.PKI(data).ServingCert(), controlplane.PKI(data).ServingKey())
	if err != nil {
		return err
	}
	ep, err := newDataEndpoint(data, func() { log.Info("data endpoint: the new data dir is put in place at the next start") }, log)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", o.Listen, err)
	}
	srv := &http.Server{Handler: dataOnlyHandler(ep), TLSConfig: tlsConfig, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(l, "", "") }()
	if err := publishDataToken(ctx, o, ep.token); err != nil {
		_ = srv.Close()
		return err
	}
	log.Info("serving the data endpoint alone (the virtual cluster sleeps)", "listen", o.Listen, "dataDir", data)
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}

// dataOnlyHandler answers the probes, and serves ep to clients that sent
// a certificate of the cluster's CA (dataOnlyTLS verified it).
func dataOnlyHandler(ep *dataEndpoint) http.Handler {
	mux := http.NewServeMux()
	for _, path := range []string{"/readyz", "/livez", "/healthz"} {
		mux.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	}
	inner := ep.Wrap(http.NotFoundHandler())
	mux.HandleFunc(storagev1.DataPath, func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			kubeproxy.WriteStatus(w, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "a client certificate of the virtual cluster's CA is required")
			return
		}
		inner.ServeHTTP(w, r)
	})
	return mux
}

// dataOnlyTLS serves certFile and keyFile and verifies client
// certificates given against caFile (the probes send none).
func dataOnlyTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("the data dir's serving certificate: %w", err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("the data dir's CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("the data dir's CA holds no certificate")
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// publishDataToken sets the data endpoint's token in the kubeconfig
// Secret, which the cluster's earlier start wrote; its kubeconfig stays.
func publishDataToken(ctx context.Context, o Options, token string) error {
	cfg, err := o.hostConfig()
	if err != nil {
		return err
	}
	host, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	secrets := host.CoreV1().Secrets(o.HostNamespace)
	s, err := secrets.Get(ctx, o.KubeconfigSecret, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("--kubeconfig-secret %s: %w", o.KubeconfigSecret, err)
	}
	if s.Data == nil {
		s.Data = map[string][]byte{}
	}
	s.Data[storagev1.DataTokenKey] = []byte(token)
	if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("--kubeconfig-secret %s: publish the data endpoint's token: %w", o.KubeconfigSecret, err)
	}
	return nil
}
