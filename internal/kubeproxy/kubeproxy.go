// Package kubeproxy forwards HTTP requests to a Kubernetes API server with
// its own credentials, streaming responses (watches, logs) and protocol
// upgrades (exec, attach, port-forward) through.
package kubeproxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"syscall"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"
)

// Backend is an API server with the credentials to reach it.
type Backend struct {
	url *url.URL
	// transport carries the credentials; upgrade does the same over
	// HTTP/1.1, which protocol upgrades need.
	transport, upgrade http.RoundTripper
}

// NewBackend prepares forwarding to the API server of cfg.
func NewBackend(cfg *rest.Config) (*Backend, error) {
	u, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, err
	}
	t, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := rest.TLSConfigFor(cfg)
	if err != nil {
		return nil, err
	}
	base := &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: tlsCfg}
	if base.TLSClientConfig != nil {
		base.TLSClientConfig = base.TLSClientConfig.Clone()
		base.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	up, err := rest.HTTPWrappersForConfig(cfg, base)
	if err != nil {
		return nil, err
	}
	return &Backend{url: u, transport: t, upgrade: up}, nil
}

// Serve forwards r to path on the backend (query replaces r's query when
// not nil). The caller's credentials and impersonation headers are dropped;
// as, if not nil, is the identity the backend's credentials impersonate.
func (b *Backend) Serve(w http.ResponseWriter, r *http.Request, path string, query url.Values, as *transport.ImpersonationConfig) {
	rt := b.transport
	if r.Header.Get("Upgrade") != "" {
		rt = b.upgrade
	} else if !bufferBody(w, r) {
		return
	}
	if as != nil {
		rt = transport.NewImpersonatingRoundTripper(*as, rt)
	}
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = b.url.Scheme, b.url.Host
			pr.Out.URL.Path = strings.TrimSuffix(b.url.Path, "/") + "/" + strings.TrimPrefix(path, "/")
			pr.Out.URL.RawPath = ""
			if query != nil {
				pr.Out.URL.RawQuery = query.Encode()
			}
			pr.Out.Host = b.url.Host
			pr.Out.Header.Del("Authorization")
			for k := range pr.Out.Header {
				if strings.HasPrefix(strings.ToLower(k), "impersonate-") {
					pr.Out.Header.Del(k)
				}
			}
		},
		Transport:     rt,
		FlushInterval: -1,
		ErrorHandler:  writeBackendError,
	}
	p.ServeHTTP(w, r)
}

// writeBackendError answers a request the backend did not answer. A
// backend that refused the connection is restarting (a restore, a wake, a
// new address the platform has not read yet): 503 with Retry-After, which
// client-go waits for and retries. Anything else is 502.
func writeBackendError(w http.ResponseWriter, _ *http.Request, err error) {
	if errors.Is(err, syscall.ECONNREFUSED) {
		w.Header().Set("Retry-After", "1")
		WriteStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "backend not listening (restarting?): "+err.Error()+"; retry")
		return
	}
	WriteStatus(w, http.StatusBadGateway, metav1.StatusReasonServiceUnavailable, "backend unreachable: "+err.Error())
}

// MaxBody bounds the request bodies Serve reads before forwarding; the API
// server's own limit is 3 MiB.
const MaxBody = 8 << 20

// bufferBody reads r's body whole before r is forwarded, and reports
// whether it could. An API server answers a request it refuses (403, 409)
// before it reads the body; HTTP/2 clients then stop sending theirs, while
// the proxy's request to the API server still waits for it, and closing
// that response waits for the request (golang/go#48908): both sides hang.
// With the body read first, nothing waits for the client.
func bufferBody(w http.ResponseWriter, r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return true
	}
	if r.ContentLength > MaxBody {
		WriteStatus(w, http.StatusRequestEntityTooLarge, metav1.StatusReasonRequestEntityTooLarge, fmt.Sprintf("the request body has %d bytes, over the %d this proxy forwards", r.ContentLength, MaxBody))
		return false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	switch {
	case err != nil:
		WriteStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "read the request body: "+err.Error())
		return false
	case len(body) > MaxBody:
		WriteStatus(w, http.StatusRequestEntityTooLarge, metav1.StatusReasonRequestEntityTooLarge, fmt.Sprintf("the request body is over the %d bytes this proxy forwards", MaxBody))
		return false
	}
	r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	return true
}

// WriteStatus writes a Kubernetes Status error, which kubectl prints.
func WriteStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(&metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Message: msg, Reason: reason, Code: int32(code),
	})
}
