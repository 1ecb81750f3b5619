package controlplane

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"k8s.io/apiserver/pkg/server/mux"
	"k8s.io/kube-openapi/pkg/handler3"
	"k8s.io/kube-openapi/pkg/spec3"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

// testV3Document is a small document of the shape the kube-apiserver
// serves, different per group-version.
func testV3Document(gv string) *spec3.OpenAPI {
	kind := "io.k8s.api." + strings.ReplaceAll(gv, "/", ".") + ".Widget"
	return &spec3.OpenAPI{
		Version: "3.0.0",
		Info:    &spec.Info{InfoProps: spec.InfoProps{Title: "Kubernetes", Version: "v1.37.2"}},
		Paths: &spec3.Paths{Paths: map[string]*spec3.Path{"/" + gv + "/widgets": {PathProps: spec3.PathProps{
			Get: &spec3.Operation{OperationProps: spec3.OperationProps{
				OperationId: "listWidgets",
				Responses: &spec3.Responses{ResponsesProps: spec3.ResponsesProps{StatusCodeResponses: map[int]*spec3.Response{
					200: {ResponseProps: spec3.ResponseProps{Description: "OK", Content: map[string]*spec3.MediaType{
						"application/json": {MediaTypeProps: spec3.MediaTypeProps{Schema: spec.RefSchema("#/components/schemas/" + kind)}},
					}}},
				}}},
			}},
		}}}},
		Components: &spec3.Components{Schemas: map[string]*spec.Schema{kind: {SchemaProps: spec.SchemaProps{
			Type:        []string{"object"},
			Description: strings.Repeat("A widget of "+gv+". ", 500),
		}}}},
	}
}

