// Package ui is the platform's web UI: server-rendered pages from files
// embedded in the binary, a little script for live updates. A session
// holds the user's access key in this process's memory only; every page
// and action is a call, with that key, to the platform's API over an
// in-process transport (the same handlers the CLI uses: the API and the
// proxies), so the same authentication, RBAC gate, limits and audit apply
// and no UI path goes around them.
package ui

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"

	"github.com/sublet-dev/sublet/internal/platformapi"
)

//go:embed web
var files embed.FS

// Options are what the UI needs of the server it is part of.
type Options struct {
	// API serves the platform's API and proxies; the UI calls it, in this
	// process, as its users.
	API http.Handler
	// SessionsPerUser bounds one user's sessions: a login past it ends
	// the user's oldest.
	SessionsPerUser int
	// CA returns the PEM of the CA clients trust for the server, nil if it
	// has none of its own; kubeconfigs made on the Connect page carry it.
	CA func() []byte
}

// UI is the web UI's http.Handler. Patterns lists what it serves, for the
// server to mount it at those paths.
type UI struct {
	pages    map[string]*template.Template
	mux      *http.ServeMux
	patterns []string
	sessions *sessionStore
	client   *http.Client
	ca       func() []byte
}

// New parses the UI's pages and prepares its handlers.
func New(o Options) (*UI, error) {
	u := &UI{pages: map[string]*template.Template{}, mux: http.NewServeMux(), sessions: newSessionStore(o.SessionsPerUser), ca: o.CA,
		client: &http.Client{
			Transport: handlerTransport{handler: o.API},
			// The API does not redirect; a redirect is the reply.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}}
	if u.ca == nil {
		u.ca = func() []byte { return nil }
	}
	if err := u.parsePages(); err != nil {
		return nil, err
	}
	static, err := fs.Sub(files, "web/static")
	if err != nil {
		return nil, err
	}
	for _, rt := range u.routes(http.StripPrefix("/static/", http.FileServer(http.FS(static)))) {
		u.mux.Handle(rt.pattern, rt.handler)
		u.patterns = append(u.patterns, rt.pattern)
	}
	return u, nil
}

func (u *UI) parsePages() error {
	funcs := template.FuncMap{"age": platformapi.Age, "join": strings.Join}
	pages, err := fs.Glob(files, "web/*.html")
	if err != nil {
		return err
	}
	for _, p := range pages {
		name := strings.TrimSuffix(strings.TrimPrefix(p, "web/"), ".html")
		if name == "base" {
			continue
		}
		t, err := template.New("base.html").Funcs(funcs).ParseFS(files, "web/base.html", p)
		if err != nil {
			return fmt.Errorf("ui page %s: %w", p, err)
		}
		u.pages[name] = t
	}
	return nil
}

type route struct {
	pattern string
	handler http.Handler
}

func (u *UI) routes(static http.Handler) []route {
	return []route{
		{"GET /static/", static},
		{"GET /login", http.HandlerFunc(u.loginPage)},
		{"POST /login", http.HandlerFunc(u.login)},
		{"POST /logout", u.page(u.logout)},
		{"GET /{$}", u.page(u.listPage)},
		{"GET /new", u.page(u.newPage)},
		{"POST /new", u.page(u.create)},
		{"GET /vc/{cluster}/{namespace}/{name}", u.page(u.detailPage)},
		{"POST /vc/{cluster}/{namespace}/{name}/{action}", u.page(u.vcAction)},
		{"GET /download/{id}", u.page(u.downloadKubeconfig)},
		{"GET /templates", u.page(u.templatesPage)},
		{"GET /templates/{cluster}/{name}", u.page(u.templatePage)},
		{"GET /accesskeys", u.page(u.keysPage)},
		{"POST /accesskeys", u.page(u.createKey)},
		{"POST /accesskeys/{name}/revoke", u.page(u.revokeKey)},
		{"GET /clusters", u.page(u.clustersPage)},
	}
}

// Patterns are the http.ServeMux patterns the UI serves.
func (u *UI) Patterns() []string { return append([]string(nil), u.patterns...) }

func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) { u.mux.ServeHTTP(w, r) }

// pageData is what every page template gets.
type pageData struct {
	Title, Nav string
	User       *platformapi.User
	CSRF       string
	Flash      string
	Error      string
	Data       interface{}
}

// sessionPage is pageData of a page for sess.
func sessionPage(sess *session, title, nav string, data interface{}) pageData {
	return pageData{Title: title, Nav: nav, User: sess.user, CSRF: sess.csrf, Data: data}
}

// render writes page name with data, with headers that keep the page to
// its own origin.
func (u *UI) render(w http.ResponseWriter, code int, name string, d pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Cache-Control", "no-store")
	var buf bytes.Buffer
	tmpl := "base.html"
	if page, ok := map[string]string{"rows": "list", "status": "detail", "snapshots": "detail"}[name]; ok {
		tmpl, name = name, page // a fragment for live updates
	}
	if err := u.pages[name].ExecuteTemplate(&buf, tmpl, d); err != nil {
		http.Error(w, "render "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(code)
	_, _ = buf.WriteTo(w)
}

// failPage renders an error page with the call's status (403 stays 403).
func (u *UI) failPage(w http.ResponseWriter, sess *session, title string, err error) {
	d := sessionPage(sess, title, "", nil)
	d.Error = err.Error()
	u.render(w, problemCode(err), "error", d)
}

type pageFunc func(w http.ResponseWriter, r *http.Request, sess *session)

// page wraps a UI handler: without a valid session (or once its key is no
// longer valid) it sends the browser to the login page; a POST must carry
// the session's CSRF token.
func (u *UI) page(h pageFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess := u.sessions.get(r)
		if sess != nil {
			if who, err := u.whoami(r, sess.key); err == nil && who.Scope == nil {
				sess.user = who
			} else {
				u.sessions.drop(sess.id)
				sess = nil
			}
		}
		if sess == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			http.Error(w, "your session ended: log in again", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost && subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(sess.csrf)) != 1 {
			http.Error(w, "the form's CSRF token is missing or wrong: reload the page and try again", http.StatusForbidden)
			return
		}
		h(w, r, sess)
	}
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
