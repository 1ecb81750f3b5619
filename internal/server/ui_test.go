package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
)

// TestWebUILogin: the web UI, a client of this server's API, logs a key
// in as the server did when it held the UI: a session that ends with its
// key, the outer request's audit record naming the user, and a key scoped
// to a virtual cluster turned away with the cluster named.
func TestWebUILogin(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	soon := metav1.NewTime(time.Now().Add(time.Hour).Truncate(time.Second))
	p := startTestPlatform(ctx, t, Limits{},
		testKey{name: "alice", user: "alice"}, testKey{name: "soon", user: "alice", expires: &soon},
		testKey{name: "scoped", user: "alice", scope: &storagev1.VirtualClusterScope{Cluster: "local", Namespace: "team", Name: "demo"}})
	serve := func(r *http.Request) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		p.s.ServeHTTP(w, r)
		return w
	}
	login := func(key string) *httptest.ResponseRecorder {
		w := serve(httptest.NewRequest(http.MethodGet, "/login", nil))
		token := csrfField.FindStringSubmatch(w.Body.String())[1]
		form := url.Values{"key": {key}, "csrf": {token}}
		r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.AddCookie(&http.Cookie{Name: loginCookie, Value: token})
		return serve(r)
	}
	session := func(w *httptest.ResponseRecorder) *http.Cookie {
		for _, c := range w.Result().Cookies() {
			if c.Name == sessionCookie {
				return c
			}
		}
		return nil
	}

	w := login(p.keys["alice"])
	sess := session(w)
	if w.Code != http.StatusSeeOther || sess == nil {
		t.Fatalf("alice's login: HTTP %d, session %v: %s", w.Code, sess, w.Body.String())
	}
	r := httptest.NewRequest(http.MethodGet, "/clusters", nil)
	r.AddCookie(&http.Cookie{Name: sess.Name, Value: sess.Value})
	if w := serve(r); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "local") {
		t.Errorf("GET /clusters in alice's session: HTTP %d: %s", w.Code, w.Body.String())
	}
	var page, call bool
	for _, rec := range p.audit.records() {
		page = page || rec["path"] == "/clusters" && rec["user"] == "alice" && rec["status"] == float64(http.StatusOK)
		call = call || rec["path"] == "/api/v1/clusters" && rec["user"] == "alice" && rec["accessKey"] == "ak-alice"
	}
	if !page || !call {
		t.Errorf("audit records: of the page as alice %v, of its call to the API as alice %v; want both:\n%v", page, call, p.audit.records())
	}

	// A session ends with its key.
	w = login(p.keys["soon"])
	if sess := session(w); sess == nil || !sess.Expires.Equal(soon.Time) {
		t.Errorf("the session of a key expiring at %s: %+v, want it to expire then", soon.Time, sess)
	}

	w = login(p.keys["scoped"])
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "That access key is scoped to virtual cluster local/team/demo") || session(w) != nil {
		t.Errorf("a scoped key's login: HTTP %d: %s", w.Code, w.Body.String())
	}
}
