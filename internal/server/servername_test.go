package server

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sublet-dev/sublet/internal/pki"
	"github.com/sublet-dev/sublet/internal/platformapi"
)

func TestServerNameRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		cluster, ns, name string
		ok                bool
	}{
		{"local", "vcluster-demo", "demo", true},
		{"prod.eu-west", "team-a", "ci", true}, // a cluster name with dots
		{"local", "team-a", strings.Repeat("a", 63), true},
		{"Local", "team-a", "demo", false},                                           // not a DNS name
		{strings.Repeat("c", 64), "team-a", "x", false},                              // a label too long
		{strings.Repeat(strings.Repeat("c", 60)+".", 4) + "c", "team-a", "x", false}, // too long for a DNS name
	} {
		sn, ok := VirtualClusterServerName(tc.cluster, tc.ns, tc.name)
		if ok != tc.ok {
			t.Errorf("VirtualClusterServerName(%q, %q, %q) ok = %v, want %v", tc.cluster, tc.ns, tc.name, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		c, ns, name, ok := parseServerName(sn)
		if !ok || c != tc.cluster || ns != tc.ns || name != tc.name {
			t.Errorf("parseServerName(%q) = %q %q %q %v", sn, c, ns, name, ok)
		}
	}
	for _, sn := range []string{"", "localhost", "127.0.0.1", "demo.vcluster.sublet.invalid", "a.b.vcluster.sublet.invalid.example.com", "a..c.vcluster.sublet.invalid"} {
		if _, _, _, ok := parseServerName(sn); ok {
			t.Errorf("parseServerName(%q) accepted it", sn)
		}
	}
}

func TestServerNameCertificates(t *testing.T) {
	p := pki.Dir{Path: filepath.Join(t.TempDir(), "pki")}
	if err := p.Ensure([]string{"localhost"}); err != nil {
		t.Fatal(err)
	}
	issuer, err := p.Issuer()
	if err != nil {
		t.Fatal(err)
	}
	def, err := tls.LoadX509KeyPair(p.ServingCert(), p.ServingKey())
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{}
	cfg := s.TLSConfig(def, issuer)
	if !s.serverNames {
		t.Fatal("the server does not say it serves virtual clusters' server names")
	}
	roots := x509.NewCertPool()
	pem, err := os.ReadFile(p.CACert())
	if err != nil {
		t.Fatal(err)
	}
	roots.AppendCertsFromPEM(pem)

	sn, _ := VirtualClusterServerName("local", "team-a", "demo")
	got, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: sn})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := got.Leaf.Verify(x509.VerifyOptions{DNSName: sn, Roots: roots}); err != nil {
		t.Errorf("certificate for %s does not verify for that name: %v", sn, err)
	}
	other, _ := VirtualClusterServerName("local", "team-a", "other")
	if _, err := got.Leaf.Verify(x509.VerifyOptions{DNSName: other, Roots: roots}); err == nil {
		t.Errorf("the certificate for %s also covers %s", sn, other)
	}
	again, _ := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: sn})
	if again != got {
		t.Error("a second handshake issued a new certificate instead of the kept one")
	}
	for _, name := range []string{"", "localhost", "evil.example.com"} {
		c, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
		if err != nil || string(c.Certificate[0]) != string(def.Certificate[0]) {
			t.Errorf("server name %q did not get the default certificate (%v)", name, err)
		}
	}
	if (&Server{}).TLSConfig(def, nil).GetCertificate != nil {
		t.Error("without an issuer, the server still issues certificates")
	}
}

func TestActingUserListsEachGroupOnce(t *testing.T) {
	u := actingUser(&User{User: platformapi.User{Name: "admin", Groups: []string{"system:masters", "ops", "ops"}}}, "system:masters")
	if u.Name != "admin" || strings.Join(u.Groups, ",") != "system:masters,ops" {
		t.Errorf("actingUser = %s %v", u.Name, u.Groups)
	}
}
