package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/platformapi"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// platformAPI serves the platform server's list endpoints with fixed
// answers, to the CLI's access key only. Times are relative to now; the
// replacer turns each back into "<D ago>", so golden files do not change
// with the clock.
func platformAPI(t *testing.T, now time.Time) (*httptest.Server, *strings.Replacer) {
	t.Helper()
	var pairs []string
	ago := func(d time.Duration) string {
		ts := now.Add(-d).UTC().Format(time.RFC3339)
		pairs = append(pairs, ts, "<"+d.String()+" ago>")
		return ts
	}
	answers := map[string]interface{}{
		"/api/v1/clusters": []platformapi.ClusterInfo{
			{Name: "loft-cluster", DisplayName: "Loft cluster", Phase: "Ready", Version: "v1.37.2"},
			{Name: "edge"},
		},
		"/api/v1/virtualclusters": []platformapi.VirtualClusterInfo{
			{Cluster: "loft-cluster", Namespace: "vcluster-demo", Name: "demo", Phase: "Ready", Version: "v1.37", Created: ago(5 * time.Minute), Template: "small"},
			{Cluster: "loft-cluster", Namespace: "team-a", Name: "nightly", Phase: "Sleeping", Version: "v1.35", Created: ago(50 * time.Hour),
				SleepingSince: ago(3 * time.Hour), LastActivity: ago(4 * time.Hour)},
			{Cluster: "edge", Namespace: "vcluster-new", Name: "new", Phase: "Pending"},
		},
		"/api/v1/accesskeys": []platformapi.AccessKeyInfo{
			{Name: "ak-admin", User: "admin", Groups: []string{"system:masters", "ops"}},
			{Name: "ak-ci", User: "ci", Expiration: "2027-01-01T00:00:00Z"},
			{Name: "admin-x7k2p", User: "admin", Groups: []string{"system:masters", "ops"}, KeySHA256: strings.Repeat("ab", 32),
				VirtualCluster: &storagev1.VirtualClusterScope{Cluster: "loft-cluster", Namespace: "vcluster-demo", Name: "demo", UID: "0b8e2c1a-5f7d-4e39-9a61-3c2d4b5e6f70"}},
		},
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer test-key" {
			http.Error(w, "no access key", http.StatusUnauthorized)
			return
		}
		a, ok := answers[r.URL.Path]
		if !ok || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(a)
	}))
	t.Cleanup(srv.Close)
	return srv, strings.NewReplacer(pairs...)
}

// TestListOutputGolden: `sublet list clusters|vclusters|accesskeys -o
// table|json|yaml` print what testdata/list-*.golden holds (go test
// ./internal/cli -update rewrites them; review the diff).
func TestListOutputGolden(t *testing.T) {
	srv, times := platformAPI(t, time.Now())
	cfg := filepath.Join(t.TempDir(), "config.json")
	data, err := json.Marshal(loginConfig{Server: srv.URL, AccessKey: "test-key", Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, data, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SUBLET_CONFIG", cfg)
	for _, what := range []string{"clusters", "vclusters", "accesskeys"} {
		for _, output := range []string{"table", "json", "yaml"} {
			t.Run(what+"-"+output, func(t *testing.T) {
				cmd := newListCommand()
				var out bytes.Buffer
				cmd.SetOut(&out)
				cmd.SetErr(&out)
				cmd.SetArgs([]string{what, "-o", output})
				if err := cmd.Execute(); err != nil {
					t.Fatalf("sublet list %s -o %s: %v\n%s", what, output, err, out.String())
				}
				got := times.Replace(out.String())
				path := filepath.Join("testdata", "list-"+what+"."+output+".golden")
				if *update {
					if err := os.MkdirAll("testdata", 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run go test ./internal/cli -update)", err)
				}
				if got != string(want) {
					t.Errorf("sublet list %s -o %s differs from %s (if intended: go test ./internal/cli -update)\n%s", what, output, path, got)
				}
			})
		}
	}
	// An unknown format is refused, naming the ones there are.
	cmd := newListCommand()
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs([]string{"vclusters", "-o", "xml"})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "table, json or yaml") {
		t.Errorf("-o xml: %v, want an error naming table, json and yaml", err)
	}
}
