package vcluster

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/client-go/rest"

	"github.com/sublet-dev/sublet/internal/syncer/kinds"
)

// TestReadOnlyGuard: writes to a guarded kind are refused unless they carry
// the syncer's secret, which never reaches the API server's own handlers;
// reads, other kinds and unselected kinds pass; nothing is guarded before
// the syncer's selection is known.
func TestReadOnlyGuard(t *testing.T) {
	g, err := newReadOnly()
	if err != nil {
		t.Fatal(err)
	}
	var sawSecret bool
	h := g.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawSecret = r.Header.Get(syncerHeader) != ""
		w.WriteHeader(http.StatusOK)
	}))
	serve := func(group, resource, verb, secret string) (int, string) {
		r := httptest.NewRequest(http.MethodPost, "/apis/x", nil)
		if secret != "" {
			r.Header.Set(syncerHeader, secret)
		}
		r = r.WithContext(request.WithRequestInfo(r.Context(), &request.RequestInfo{
			IsResourceRequest: true, APIGroup: group, Resource: resource, Verb: verb, Name: "fast"}))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code, w.Body.String()
	}
	if code, _ := serve("storage.k8s.io", "storageclasses", "delete", ""); code != http.StatusOK {
		t.Errorf("before the syncer starts: %d, want nothing guarded", code)
	}
	g.guard(map[string]bool{kinds.StorageClasses: true, kinds.PriorityClasses: false},
		[]kinds.Custom{{CRD: "clusterissuers.cert-manager.io", FromHost: true}, {CRD: "certificates.cert-manager.io"}})
	// A custom resource row from the host is read-only too; one to the
	// host is the tenant's.
	if code, body := serve("cert-manager.io", "clusterissuers", "create", ""); code != http.StatusForbidden ||
		!strings.Contains(body, "sync.fromHost.customResources.clusterissuers.cert-manager.io.enabled: false") {
		t.Errorf("tenant create of a custom from-host kind: %d %s", code, body)
	}
	for _, verb := range []string{"create", "update", "patch", "delete", "deletecollection"} {
		code, body := serve("storage.k8s.io", "storageclasses", verb, "")
		if code != http.StatusForbidden || !strings.Contains(body, `storageclasses \"fast\": read-only`) || !strings.Contains(body, "sync.storageclasses.enabled: false") {
			t.Errorf("tenant %s: %d %s", verb, code, body)
		}
		if code, _ := serve("storage.k8s.io", "storageclasses", verb, "forged"); code != http.StatusForbidden {
			t.Errorf("tenant %s with a wrong secret: %d", verb, code)
		}
	}
	for _, c := range []struct{ group, resource, verb, secret string }{
		{"storage.k8s.io", "storageclasses", "get", ""},
		{"storage.k8s.io", "storageclasses", "watch", ""},
		{"storage.k8s.io", "storageclasses", "update", g.secret},
		{"scheduling.k8s.io", "priorityclasses", "create", ""}, // not selected
		{"storage.k8s.io", "volumeattachments", "create", ""},
		{"", "storageclasses", "create", ""}, // another group's resource of the same name
		{"cert-manager.io", "certificates", "create", ""},
	} {
		if code, _ := serve(c.group, c.resource, c.verb, c.secret); code != http.StatusOK {
			t.Errorf("%s %s.%s: %d, want passed", c.verb, c.resource, c.group, code)
		}
		if sawSecret {
			t.Errorf("%s %s.%s: the secret reached the API server's handlers", c.verb, c.resource, c.group)
		}
	}

	// The syncer's client sends the secret on every request.
	var sent string
	cfg := g.syncerConfig(&rest.Config{Host: "https://127.0.0.1:1"})
	_, _ = cfg.WrapTransport(roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		sent = r.Header.Get(syncerHeader)
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
	})).RoundTrip(httptest.NewRequest(http.MethodGet, "https://127.0.0.1:1/api", nil))
	if sent != g.secret {
		t.Errorf("the syncer's client sent %q, want its secret", sent)
	}
}
