package vcluster

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/client-go/rest"

	"github.com/sublet-dev/sublet/internal/isolation"
	"github.com/sublet-dev/sublet/internal/kubeproxy"
	"github.com/sublet-dev/sublet/internal/syncer"
	"github.com/sublet-dev/sublet/internal/syncer/kinds"
	"github.com/sublet-dev/sublet/internal/vcluster/proxy"
)

// apiHandlers are what the runtime adds to the virtual API server's
// handler chain: the redirect of service and pod proxying to the host, and
// the read-only guard of the host's classes.
type apiHandlers struct {
	redirect *proxy.Redirect
	readOnly *readOnly
	// data, if set, serves the data endpoint.
	data *dataEndpoint
}

func newAPIHandlers() (apiHandlers, error) {
	ro, err := newReadOnly()
	if err != nil {
		return apiHandlers{}, fmt.Errorf("read-only guard: %w", err)
	}
	return apiHandlers{redirect: &proxy.Redirect{}, readOnly: ro}, nil
}

// wrap is the API server handler wrapper (controlplane.WrapAPIHandler).
func (h apiHandlers) wrap(next http.Handler) http.Handler {
	next = h.readOnly.Wrap(h.redirect.Wrap(next))
	if h.data != nil {
		next = h.data.Wrap(next)
	}
	return next
}

// fromHostSelectors parses --from-host-selector values (KIND=SELECTOR)
// into the syncer's selectors, by kind name.
func fromHostSelectors(list []string) (map[string]labels.Selector, error) {
	names := kinds.FromHostNames()
	out := map[string]labels.Selector{}
	for _, a := range list {
		kind, sel, ok := strings.Cut(a, "=")
		if !ok || !slices.Contains(names, kind) {
			return nil, fmt.Errorf("--from-host-selector %q: want KIND=SELECTOR, KIND one of %s", a, strings.Join(names, ", "))
		}
		s, err := labels.Parse(sel)
		if err != nil {
			return nil, fmt.Errorf("--from-host-selector %q: %w", a, err)
		}
		out[kind] = s
	}
	return out, nil
}

// syncerHeader carries the secret that marks a request to the virtual API
// server as the syncer's own.
const syncerHeader = "X-Sublet-Syncer"

// readOnly keeps the kinds the syncer copies from the host (kinds.Kind
// FromHost: the host's classes) as the host has them. The tenant is
// cluster-admin of its virtual cluster, so no RBAC rule or admission
// policy inside it can hold: the tenant could change either, or
// impersonate the syncer. This check sits in the API server's handler
// chain (after authentication, impersonation and authorization) and
// refuses every write to those resources that does not carry the secret
// only this process knows and only the syncer's client sends.
type readOnly struct {
	secret string
	// guarded are the resources refused, with the kind's name in values.
	// None until the syncer starts: the API server's own start writes
	// one such kind (its system priority classes), and the syncer removes
	// whatever else was written before it ran.
	guarded atomic.Pointer[map[schema.GroupResource]string]
}

func newReadOnly() (*readOnly, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	g := &readOnly{secret: hex.EncodeToString(b)}
	g.guard(nil, nil)
	return g, nil
}

// guard refuses tenants' writes to the FromHost kinds in selected and
// the from-host custom resource rows.
func (g *readOnly) guard(selected map[string]bool, custom []kinds.Custom) {
	m := map[schema.GroupResource]string{}
	for _, k := range kinds.All() {
		if k.FromHost && selected[k.Name] {
			m[k.Host.GroupResource()] = k.OffValue()
		}
	}
	for _, c := range custom {
		if c.FromHost {
			m[c.GroupResource()] = c.Row().OffValue()
		}
	}
	g.guarded.Store(&m)
}

// syncerConfig is cfg sending the secret: the syncer's client.
func (g *readOnly) syncerConfig(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			r = r.Clone(r.Context())
			r.Header.Set(syncerHeader, g.secret)
			return rt.RoundTrip(r)
		})
	})
	return c
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Wrap is the API server handler wrapper (controlplane.WrapAPIHandler).
func (g *readOnly) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fromSyncer := subtle.ConstantTimeCompare([]byte(r.Header.Get(syncerHeader)), []byte(g.secret)) == 1
		r.Header.Del(syncerHeader)
		ri, ok := request.RequestInfoFrom(r.Context())
		if fromSyncer || !ok || !ri.IsResourceRequest {
			next.ServeHTTP(w, r)
			return
		}
		off, guarded := (*g.guarded.Load())[schema.GroupResource{Group: ri.APIGroup, Resource: ri.Resource}]
		switch ri.Verb {
		case "create", "update", "patch", "delete", "deletecollection":
		default:
			guarded = false
		}
		if !guarded {
			next.ServeHTTP(w, r)
			return
		}
		what := ri.Resource
		if ri.Name != "" {
			what = fmt.Sprintf("%s %q", ri.Resource, ri.Name)
		}
		kubeproxy.WriteStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden, fmt.Sprintf(
			"%s: read-only in this virtual cluster: the syncer copies the host cluster's %s here as the host has them. "+
				"Ask the host cluster's admin to change them there, or stop the copy with the value %s",
			what, ri.Resource, off))
	})
}

// syncSettings are what the flags ask of the syncer.
type syncSettings struct {
	selected  map[string]bool
	selectors map[string]labels.Selector
	custom    []kinds.Custom
	policy    isolation.Policy
}

// syncSettings reads the syncer's flags.
func (o Options) syncSettings() (syncSettings, error) {
	var s syncSettings
	var err error
	if s.selected, err = syncer.Selection(o.Sync, o.DisableSync); err != nil {
		return s, err
	}
	if s.selectors, err = fromHostSelectors(o.FromHostSelectors); err != nil {
		return s, err
	}
	if s.custom, err = kinds.ParseCustom(o.CustomResources); err != nil {
		return s, err
	}
	if s.policy, err = isolation.Parse(o.IsolationPolicy); err != nil {
		return s, err
	}
	kinds.ForParents(s.selected, len(s.policy.Gateways.AllowedParents))
	return s, nil
}
