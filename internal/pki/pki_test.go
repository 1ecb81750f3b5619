package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"os"
	"testing"

	certutil "k8s.io/client-go/util/cert"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := certutil.ParseCertsPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

func TestEnsureKeepsWhatExists(t *testing.T) {
	p := Dir{Path: t.TempDir()}
	hosts := []string{"localhost", "127.0.0.1"}
	if err := p.Ensure(hosts); err != nil {
		t.Fatal(err)
	}
	ca, _ := os.ReadFile(p.CACert())
	serving, _ := os.ReadFile(p.ServingCert())
	sa, _ := os.ReadFile(p.SAKey())

	if err := p.Ensure(hosts); err != nil {
		t.Fatal(err)
	}
	for name, before := range map[string][]byte{p.CACert(): ca, p.ServingCert(): serving, p.SAKey(): sa} {
		after, _ := os.ReadFile(name)
		if !bytes.Equal(before, after) {
			t.Errorf("%s changed on a second Ensure", name)
		}
	}

	// A new address reissues the serving certificate from the same CA.
	if err := p.Ensure(append(hosts, "10.1.2.3")); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(p.CACert()); !bytes.Equal(ca, after) {
		t.Error("CA replaced when a host was added")
	}
	cert := readCert(t, p.ServingCert())
	if err := cert.VerifyHostname("10.1.2.3"); err != nil {
		t.Errorf("serving cert lacks the new address: %v", err)
	}
	if err := cert.CheckSignatureFrom(readCert(t, p.CACert())); err != nil {
		t.Errorf("serving cert not signed by the CA: %v", err)
	}
}

func TestClientCertificatesCarryIdentity(t *testing.T) {
	p := Dir{Path: t.TempDir()}
	if err := p.Ensure(nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, user, group string
	}{
		{Admin, "sublet-admin", "system:masters"},
		{ControllerManager, "system:kube-controller-manager", ""},
		{Scheduler, "system:kube-scheduler", ""},
	}
	for _, tt := range tests {
		c := readCert(t, p.ClientCert(tt.name))
		if c.Subject.CommonName != tt.user {
			t.Errorf("%s: CN = %q, want %q", tt.name, c.Subject.CommonName, tt.user)
		}
		if tt.group != "" && (len(c.Subject.Organization) != 1 || c.Subject.Organization[0] != tt.group) {
			t.Errorf("%s: O = %v, want %q", tt.name, c.Subject.Organization, tt.group)
		}
		if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
			t.Errorf("%s: not a client certificate", tt.name)
		}
	}
}

func TestEnsureRefusesHalfACA(t *testing.T) {
	p := Dir{Path: t.TempDir()}
	if err := p.Ensure(nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p.CAKey()); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(p.CACert())
	if err := p.Ensure(nil); err == nil {
		t.Fatal("Ensure with a CA certificate but no key succeeded; it must not mint a new CA")
	}
	if after, _ := os.ReadFile(p.CACert()); !bytes.Equal(before, after) {
		t.Error("CA certificate overwritten")
	}
}

func TestKubeconfigForClient(t *testing.T) {
	p := Dir{Path: t.TempDir()}
	if err := p.Ensure(nil); err != nil {
		t.Fatal(err)
	}
	cfg, err := p.KubeconfigForClient("https://127.0.0.1:6443", "ctx", Admin)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CurrentContext != "ctx" || cfg.Clusters["ctx"].Server != "https://127.0.0.1:6443" {
		t.Errorf("unexpected kubeconfig: %+v", cfg)
	}
	if len(cfg.AuthInfos["ctx"].ClientCertificateData) == 0 || len(cfg.Clusters["ctx"].CertificateAuthorityData) == 0 {
		t.Error("kubeconfig does not embed its certificates")
	}
}

// TestPinnedServerTLS: only the pinned client certificate gets through;
// another certificate of the same CA (as a CSR-signed one would be) and
// no certificate are refused.
func TestPinnedServerTLS(t *testing.T) {
	p := Dir{Path: t.TempDir()}
	if err := p.Ensure([]string{"localhost", "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	srvCfg, err := p.PinnedServerTLS(APIServerKubeletClient)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", srvCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
				_, _ = c.Write([]byte("ok"))
			}()
		}
	}()
	caPEM, _ := os.ReadFile(p.CACert())
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	dial := func(client string) error {
		cfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
		if client != "" {
			cert, err := tls.LoadX509KeyPair(p.ClientCert(client), p.ClientKey(client))
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		c, err := tls.Dial("tcp", l.Addr().String(), cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 2)
		_, err = io.ReadFull(c, buf)
		return err
	}
	if err := dial(APIServerKubeletClient); err != nil {
		t.Errorf("pinned client refused: %v", err)
	}
	for _, other := range []string{Admin, ControllerManager, ""} {
		if err := dial(other); err == nil {
			t.Errorf("client %q accepted", other)
		}
	}
}
