// Package pki issues and keeps the certificates and keys of one control
// plane: a CA, serving and client certificates, and the service-account key.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
)

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	certValidity = 365 * 24 * time.Hour
	// renewBefore is how long before expiry a leaf certificate is reissued.
	renewBefore = 30 * 24 * time.Hour
)

// Dir is the directory of certificate and key files of one control plane.
type Dir struct {
	Path string
}

func (p Dir) path(name string) string { return filepath.Join(p.Path, name) }

func (p Dir) CACert() string             { return p.path("ca.crt") }
func (p Dir) CAKey() string              { return p.path("ca.key") }
func (p Dir) ServingCert() string        { return p.path("apiserver.crt") }
func (p Dir) ServingKey() string         { return p.path("apiserver.key") }
func (p Dir) SAKey() string              { return p.path("sa.key") }
func (p Dir) SAPub() string              { return p.path("sa.pub") }
func (p Dir) ClientCert(n string) string { return p.path(n + ".crt") }
func (p Dir) ClientKey(n string) string  { return p.path(n + ".key") }

// clientIdentity is a client certificate the control plane issues for itself.
type clientIdentity struct {
	file   string
	user   string
	groups []string
}

var clientIdentities = []clientIdentity{
	{file: Admin, user: "sublet-admin", groups: []string{"system:masters"}},
	{file: ControllerManager, user: "system:kube-controller-manager"},
	{file: Scheduler, user: "system:kube-scheduler"},
	{file: APIServerKubeletClient, user: "kube-apiserver-kubelet-client", groups: []string{"system:masters"}},
	{file: APIServerEtcdClient, user: "kube-apiserver-etcd-client"},
}

// Names of the key pairs the datastore and the apiserver use between them.
const (
	EtcdServer          = "etcd-server"
	APIServerEtcdClient = "apiserver-etcd-client"
)

// Ensure creates what is missing and reissues leaf certificates that expire
// soon or lack a required name. The CA and the service-account key are never
// replaced once they exist.
func (p Dir) Ensure(hosts []string) error {
	if err := os.MkdirAll(p.Path, 0o700); err != nil {
		return fmt.Errorf("create pki dir: %w", err)
	}
	caCert, caKey, err := p.ensureCA()
	if err != nil {
		return err
	}
	if err := p.ensureSAKey(); err != nil {
		return err
	}
	if err := p.ensureLeaf(caCert, caKey, p.ServingCert(), p.ServingKey(), pkix.Name{CommonName: "kube-apiserver"}, hosts, x509.ExtKeyUsageServerAuth); err != nil {
		return err
	}
	if err := p.ensureLeaf(caCert, caKey, p.ClientCert(EtcdServer), p.ClientKey(EtcdServer), pkix.Name{CommonName: "sublet-datastore"}, []string{"127.0.0.1", "localhost"}, x509.ExtKeyUsageServerAuth); err != nil {
		return err
	}
	for _, id := range clientIdentities {
		subject := pkix.Name{CommonName: id.user, Organization: id.groups}
		if err := p.ensureLeaf(caCert, caKey, p.ClientCert(id.file), p.ClientKey(id.file), subject, nil, x509.ExtKeyUsageClientAuth); err != nil {
			return err
		}
	}
	return nil
}

func (p Dir) ensureCA() (*x509.Certificate, crypto.Signer, error) {
	certPEM, certErr := os.ReadFile(p.CACert())
	keyPEM, keyErr := os.ReadFile(p.CAKey())
	switch {
	case certErr == nil && keyErr == nil:
		certs, err := certutil.ParseCertsPEM(certPEM)
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w (remove the data dir to start afresh)", p.CACert(), err)
		}
		key, err := keyutil.ParsePrivateKeyPEM(keyPEM)
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w (remove the data dir to start afresh)", p.CAKey(), err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, nil, fmt.Errorf("%s holds no signing key", p.CAKey())
		}
		return certs[0], signer, nil
	case errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist):
	default:
		return nil, nil, fmt.Errorf("the CA in %s is incomplete (ca.crt: %v, ca.key: %v); remove the data dir to start afresh", p.Path, certErr, keyErr)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "sublet-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	if err := writeKeyPair(p.CACert(), p.CAKey(), der, key); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func (p Dir) ensureSAKey() error {
	if _, err := os.Stat(p.SAKey()); err == nil {
		if _, err := os.Stat(p.SAPub()); err == nil {
			return nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(p.SAKey(), keyPEM, 0o600); err != nil {
		return err
	}
	return WriteFileAtomic(p.SAPub(), PEMBlock("PUBLIC KEY", pubDER), 0o644)
}

// ensureLeaf issues certFile/keyFile signed by the CA unless a valid one with
// all hosts already exists.
func (p Dir) ensureLeaf(ca *x509.Certificate, caKey crypto.Signer, certFile, keyFile string, subject pkix.Name, hosts []string, usage x509.ExtKeyUsage) error {
	if leafIsCurrent(ca, certFile, keyFile, hosts) {
		return nil
	}
	der, key, err := issueLeaf(ca, caKey, subject, hosts, usage)
	if err != nil {
		return fmt.Errorf("issue %s: %w", filepath.Base(certFile), err)
	}
	return writeKeyPair(certFile, keyFile, der, key)
}

// issueLeaf makes a key and a certificate for it, signed by the CA, for
// subject and hosts (DNS names or IPs) with one extended key usage.
func issueLeaf(ca *x509.Certificate, caKey crypto.Signer, subject pkix.Name, hosts []string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      subject,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, err
	}
	return der, key, nil
}

func leafIsCurrent(ca *x509.Certificate, certFile, keyFile string, hosts []string) bool {
	if _, err := os.Stat(keyFile); err != nil {
		return false
	}
	data, err := os.ReadFile(certFile)
	if err != nil {
		return false
	}
	certs, err := certutil.ParseCertsPEM(data)
	if err != nil || len(certs) == 0 {
		return false
	}
	c := certs[0]
	if c.CheckSignatureFrom(ca) != nil || time.Until(c.NotAfter) < renewBefore {
		return false
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
				return false
			}
		} else if !slices.Contains(c.DNSNames, h) {
			return false
		}
	}
	return true
}

func writeKeyPair(certFile, keyFile string, der []byte, key *ecdsa.PrivateKey) error {
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	return WriteFileAtomic(certFile, PEMBlock(certutil.CertificateBlockType, der), 0o644)
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return n
}

// Client certificate names the control plane issues for itself.
const (
	Admin                  = "admin"
	ControllerManager      = "controller-manager"
	Scheduler              = "scheduler"
	APIServerKubeletClient = "apiserver-kubelet-client"
)
