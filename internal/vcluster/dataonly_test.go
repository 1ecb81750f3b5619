package vcluster

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/klog/v2"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/pki"
)

// TestDataOnlyServer: the data-only pod answers its probes to anyone, and
// its data endpoint only to a client certificate of the cluster's CA that
// also sends the token.
func TestDataOnlyServer(t *testing.T) {
	data := t.TempDir()
	p := pki.Dir{Path: filepath.Join(data, "pki")}
	if err := p.Ensure([]string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := dataOnlyTLS(p.CACert(), p.ServingCert(), p.ServingKey())
	if err != nil {
		t.Fatal(err)
	}
	ep, err := newDataEndpoint(data, func() {}, klog.Background())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(dataOnlyHandler(ep))
	srv.TLS = cfg
	srv.StartTLS()
	defer srv.Close()

	caPEM, err := os.ReadFile(p.CACert())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	client := func(cert *tls.Certificate) *http.Client {
		c := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if cert != nil {
			c.Certificates = []tls.Certificate{*cert}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: c}}
	}
	get := func(c *http.Client, path, token string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if token != "" {
			req.Header.Set(storagev1.DataTokenHeader, token)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	admin, err := tls.LoadX509KeyPair(p.ClientCert(pki.Admin), p.ClientKey(pki.Admin))
	if err != nil {
		t.Fatal(err)
	}
	if code := get(client(nil), "/readyz", ""); code != http.StatusOK {
		t.Errorf("/readyz without a certificate: %d, want 200", code)
	}
	if code := get(client(nil), storagev1.DataPath, ep.token); code != http.StatusUnauthorized {
		t.Errorf("the data endpoint with the token but no certificate: %d, want 401", code)
	}
	if code := get(client(&admin), storagev1.DataPath, "wrong"); code != http.StatusForbidden {
		t.Errorf("the data endpoint with the admin's certificate and a wrong token: %d, want 403", code)
	}
	// Both: it is served (the data dir holds no datastore here, so the copy fails after authentication).
	if code := get(client(&admin), storagev1.DataPath, ep.token); code == http.StatusUnauthorized || code == http.StatusForbidden {
		t.Errorf("the data endpoint with the admin's certificate and the token: %d, want it served", code)
	}
}
