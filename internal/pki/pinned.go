package pki

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// PinnedServerTLS is a server TLS configuration that serves the control
// plane's serving certificate and accepts one client only: the one holding
// the exact certificate of client identity name. Anything else the CA
// signed, such as a certificate a tenant obtained through a
// CertificateSigningRequest, is refused in the handshake.
func (p Dir) PinnedServerTLS(name string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(p.ServingCert(), p.ServingKey())
	if err != nil {
		return nil, err
	}
	pinned, err := tls.LoadX509KeyPair(p.ClientCert(name), p.ClientKey(name))
	if err != nil {
		return nil, fmt.Errorf("client certificate %s: %w", name, err)
	}
	caPEM, err := os.ReadFile(p.CACert())
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s holds no certificate", p.CACert())
	}
	want := pinned.Certificate[0]
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !bytes.Equal(raw[0], want) {
				return errors.New("client certificate is not the one this endpoint accepts")
			}
			return nil
		},
	}, nil
}

// ServePinned serves h over TLS on l, with PinnedServerTLS(client), until ctx
// ends; then it closes l. A serving error other than that close goes to
// stopped. The TLS configuration is loaded before ServePinned returns, so a
// missing key pair is the caller's error, not a silent dead listener.
func (p Dir) ServePinned(ctx context.Context, l net.Listener, client string, h http.Handler, stopped func(error)) error {
	tlsCfg, err := p.PinnedServerTLS(client)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, TLSConfig: tlsCfg, ReadHeaderTimeout: 30 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		if err := srv.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			stopped(err)
		}
	}()
	return nil
}
