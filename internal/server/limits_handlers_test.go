package server

import (
	"github.com/sublet-dev/sublet/internal/platformapi"

	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
)

// testLimits are small enough to reach in a test.
var testLimits = Limits{
	AccessKeysPerUser: 4,
	SessionsPerUser:   2,
	AccessReviews:     Rate{N: 8, Per: time.Hour},
	KeyCreations:      Rate{N: 6, Per: time.Hour},
	FailedLogins:      Rate{N: 3, Per: time.Hour},
}

// The web UI's cookies (internal/ui): the login form's CSRF token, the
// session.
const (
	loginCookie   = "sublet_login"
	sessionCookie = "sublet_session"
)

// csrfField finds a form's CSRF token.
var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// TestLimits drives the limits on what one user may spend against a real
// API server: the access key cap (keys made for a user by another count
// against that user) and the bounds of a key's fields, the rate limits on
// key creations, access reviews and failed logins, each per user (or
// client address, or key) so that one user at a limit does not slow
// another, and the web UI's login form: its CSRF token, where it returns
// to, and the sessions per user.
func TestLimits(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := startTestPlatform(ctx, t, testLimits,
		testKey{name: "alice", user: "alice"}, testKey{name: "bob", user: "bob"}, testKey{name: "carol", user: "carol"},
		testKey{name: "root", user: "root", groups: []string{"system:masters"}})
	keys := p.keys
	createKey := func(key string, req platformapi.AccessKeyRequest) (int, string, http.Header) {
		return p.do(ctx, t, http.MethodPost, key, "/api/v1/accesskeys", req)
	}
	want := func(what string, code int, body string, h http.Header, wantCode int, wantText ...string) {
		t.Helper()
		if code != wantCode {
			t.Errorf("%s: HTTP %d, want %d: %s", what, code, wantCode, body)
			return
		}
		for _, w := range wantText {
			if !strings.Contains(body, w) {
				t.Errorf("%s: %s\nlacks %q", what, body, w)
			}
		}
		if wantCode == http.StatusTooManyRequests {
			if secs, err := strconv.Atoi(h.Get("Retry-After")); err != nil || secs < 1 {
				t.Errorf("%s: Retry-After %q, want whole seconds", what, h.Get("Retry-After"))
			}
		}
	}

	t.Run("access key cap", func(t *testing.T) {
		// carol has one key; three more reach the cap of 4.
		for i := 0; i < 3; i++ {
			code, body, h := createKey(keys["carol"], platformapi.AccessKeyRequest{Description: fmt.Sprintf("key %d", i)})
			want(fmt.Sprintf("carol's key %d", i+2), code, body, h, http.StatusCreated, `"user":"carol"`)
		}
		code, body, h := createKey(keys["carol"], platformapi.AccessKeyRequest{})
		want("carol's fifth key", code, body, h, http.StatusUnprocessableEntity,
			`user \"carol\" has 4 access keys`, "4 is the most one user may have", "--max-access-keys-per-user",
			"sublet delete accesskey NAME", "sublet list accesskeys")
		// A key made for carol by an admin counts against carol.
		code, body, h = createKey(keys["root"], platformapi.AccessKeyRequest{User: "carol"})
		want("root's key for carol", code, body, h, http.StatusUnprocessableEntity, `user \"carol\" has 4 access keys`)
		// Deleting one frees a place.
		if code, body, _ := p.do(ctx, t, http.MethodDelete, keys["carol"], "/api/v1/accesskeys/ak-carol", nil); code != http.StatusOK {
			t.Fatalf("carol deleting a key: HTTP %d %s", code, body)
		}
		code, body, h = createKey(keys["root"], platformapi.AccessKeyRequest{User: "carol"})
		want("root's key for carol once she deleted one", code, body, h, http.StatusCreated, `"user":"carol"`)
	})

	t.Run("access key fields", func(t *testing.T) {
		for _, tc := range []struct {
			req  platformapi.AccessKeyRequest
			text string
		}{
			{platformapi.AccessKeyRequest{User: strings.Repeat("u", maxKeyUserLength+1)}, "longer than the 256 a key's user may have"},
			{platformapi.AccessKeyRequest{User: "root", Groups: make([]string, maxKeyGroups+1)}, "at most 32 groups; 33 were given"},
			{platformapi.AccessKeyRequest{Description: strings.Repeat("d", maxKeyDescriptionLength+1)}, "description is 1025 characters long"},
			{platformapi.AccessKeyRequest{TTL: "100000h"}, "leave --ttl out for a key that does not expire"},
		} {
			code, body, h := createKey(keys["root"], tc.req)
			want("a key with "+tc.text, code, body, h, http.StatusUnprocessableEntity, tc.text)
		}
	})

	t.Run("key creations per user", func(t *testing.T) {
		// root has made one key (for carol); five more for users with
		// room reach root's limit of 6.
		for i := 0; i < 5; i++ {
			code, body, h := createKey(keys["root"], platformapi.AccessKeyRequest{User: fmt.Sprintf("team-%d", i)})
			want(fmt.Sprintf("root's key for team-%d", i), code, body, h, http.StatusCreated)
		}
		code, body, h := createKey(keys["root"], platformapi.AccessKeyRequest{User: "team-5"})
		want("root's seventh key", code, body, h, http.StatusTooManyRequests,
			`too many access keys created by user \"root\": at most 6 per 1h`, "--access-key-create-limit 6/1h", "retry in")
		// bob's own bucket is full.
		code, body, h = createKey(keys["bob"], platformapi.AccessKeyRequest{})
		want("bob's key while root is limited", code, body, h, http.StatusCreated, `"user":"bob"`)
	})

	t.Run("access reviews per user", func(t *testing.T) {
		vc := func(name string) string { return "/kubernetes/virtualcluster/local/team/" + name + "/api" }
		// One virtual cluster to list (no agent runs it).
		if err := p.s.mgmt.Create(ctx, &storagev1.VirtualCluster{ObjectMeta: metav1.ObjectMeta{Name: "listed", Namespace: "team"}}); err != nil {
			t.Fatal(err)
		}
		// bob, forbidden, asks again and again for the same one: the
		// denial is reused, no review is asked for, he is never limited.
		for i := 0; i <= testLimits.AccessReviews.N; i++ {
			code, body, h := p.do(ctx, t, http.MethodGet, keys["bob"], vc("demo"), nil)
			want("bob asking again", code, body, h, http.StatusForbidden, `user \"bob\" may not use virtual cluster team/demo`)
		}
		// alice asks about as many new names as her limit allows (her Role
		// allows them; none exist), then one more: limited.
		for i := 0; i < testLimits.AccessReviews.N; i++ {
			code, body, h := p.do(ctx, t, http.MethodGet, keys["alice"], vc(fmt.Sprintf("vc-%d", i)), nil)
			want(fmt.Sprintf("alice's review %d", i+1), code, body, h, http.StatusNotFound, "does not exist")
		}
		code, body, h := p.do(ctx, t, http.MethodGet, keys["alice"], vc("vc-new"), nil)
		want("alice's review over the limit", code, body, h, http.StatusTooManyRequests,
			`too many access reviews for user \"alice\": at most 8 per 1h`, "--access-review-limit 8/1h", "each decision is reused for 5s", "retry in")
		// A decision she has is reused: not limited.
		code, body, h = p.do(ctx, t, http.MethodGet, keys["alice"], vc("vc-0"), nil)
		want("alice asking again about vc-0", code, body, h, http.StatusNotFound, "does not exist")
		// Her list of virtual clusters needs a review: limited too.
		code, body, h = p.do(ctx, t, http.MethodGet, keys["alice"], "/api/v1/virtualclusters", nil)
		want("alice's list", code, body, h, http.StatusTooManyRequests, `too many access reviews for user \"alice\"`)
		// bob is not slowed by alice's limit: his reviews are answered at once.
		start := time.Now()
		code, body, h = p.do(ctx, t, http.MethodGet, keys["bob"], vc("other"), nil)
		want("bob while alice is limited", code, body, h, http.StatusForbidden, `user \"bob\" may not use virtual cluster team/other`)
		code, body, h = p.do(ctx, t, http.MethodGet, keys["bob"], "/api/v1/virtualclusters", nil)
		want("bob's list while alice is limited", code, body, h, http.StatusOK, "[]")
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("bob's two requests took %s while alice was limited", d)
		}
	})

	serve := func(r *http.Request) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		p.s.ServeHTTP(w, r)
		return w
	}
	t.Run("failed logins", func(t *testing.T) {
		bearer := func(addr, key string) *httptest.ResponseRecorder {
			r := httptest.NewRequest(http.MethodGet, "/api/v1/whoami", nil)
			r.RemoteAddr, r.Header["Authorization"] = addr, []string{"Bearer " + key}
			return serve(r)
		}
		// From one address: three bad keys are told 401, the fourth 429.
		for i := 0; i < 3; i++ {
			w := bearer("192.0.2.1:1000", fmt.Sprintf("slk_bad-%d", i))
			want("bad key", w.Code, w.Body.String(), w.Header(), http.StatusUnauthorized, "a valid access key is required")
		}
		w := bearer("192.0.2.1:1001", "slk_bad-3")
		want("fourth bad key from one address", w.Code, w.Body.String(), w.Header(), http.StatusTooManyRequests,
			"too many failed logins from 192.0.2.1: at most 3 per 1h", "--failed-login-limit 3/1h", "sublet create accesskey")
		// A valid key from that address is never refused by it.
		w = bearer("192.0.2.1:1002", keys["bob"])
		want("bob from the limited address", w.Code, w.Body.String(), w.Header(), http.StatusOK, `"user":"bob"`)
		// One bad key from many addresses: limited by the key.
		for i := 0; i < 3; i++ {
			w := bearer(fmt.Sprintf("198.51.100.%d:1000", i), "slk_revoked")
			want("a revoked key", w.Code, w.Body.String(), w.Header(), http.StatusUnauthorized)
		}
		w = bearer("198.51.100.9:1000", "slk_revoked")
		want("a revoked key from a fourth address", w.Code, w.Body.String(), w.Header(), http.StatusTooManyRequests, "too many failed logins with this key")
		// Another address with another bad key is not limited.
		w = bearer("203.0.113.1:1000", "slk_typo")
		want("another client's bad key", w.Code, w.Body.String(), w.Header(), http.StatusUnauthorized)
	})

	t.Run("login form", func(t *testing.T) {
		addr := "203.0.113.50:4000"
		loginForm := func(next, wantNext string) (token string, cookie *http.Cookie) {
			r := httptest.NewRequest(http.MethodGet, "/login?next="+url.QueryEscape(next), nil)
			r.RemoteAddr = addr
			w := serve(r)
			m := csrfField.FindStringSubmatch(w.Body.String())
			for _, c := range w.Result().Cookies() {
				if c.Name == loginCookie {
					cookie = c
				}
			}
			if w.Code != http.StatusOK || m == nil || cookie == nil || cookie.Value != m[1] || !cookie.HttpOnly || !cookie.Secure || cookie.SameSite != http.SameSiteStrictMode {
				t.Fatalf("GET /login: HTTP %d, token %v, cookie %+v", w.Code, m, cookie)
			}
			if !strings.Contains(w.Body.String(), `name="next" value="`+wantNext+`"`) {
				t.Errorf("GET /login?next=%q does not carry next %q on: %s", next, wantNext, w.Body.String())
			}
			return m[1], cookie
		}
		post := func(form url.Values, cookies ...*http.Cookie) *httptest.ResponseRecorder {
			r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(form.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.RemoteAddr = addr
			for _, c := range cookies {
				r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
			}
			return serve(r)
		}
		token, cookie := loginForm("/accesskeys", "/accesskeys")
		for _, tc := range []struct {
			name    string
			form    url.Values
			cookies []*http.Cookie
		}{
			{"no token", url.Values{"key": {keys["bob"]}}, []*http.Cookie{cookie}},
			{"no cookie", url.Values{"key": {keys["bob"]}, "csrf": {token}}, nil},
			{"another token", url.Values{"key": {keys["bob"]}, "csrf": {strings.Repeat("x", len(token))}}, []*http.Cookie{cookie}},
		} {
			w := post(tc.form, tc.cookies...)
			want("login with "+tc.name, w.Code, w.Body.String(), w.Header(), http.StatusForbidden, "CSRF token is missing or does not match")
			for _, c := range w.Result().Cookies() {
				if c.Name == sessionCookie {
					t.Errorf("login with %s made a session", tc.name)
				}
			}
		}
		// The way back after logging in stays on this site.
		for next, location := range map[string]string{"/accesskeys": "/accesskeys", `/\evil.example/`: "/", "/%09/evil.example/": "/", "//evil.example/": "/"} {
			token, cookie := loginForm(next, location)
			w := post(url.Values{"key": {keys["bob"]}, "csrf": {token}, "next": {next}}, cookie)
			if w.Code != http.StatusSeeOther || w.Header().Get("Location") != location {
				t.Errorf("login with next=%q: HTTP %d to %q, want 303 to %q", next, w.Code, w.Header().Get("Location"), location)
			}
		}
		// Bad keys on the form count as failed logins from the address.
		for i := 0; i < 3; i++ {
			w := post(url.Values{"key": {"slk_wrong"}, "csrf": {token}}, cookie)
			want("a bad key on the form", w.Code, w.Body.String(), w.Header(), http.StatusUnauthorized, "That access key is not valid")
		}
		w := post(url.Values{"key": {"slk_wrong"}, "csrf": {token}}, cookie)
		want("a fourth bad key on the form", w.Code, w.Body.String(), w.Header(), http.StatusTooManyRequests, "too many failed logins from 203.0.113.50")
	})

	t.Run("sessions per user", func(t *testing.T) {
		login := func(key string) *http.Cookie {
			r := httptest.NewRequest(http.MethodGet, "/login", nil)
			w := serve(r)
			token := csrfField.FindStringSubmatch(w.Body.String())[1]
			form := url.Values{"key": {key}, "csrf": {token}}
			r = httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(form.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.AddCookie(&http.Cookie{Name: loginCookie, Value: token})
			w = serve(r)
			for _, c := range w.Result().Cookies() {
				if c.Name == sessionCookie {
					return c
				}
			}
			t.Fatalf("login: HTTP %d, no session: %s", w.Code, w.Body.String())
			return nil
		}
		loggedIn := func(c *http.Cookie) bool {
			r := httptest.NewRequest(http.MethodGet, "/clusters", nil)
			r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
			return serve(r).Code == http.StatusOK
		}
		bob := login(keys["bob"])
		a1, a2, a3 := login(keys["alice"]), login(keys["alice"]), login(keys["alice"])
		if loggedIn(a1) {
			t.Errorf("alice's first session outlived her third login over a cap of 2")
		}
		if !loggedIn(a2) || !loggedIn(a3) || !loggedIn(bob) {
			t.Errorf("logged in: alice's second %v, third %v, bob %v; want all", loggedIn(a2), loggedIn(a3), loggedIn(bob))
		}
	})
}
