// Package proxy holds the proxies a virtual cluster's runtime serves beside
// its API server: the kubelet API of its nodes and the redirect of service
// and pod proxy requests, both to the host copies through the host API
// server, with the syncer's credentials.
package proxy

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apiserver/pkg/endpoints/request"

	"github.com/sublet-dev/sublet/internal/kubeproxy"
	"github.com/sublet-dev/sublet/internal/syncer"
)

// Redirect sends the virtual API server's service and pod proxy
// requests (…/services/[SCHEME:]NAME[:PORT]/proxy/PATH and the same for
// pods, which kubectl proxy and kubectl get --raw use) to the same
// subresource of the translated host object on the host API server, where
// the virtual cluster's services and pods really are. A request arrives
// authorized by the virtual API server for that subresource; it leaves
// with the syncer's host credentials. Everything else passes through.
type Redirect struct {
	target atomic.Pointer[proxyTarget]
}

type proxyTarget struct {
	c    *syncer.Context
	host *kubeproxy.Backend
}

// Start begins redirecting, with the syncer's context and a backend for the
// host API server; until then such requests get a 503.
func (p *Redirect) Start(c *syncer.Context, host *kubeproxy.Backend) {
	p.target.Store(&proxyTarget{c: c, host: host})
}

// Wrap is the API server handler wrapper (controlplane.WrapAPIHandler).
func (p *Redirect) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ri, ok := request.RequestInfoFrom(r.Context())
		if !ok || !ri.IsResourceRequest || ri.APIGroup != "" || ri.Subresource != "proxy" || ri.Namespace == "" ||
			(ri.Resource != "services" && ri.Resource != "pods") {
			next.ServeHTTP(w, r)
			return
		}
		t := p.target.Load()
		if t == nil {
			kubeproxy.WriteStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable,
				"the virtual cluster's syncer is starting; try again in a moment")
			return
		}
		t.serve(w, r, ri)
	})
}

func (t *proxyTarget) serve(w http.ResponseWriter, r *http.Request, ri *request.RequestInfo) {
	scheme, name, port, valid := utilnet.SplitSchemeNamePort(ri.Name)
	if !valid {
		kubeproxy.WriteStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, fmt.Sprintf("invalid %s %q: want [SCHEME:]NAME[:PORT]", strings.TrimSuffix(ri.Resource, "s"), ri.Name))
		return
	}
	kind := strings.TrimSuffix(ri.Resource, "s")
	hostNS, hostName := t.c.Translator.HostNamespace, t.c.Translator.HostName(ri.Namespace, name)
	virtualErr, hostErr, owned := t.lookup(r.Context(), ri.Resource, ri.Namespace, name, hostNS, hostName)
	switch {
	case apierrors.IsNotFound(virtualErr):
		kubeproxy.WriteStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("%s %q not found in namespace %q", ri.Resource, name, ri.Namespace))
		return
	case virtualErr != nil:
		kubeproxy.WriteStatus(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, virtualErr.Error())
		return
	case apierrors.IsNotFound(hostErr) || hostErr == nil && !owned:
		kubeproxy.WriteStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, fmt.Sprintf(
			"%s %s/%s has no copy on the host yet (the syncer has not created it); see kubectl get events -n %s", kind, ri.Namespace, name, ri.Namespace))
		return
	case hostErr != nil:
		kubeproxy.WriteStatus(w, http.StatusBadGateway, metav1.StatusReasonServiceUnavailable, "the host API server: "+hostErr.Error())
		return
	}
	prefix := fmt.Sprintf("/api/v1/namespaces/%s/%s/%s/proxy", ri.Namespace, ri.Resource, ri.Name)
	rest := strings.TrimPrefix(r.URL.Path, prefix)
	path := fmt.Sprintf("/api/v1/namespaces/%s/%s/%s/proxy%s", hostNS, ri.Resource, utilnet.JoinSchemeNamePort(scheme, hostName, port), rest)
	t.host.Serve(w, r, path, nil, nil)
}

// lookup reads the virtual object and its host copy (and whether this
// virtual cluster owns that copy).
func (t *proxyTarget) lookup(ctx context.Context, resource, ns, name, hostNS, hostName string) (virtualErr, hostErr error, owned bool) {
	var h metav1.Object
	switch resource {
	case "services":
		if _, virtualErr = t.c.Virtual.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{}); virtualErr != nil {
			return virtualErr, nil, false
		}
		hs, err := t.c.Host.CoreV1().Services(hostNS).Get(ctx, hostName, metav1.GetOptions{})
		if err != nil {
			return nil, err, false
		}
		h = hs
	default:
		if _, virtualErr = t.c.Virtual.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); virtualErr != nil {
			return virtualErr, nil, false
		}
		hp, err := t.c.Host.CoreV1().Pods(hostNS).Get(ctx, hostName, metav1.GetOptions{})
		if err != nil {
			return nil, err, false
		}
		h = hp
	}
	return nil, nil, t.c.Translator.Owns(h)
}
