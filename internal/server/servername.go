package server

import (
	"crypto/tls"
	"net/http"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sublet-dev/sublet/internal/pki"
	"github.com/sublet-dev/sublet/internal/platformapi"
)

// ServerNameSuffix ends the TLS server names that select a virtual cluster
// at the root of the platform's address: NAME.NAMESPACE.CLUSTER followed by
// this suffix. The name only ever travels in the TLS handshake (kubeconfig
// tls-server-name); the address stays the platform's, and ".invalid"
// (RFC 2606) never resolves, so it cannot be mistaken for a real host.
const ServerNameSuffix = ".vcluster.sublet.invalid"

// VirtualClusterServerName is the TLS server name of virtual cluster name in
// namespace ns of cluster. ok is false when the three cannot form one (a
// cluster name too long for a DNS name).
func VirtualClusterServerName(cluster, ns, name string) (sn string, ok bool) {
	sn = name + "." + ns + "." + cluster + ServerNameSuffix
	_, _, _, ok = parseServerName(sn)
	return sn, ok
}

// parseServerName reads a virtual cluster's server name. A virtual
// cluster's name and namespace are DNS labels, so the first two labels are
// they and the rest before the suffix is the cluster (a DNS subdomain).
func parseServerName(sn string) (cluster, ns, name string, ok bool) {
	rest, found := strings.CutSuffix(sn, ServerNameSuffix)
	if !found || len(sn) > validation.DNS1123SubdomainMaxLength {
		return "", "", "", false
	}
	// Every label a DNS label (at most 63 characters), as names in a
	// certificate must be.
	labels := strings.Split(rest, ".")
	if len(labels) < 3 {
		return "", "", "", false
	}
	for _, l := range labels {
		if len(validation.IsDNS1123Label(l)) > 0 {
			return "", "", "", false
		}
	}
	return strings.Join(labels[2:], "."), labels[1], labels[0], true
}

// maxServerNameCerts bounds the certificates kept for server names; any
// client may ask for any name in the handshake, before it authenticates.
const maxServerNameCerts = 4096

// serverNameCerts answers the TLS handshake: a virtual cluster's server
// name gets a certificate of the platform's CA for exactly that name,
// issued on first use and kept; any other name gets the default one.
type serverNameCerts struct {
	issuer *pki.Issuer
	def    *tls.Certificate
	mu     sync.Mutex
	certs  map[string]*tls.Certificate
}

func (c *serverNameCerts) get(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if _, _, _, ok := parseServerName(hello.ServerName); !ok {
		return c.def, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cert, ok := c.certs[hello.ServerName]; ok && time.Until(cert.Leaf.NotAfter) > 24*time.Hour {
		return cert, nil
	}
	cert, err := c.issuer.Serving(hello.ServerName)
	if err != nil {
		return nil, err
	}
	if len(c.certs) >= maxServerNameCerts {
		clear(c.certs)
	}
	c.certs[hello.ServerName] = cert
	return cert, nil
}

// TLSConfig is the server's TLS configuration: cert for its own address
// and, when issuer is not nil, a certificate of issuer's CA for each
// virtual cluster's server name, which makes every virtual cluster
// reachable at the root of the platform's address (see ServerNameSuffix).
// Without an issuer (a serving certificate given by the admin), virtual
// clusters are reachable by path only, and /api/v1/info says so.
func (s *Server) TLSConfig(cert tls.Certificate, issuer *pki.Issuer) *tls.Config {
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if issuer != nil {
		names := &serverNameCerts{issuer: issuer, def: &cert, certs: map[string]*tls.Certificate{}}
		cfg.GetCertificate = names.get
		s.serverNames = true
		s.caPEM = issuer.CAPEM()
	}
	return cfg
}

// virtualByServerName returns the handler for a request that arrived with
// a virtual cluster's server name: its whole path is that virtual
// cluster's API. nil for any other request.
func (s *Server) virtualByServerName(r *http.Request) http.Handler {
	if r.TLS == nil {
		return nil
	}
	cluster, ns, name, ok := parseServerName(r.TLS.ServerName)
	if !ok {
		return nil
	}
	return s.authenticatedVirtual(func(w http.ResponseWriter, r *http.Request, u *User) {
		s.proxyVirtual(w, r, u, formServerName, cluster, ns, name, r.URL.Path)
	})
}

func (s *Server) info(w http.ResponseWriter, _ *http.Request, _ *User) {
	var i platformapi.Info
	if s.serverNames {
		i.VirtualClusterServerNameSuffix = ServerNameSuffix
	}
	i.MoveRegistry = s.moveRegistry
	writeJSON(w, i)
}
