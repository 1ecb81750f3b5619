package cli

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// TestMoveVia: --via wins; without it a move goes under the platform's
// move registry, in the cluster's own namespace path, with a tag of its
// time; a platform without one asks for --via.
func TestMoveVia(t *testing.T) {
	registry := ""
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/info" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if registry == "" {
			_, _ = w.Write([]byte(`{}`))
			return
		}
		_, _ = w.Write([]byte(`{"moveRegistry":"` + registry + `"}`))
	}))
	defer srv.Close()
	c := &loginConfig{Server: srv.URL, AccessKey: "k", Insecure: true}
	ctx := context.Background()

	if got, err := moveVia(ctx, c, "oci://reg.example/own/team-a/x:1", "team-a", "x"); err != nil || got != "oci://reg.example/own/team-a/x:1" {
		t.Errorf("with --via: %q, %v", got, err)
	}
	if _, err := moveVia(ctx, c, "", "team-a", "x"); err == nil || !strings.Contains(err.Error(), "--via is required") || !strings.Contains(err.Error(), "--move-registry") {
		t.Errorf("without a move registry: %v", err)
	}
	registry = "reg.example:5000/moves"
	got, err := moveVia(ctx, c, "", "team-a", "x")
	if err != nil || !regexp.MustCompile(`^oci://reg\.example:5000/moves/team-a/x:move-\d{8}-\d{6}$`).MatchString(got) {
		t.Errorf("under the move registry: %q, %v", got, err)
	}
}