// openAPIV3Service must answer every request as handler3 does.
func TestOpenAPIV3ServiceAnswersAsHandler3(t *testing.T) {
	gvs := []string{"api/v1", "apis/apps/v1", "apis/example.sublet.dev/v1beta1"}
	upstream := handler3.NewOpenAPIService()
	builds := map[string]func() (*spec3.OpenAPI, error){}
	for _, gv := range gvs {
		upstream.UpdateGroupVersion(gv, testV3Document(gv))
		builds[gv] = func() (*spec3.OpenAPI, error) { return testV3Document(gv), nil }
	}
	ours := newOpenAPIV3Service(builds)
	serve := func(register func(*mux.PathRecorderMux)) http.Handler {
		m := mux.NewPathRecorderMux("test")
		register(m)
		return m
	}
	upstreamHandler := serve(func(m *mux.PathRecorderMux) {
		if err := upstream.RegisterOpenAPIV3VersionedService("/openapi/v3", m); err != nil {
			t.Fatal(err)
		}
	})
	ourHandler := serve(func(m *mux.PathRecorderMux) { ours.register("/openapi/v3", m) })

	do := func(h http.Handler, method, target string, header map[string]string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, target, nil)
		for k, v := range header {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	// The hashes, from upstream's discovery document.
	discovery := do(upstreamHandler, http.MethodGet, "/openapi/v3", nil)
	hashes := map[string]string{}
	for _, gv := range gvs {
		i := strings.Index(discovery.Body.String(), `"/openapi/v3/`+gv+`?hash=`)
		if i < 0 {
			t.Fatalf("upstream's discovery document lists no %s: %s", gv, discovery.Body)
		}
		rest := discovery.Body.String()[i+len(`"/openapi/v3/`+gv+`?hash=`):]
		hashes[gv] = rest[:strings.Index(rest, `"`)]
	}
	apps := "/openapi/v3/apis/apps/v1"
	protobuf := "application/com.github.proto-openapi.spec.v3.v1.0+protobuf"
	requests := []struct {
		method, target string
		header         map[string]string
	}{
		{"GET", "/openapi/v3", nil},
		{"GET", "/openapi/v3", map[string]string{"If-None-Match": `"` + v3ETag(discovery.Body.Bytes()) + `"`}},
		{"HEAD", "/openapi/v3", nil},
		{"GET", apps, nil},
		{"GET", "/openapi/v3/api/v1", map[string]string{"Accept": "application/json"}},
		{"GET", "/openapi/v3/apis/example.sublet.dev/v1beta1", map[string]string{"Accept": "*/*"}},
		{"GET", apps, map[string]string{"Accept": protobuf}},
		{"GET", apps, map[string]string{"Accept": "application/com.github.proto-openapi.spec.v3@v1.0+protobuf"}},
		{"GET", apps, map[string]string{"Accept": "application/json;q=0.5, " + protobuf}},
		{"GET", apps, map[string]string{"Accept": "application/*"}},
		{"GET", apps, map[string]string{"Accept": "text/html"}},
		{"GET", apps + "?hash=" + hashes["apis/apps/v1"], nil},
		{"GET", apps + "?hash=" + hashes["apis/apps/v1"], map[string]string{"Accept": protobuf}},
		{"GET", apps + "?hash=" + hashes["api/v1"], nil},
		{"GET", apps, map[string]string{"If-None-Match": `"` + hashes["apis/apps/v1"] + `"`}},
		{"HEAD", apps, nil},
		{"GET", apps, map[string]string{"Range": "bytes=10-19"}},
	}
	for _, r := range requests {
		want := do(upstreamHandler, r.method, r.target, r.header)
		got := do(ourHandler, r.method, r.target, r.header)
		name := r.method + " " + r.target + " " + r.header["Accept"] + r.header["If-None-Match"] + r.header["Range"]
		if got.Code != want.Code {
			t.Errorf("%s: status %d, upstream %d", name, got.Code, want.Code)
		}
		if got.Body.String() != want.Body.String() {
			t.Errorf("%s: body of %d bytes differs from upstream's %d bytes", name, got.Body.Len(), want.Body.Len())
		}
		for _, h := range []string{"Content-Type", "Etag", "Vary", "Cache-Control", "Location", "Content-Length", "Content-Range"} {
			if g, w := got.Header().Values(h), want.Header().Values(h); strings.Join(g, ",") != strings.Join(w, ",") {
				t.Errorf("%s: %s %q, upstream %q", name, h, g, w)
			}
		}
		for _, h := range []string{"Expires", "Last-Modified"} {
			if (got.Header().Get(h) == "") != (want.Header().Get(h) == "") {
				t.Errorf("%s: %s %q, upstream %q", name, h, got.Header().Get(h), want.Header().Get(h))
			}
		}
	}

	// What is kept is the deflated JSON, a fraction of it.
	d := ours.docs["apis/apps/v1"]
	served := do(ourHandler, "GET", apps, nil).Body.Len()
	if d.json == nil || len(d.json.body)*5 > served {
		t.Errorf("apps/v1 keeps %d bytes for a document of %d", len(d.json.body), served)
	}
	// Unlike upstream, an unknown group-version is not found.
	if rec := do(ourHandler, "GET", "/openapi/v3/apis/nothing/v1", nil); rec.Code != http.StatusNotFound {
		t.Errorf("an unknown group-version: status %d, want 404", rec.Code)
	}
}

// A document that fails to build fails the request and is built again on
// the next.
func TestOpenAPIV3ServiceRetriesFailedBuild(t *testing.T) {
	builds, fail := 0, true
	s := newOpenAPIV3Service(map[string]func() (*spec3.OpenAPI, error){
		"apis/apps/v1": func() (*spec3.OpenAPI, error) {
			builds++
			if fail {
				return nil, errors.New("no routes")
			}
			return testV3Document("apis/apps/v1"), nil
		},
	})
	get := func(target string) int {
		rec := httptest.NewRecorder()
		if target == "/openapi/v3" {
			s.serveDiscovery(rec, httptest.NewRequest("GET", target, nil))
		} else {
			s.serveGroupVersion(rec, httptest.NewRequest("GET", target, nil))
		}
		return rec.Code
	}
	if code := get("/openapi/v3"); code != http.StatusInternalServerError {
		t.Errorf("discovery with a failing document: status %d, want 500", code)
	}
	if code := get("/openapi/v3/apis/apps/v1"); code != http.StatusInternalServerError {
		t.Errorf("a failing document: status %d, want 500", code)
	}
	fail = false
	if code := get("/openapi/v3"); code != http.StatusOK {
		t.Errorf("discovery after the failure: status %d, want 200", code)
	}
	if code := get("/openapi/v3/apis/apps/v1"); code != http.StatusOK {
		t.Errorf("the document after the failure: status %d, want 200", code)
	}
	if builds != 3 {
		t.Errorf("built %d times, want 3 (twice failing, then once)", builds)
	}
}
