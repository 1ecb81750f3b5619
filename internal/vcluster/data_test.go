package vcluster

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/klog/v2"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/controlplane"
	"github.com/sublet-dev/sublet/internal/snapshot"
)

// TestDataEndpoint: only requests with the token reach the data dir; a
// PUT of a data dir commits it as the replacement and restarts the
// runtime, and one holding what no restored data dir holds is refused
// and leaves nothing.
func TestDataEndpoint(t *testing.T) {
	data := t.TempDir()
	restarts := 0
	d, err := newDataEndpoint(data, func() { restarts++ }, klog.Background())
	if err != nil {
		t.Fatal(err)
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := d.Wrap(next)
	do := func(method, token string, body []byte) int {
		req := httptest.NewRequest(method, storagev1.DataPath, bytes.NewReader(body))
		if token != "" {
			req.Header.Set(storagev1.DataTokenHeader, token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	tree := func(files map[string]string) []byte {
		dir := t.TempDir()
		for name, content := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		var buf bytes.Buffer
		if err := snapshot.WriteTree(&buf, dir); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	good := tree(map[string]string{controlplane.MarkerFile: `{"datastore":"sqlite"}`, "db/state.db": "x", "pki/ca.crt": "c"})

	for _, token := range []string{"", "wrong"} {
		for _, method := range []string{http.MethodGet, http.MethodPut} {
			if code := do(method, token, good); code != http.StatusForbidden {
				t.Errorf("%s with token %q: %d, want 403", method, token, code)
			}
		}
	}
	if rec := httptest.NewRecorder(); true {
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api", nil))
		if rec.Code != http.StatusTeapot {
			t.Errorf("another path: %d, want it passed on", rec.Code)
		}
	}
	if restarts != 0 {
		t.Fatal("a refused request restarted the runtime")
	}

	bad := tree(map[string]string{controlplane.MarkerFile: `{"datastore":"sqlite"}`, "db/state.db": "x", "admin.kubeconfig": "evil"})
	if code := do(http.MethodPut, d.token, bad); code != http.StatusBadRequest {
		t.Errorf("PUT of a data dir with admin.kubeconfig: %d, want 400", code)
	}
	if code := do(http.MethodPut, d.token, good[:600]); code != http.StatusBadRequest {
		t.Errorf("PUT of a cut tar: %d, want 400", code)
	}
	if entries, _ := os.ReadDir(data); len(entries) != 0 || restarts != 0 {
		t.Fatalf("refused PUTs left %v, restarts %d", entries, restarts)
	}

	if code := do(http.MethodPut, d.token, good); code != http.StatusNoContent || restarts != 1 {
		t.Fatalf("PUT of a data dir: %d, restarts %d; want 204 and a restart", code, restarts)
	}
	if done, err := controlplane.FinishReplacement(data); !done || err != nil {
		t.Fatalf("FinishReplacement after the PUT: %v, %v", done, err)
	}
	if got, _ := os.ReadFile(filepath.Join(data, "db", "state.db")); string(got) != "x" {
		t.Errorf("the data dir's datastore after the replacement: %q", got)
	}
}
