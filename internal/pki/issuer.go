package pki

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
)

// Issuer issues serving certificates in memory, signed by a Dir's CA: for
// names that are not known in advance, such as the server name a client
// asks for in the TLS handshake.
type Issuer struct {
	ca  *x509.Certificate
	key crypto.Signer
}

// Issuer returns an issuer with p's CA, creating the CA if p has none.
func (p Dir) Issuer() (*Issuer, error) {
	ca, key, err := p.ensureCA()
	if err != nil {
		return nil, err
	}
	return &Issuer{ca: ca, key: key}, nil
}

// Serving issues a serving certificate for host, a DNS name or an IP.
func (i *Issuer) Serving(host string) (*tls.Certificate, error) {
	der, key, err := issueLeaf(i.ca, i.key, pkix.Name{CommonName: host}, []string{host}, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, fmt.Errorf("issue a serving certificate for %s: %w", host, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// CAPEM is the issuer's CA certificate, PEM-encoded: what clients trust.
func (i *Issuer) CAPEM() []byte { return PEMBlock("CERTIFICATE", i.ca.Raw) }
