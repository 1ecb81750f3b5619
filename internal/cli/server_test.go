package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	certutil "k8s.io/client-go/util/cert"

	"github.com/sublet-dev/sublet/internal/pki"
)

// writeCert writes a self-signed certificate (a CA if isCA) and its key to
// dir as NAME.crt and NAME.key.
func writeCert(t *testing.T, dir, name string, isCA bool) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true, IsCA: isCA,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pki.PEMBlock("CERTIFICATE", der), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pki.PEMBlock("EC PRIVATE KEY", keyDER), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestAdoptCA: a given CA lands where the server keeps its own, and the
// serving certificate it then issues chains to it; a pair that does not
// match, a certificate that is no CA and a missing file are refused with
// the flag's name.
func TestAdoptCA(t *testing.T) {
	src := t.TempDir()
	caCert, caKey := writeCert(t, src, "ca", true)
	otherCert, otherKey := writeCert(t, src, "other", true)
	leafCert, leafKey := writeCert(t, src, "leaf", false)

	p := pki.Dir{Path: filepath.Join(t.TempDir(), "state", "pki")}
	if err := adoptCA(p, caCert, caKey); err != nil {
		t.Fatal(err)
	}
	if err := p.Ensure([]string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(caCert)
	if got, _ := os.ReadFile(p.CACert()); string(got) != string(want) {
		t.Fatal("the adopted CA is not the server's CA")
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(want)
	serving, err := os.ReadFile(p.ServingCert())
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := certutil.ParseCertsPEM(serving)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf[0].Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.0.1"}); err != nil {
		t.Errorf("the serving certificate does not chain to the adopted CA: %v", err)
	}

	for _, c := range []struct {
		name, cert, key, want string
	}{
		{"mismatched pair", caCert, otherKey, "private key does not match"},
		{"not a CA", leafCert, leafKey, "is not a CA certificate"},
		{"missing key", otherCert, filepath.Join(src, "none.key"), "--ca-key-file"},
	} {
		err := adoptCA(pki.Dir{Path: t.TempDir()}, c.cert, c.key)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
}
