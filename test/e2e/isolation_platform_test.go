package e2e

import (
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sublet-dev/sublet/internal/testenv"
)

// TestIsolationPlatformLimits: what one user may spend on the platform
// server is bounded, tried as a team would with only what a platform admin
// hands it (an access key, a Role on VirtualClusters in its own host
// namespace), not as an admin. Sixty access keys in a row stop at the cap
// with a 422 that says how to free one; a burst of access reviews is
// limited (429, Retry-After) for that team alone, not for another; the
// login form refuses a post without its CSRF token, limits failed logins,
// and returns only to a page of this site (next=/\evil.example/ goes to /).
func TestIsolationPlatformLimits(t *testing.T) {
	needHost(t)
	// Small limits for reviews and failed logins, so a test reaches them;
	// the access key cap and key creations keep their defaults.
	const reviews, failedLogins = 20, 3
	p := startPlatform(t, "--access-review-limit", fmt.Sprintf("%d/1h", reviews), "--failed-login-limit", fmt.Sprintf("%d/1h", failedLogins))
	hk := host.Kubeconfig
	teams := map[string]string{}
	for _, team := range []string{"team-t", "team-u"} {
		ns := createNamespace(t, host.Client, team)
		kubectl(t, hk, "", "create", "role", "vc-owner", "-n", ns, "--verb=get,list,watch,create,patch,delete", "--resource=virtualclusters.storage.loft.sh")
		kubectl(t, hk, "", "create", "rolebinding", team, "-n", ns, "--role=vc-owner", "--user="+team)
		teams[team] = ns
	}
	keyT, keyU := accessKey(t, "e2e-team-t", "team-t", nil), accessKey(t, "e2e-team-u", "team-u", nil)

	t.Run("sixty access keys in a row stop at the cap", func(t *testing.T) {
		p.loginAsCLI(t, keyT)
		// team-t has its own key; the default cap is 50.
		created, refused := 0, ""
		for i := 0; i < 60; i++ {
			out, code, err := testenv.Run(time.Minute, "create", "accesskey", "--description", fmt.Sprintf("key %d", i))
			if err != nil {
				t.Fatal(err)
			}
			if code == 0 {
				if refused != "" {
					t.Fatalf("key %d was created after an earlier one was refused:\n%s", i+1, refused)
				}
				created++
				continue
			}
			refused = out
		}
		if created != 49 {
			t.Errorf("team-t created %d keys beside its own, want 49 (the cap of 50)", created)
		}
		for _, want := range []string{`user "team-t" has 50 access keys`, "50 is the most one user may have", "--max-access-keys-per-user",
			"'sublet delete accesskey NAME'", "'sublet list accesskeys'", "(HTTP 422)"} {
			if !strings.Contains(refused, want) {
				t.Errorf("the refusal lacks %q:\n%s", want, refused)
			}
		}
		// Freeing a place, as the message says, lets the next one through.
		list := sublet(t, "list", "accesskeys")
		if n := len(regexp.MustCompile(`(?m)^\S+\s+team-t\s`).FindAllString(list, -1)); n != 50 {
			t.Errorf("sublet list accesskeys shows %d of team-t's keys, want 50:\n%s", n, list)
		}
		name := regexp.MustCompile(`(?m)^(team-t-\S+)`).FindStringSubmatch(list)
		if name == nil {
			t.Fatalf("no key made by the CLI in:\n%s", list)
		}
		sublet(t, "delete", "accesskey", name[1])
		sublet(t, "create", "accesskey", "--description", "after one was deleted")
	})

	t.Run("access reviews are limited per user", func(t *testing.T) {
		c := p.httpClient(t)
		vc := func(team, name string) string {
			return fmt.Sprintf("/kubernetes/virtualcluster/%s/%s/%s/api", p.cluster, teams[team], name)
		}
		// team-t asks about one new virtual cluster after another (its
		// Role allows them all; none exists) until it is limited.
		var limited *http.Response
		var body string
		for i := 0; i <= reviews && limited == nil; i++ {
			resp, b := p.request(t, c, http.MethodGet, vc("team-t", fmt.Sprintf("probe-%d", i)), keyT, nil)
			switch resp.StatusCode {
			case http.StatusNotFound:
			case http.StatusTooManyRequests:
				limited, body = resp, b
			default:
				t.Fatalf("team-t's probe %d: HTTP %d %s", i, resp.StatusCode, b)
			}
		}
		if limited == nil {
			t.Fatalf("team-t made %d access reviews and was never limited", reviews+1)
		}
		if secs, err := strconv.Atoi(limited.Header.Get("Retry-After")); err != nil || secs < 1 {
			t.Errorf("Retry-After %q, want whole seconds", limited.Header.Get("Retry-After"))
		}
		for _, want := range []string{`too many access reviews for user \"team-t\"`, fmt.Sprintf("at most %d per 1h", reviews), "--access-review-limit", "retry in"} {
			if !strings.Contains(body, want) {
				t.Errorf("the 429 lacks %q: %s", want, body)
			}
		}
		// team-u is not held back by team-t's limit.
		if resp, b := p.request(t, c, http.MethodGet, vc("team-u", "probe-0"), keyU, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("team-u while team-t is limited: HTTP %d %s, want its 404", resp.StatusCode, b)
		}
		// A decision team-t already has is reused, limit or not.
		if resp, b := p.request(t, c, http.MethodGet, vc("team-t", "probe-0"), keyT, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("team-t asking again about probe-0: HTTP %d %s, want its 404 again", resp.StatusCode, b)
		}
	})

	t.Run("login form", func(t *testing.T) {
		jar, err := cookiejar.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		c := p.httpClient(t)
		c.Jar = jar
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		form := func(next string) string {
			resp, page := p.request(t, c, http.MethodGet, "/login?next="+url.QueryEscape(next), "", nil)
			m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
			if resp.StatusCode != http.StatusOK || m == nil {
				t.Fatalf("GET /login: HTTP %d, no CSRF token:\n%s", resp.StatusCode, page)
			}
			return m[1]
		}
		post := func(v url.Values) (*http.Response, string) {
			return p.request(t, c, http.MethodPost, "/login", "", strings.NewReader(v.Encode()), "Content-Type", "application/x-www-form-urlencoded")
		}
		// Without the form's token: refused, no session.
		form("/")
		if resp, page := post(url.Values{"key": {keyT}}); resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "CSRF token is missing or does not match") {
			t.Errorf("a login without the CSRF token: HTTP %d\n%s", resp.StatusCode, page)
		}
		// Where a login returns to: a page of this site, else /.
		for next, want := range map[string]string{`/\evil.example/`: "/", "/%09/evil.example/": "/", "//evil.example/": "/", "/accesskeys": "/accesskeys"} {
			resp, page := post(url.Values{"key": {keyT}, "csrf": {form(next)}, "next": {next}})
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
				t.Errorf("login with next=%q: HTTP %d to %q, want 303 to %q\n%s", next, resp.StatusCode, resp.Header.Get("Location"), want, page)
			}
		}
		// Failed logins from one address are limited; a valid key is not.
		token := form("/")
		for i := 1; i <= failedLogins+1; i++ {
			resp, page := post(url.Values{"key": {"slk_wrong"}, "csrf": {token}})
			switch {
			case i <= failedLogins && resp.StatusCode != http.StatusUnauthorized:
				t.Errorf("bad key %d: HTTP %d, want 401", i, resp.StatusCode)
			case i > failedLogins && (resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(page, "too many failed logins from 127.0.0.1")):
				t.Errorf("bad key %d: HTTP %d, Retry-After %q, want 429 saying why\n%s", i, resp.StatusCode, resp.Header.Get("Retry-After"), page)
			}
		}
		if resp, page := post(url.Values{"key": {keyU}, "csrf": {token}}); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("team-u logging in from the limited address: HTTP %d\n%s", resp.StatusCode, page)
		}
	})
}
