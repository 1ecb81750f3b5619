package bench

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// BenchmarkUIList: `sublet up`, SUBLET_BENCH_UI_VCS (100) VirtualClusters
// (with values the agent refuses, so none starts a control plane: the list
// renders 100 rows without 100 control planes), then SUBLET_BENCH_UI_GETS
// (200) GETs of the web UI's list page with a logged-in session; p50/p99
// of the time to the whole page.
func BenchmarkUIList(b *testing.B) {
	n, gets := envInt("SUBLET_BENCH_UI_VCS", 100), envInt("SUBLET_BENCH_UI_GETS", 200)
	stateDir, _, stop := upForBench(b)
	defer stop()
	hostKC := filepath.Join(stateDir, "host", "admin.kubeconfig")
	var manifest strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&manifest, "---\napiVersion: storage.loft.sh/v1\nkind: VirtualCluster\nmetadata: {name: row-%d, namespace: default}\nspec:\n  helmRelease:\n    values: \"notAValue: 1\"\n", i)
	}
	cmd := exec.Command("kubectl", "--kubeconfig", hostKC, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("apply: %v\n%s", err, out)
	}
	key, err := os.ReadFile(filepath.Join(stateDir, "admin.key"))
	if err != nil {
		b.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(stateDir, "server", "pki", "ca.crt"))
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	base := serverURL(b)
	// The login form's CSRF token comes with the form (and its cookie).
	resp, err := c.Get(base + "/login")
	if err != nil {
		b.Fatal(err)
	}
	form, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	token := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(form)
	if token == nil {
		b.Fatalf("the login form has no CSRF token:\n%s", form)
	}
	resp, err = c.PostForm(base+"/login", url.Values{"key": {strings.TrimSpace(string(key))}, "csrf": {string(token[1])}})
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	get := func() (time.Duration, int) {
		start := time.Now()
		resp, err := c.Get(base + "/")
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("GET /: HTTP %d\n%s", resp.StatusCode, body)
		}
		return time.Since(start), strings.Count(string(body), `href="/vc/`)
	}
	if _, rows := get(); rows < n {
		b.Fatalf("the list shows %d rows, want %d", rows, n)
	}
	var lat []float64
	b.ResetTimer()
	for i := 0; i < gets; i++ {
		d, _ := get()
		lat = append(lat, float64(d.Microseconds())/1000)
	}
	b.StopTimer()
	sort.Float64s(lat)
	b.ReportMetric(pct(lat, 50), "ms-list-p50")
	b.ReportMetric(pct(lat, 99), "ms-list-p99")
	b.ReportMetric(0, "ns/op")
}

// serverURL reads the platform server's address from the CLI login that
// `sublet up` wrote.
func serverURL(b *testing.B) string {
	b.Helper()
	data, err := os.ReadFile(os.Getenv("SUBLET_CONFIG"))
	if err != nil {
		b.Fatal(err)
	}
	s := string(data)
	i := strings.Index(s, "https://")
	if i < 0 {
		b.Fatalf("no server in %s", s)
	}
	return strings.SplitN(s[i:], `"`, 2)[0]
}
