package ui

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sublet-dev/sublet/internal/platformapi"
)

const (
	// loginCookie holds the login form's CSRF token. There is no session
	// yet to hold it: the form echoes the cookie's value, which another
	// site can neither read nor send (SameSite=Strict).
	loginCookie = "sublet_login"
	// loginFormLifetime is how long a login form may be sent.
	loginFormLifetime = time.Hour
)

// renderLogin renders the login page with a CSRF token, the one of the
// browser's login cookie if it has one (two tabs both work), else a new
// one set as that cookie.
func (u *UI) renderLogin(w http.ResponseWriter, r *http.Request, code int, next, problem string) {
	token := randomToken()
	if c, err := r.Cookie(loginCookie); err == nil && len(c.Value) == len(token) {
		token = c.Value
	}
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: token, Path: "/login", MaxAge: int(loginFormLifetime.Seconds()),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	u.render(w, code, "login", pageData{Title: "Log in", Error: problem, CSRF: token, Data: safeNext(next)})
}

func (u *UI) loginPage(w http.ResponseWriter, r *http.Request) {
	u.renderLogin(w, r, http.StatusOK, r.URL.Query().Get("next"), "")
}

// login checks the form's CSRF token, then its key with the API (where a
// failed key counts against the client's address and that key, 429 past
// the limit). A new session over the user's cap ends their oldest.
func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimSpace(r.PostFormValue("key"))
	next := safeNext(r.PostFormValue("next"))
	c, err := r.Cookie(loginCookie)
	if sent := r.PostFormValue("csrf"); err != nil || sent == "" || subtle.ConstantTimeCompare([]byte(sent), []byte(c.Value)) != 1 {
		u.renderLogin(w, r, http.StatusForbidden, next,
			"This login form's CSRF token is missing or does not match this browser's: the form is older than an hour, or was sent from another page. Log in with the form below.")
		return
	}
	who, err := u.whoami(r, key)
	if err != nil {
		u.refuseLogin(w, r, next, err)
		return
	}
	expires := time.Now().Add(sessionLifetime)
	if t, err := time.Parse(time.RFC3339, who.Expiration); err == nil && t.Before(expires) {
		expires = t
	}
	sess := &session{id: randomToken(), key: key, csrf: randomToken(), user: who, expires: expires, downloads: map[string]download{}}
	if err := u.sessions.add(sess); err != nil {
		u.renderLogin(w, r, http.StatusServiceUnavailable, next, "Not logged in: "+err.Error()+" ("+strconv.Itoa(maxSessions)+"); try again once some have ended, or use the CLI.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: sess.id, Path: "/", Expires: expires,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// refuseLogin renders the login page for a key the API did not take: not
// valid (401), past a rate limit (429, with its Retry-After), scoped to a
// virtual cluster (403), or the call failed.
func (u *UI) refuseLogin(w http.ResponseWriter, r *http.Request, next string, err error) {
	var ce *callError
	errors.As(err, &ce)
	switch {
	case ce != nil && ce.code == http.StatusTooManyRequests:
		if ce.retryAfter != "" {
			w.Header().Set("Retry-After", ce.retryAfter)
		}
		u.renderLogin(w, r, http.StatusTooManyRequests, next, "Not logged in: "+ce.msg+".")
	case ce != nil && ce.code == http.StatusUnauthorized:
		u.renderLogin(w, r, http.StatusUnauthorized, next,
			"That access key is not valid: it is unknown, expired or revoked. Create one with 'sublet create accesskey'.")
	case ce != nil && ce.code == http.StatusForbidden && scopedTo(ce) != "":
		u.renderLogin(w, r, http.StatusForbidden, next, fmt.Sprintf(
			"That access key is scoped to virtual cluster %s: it is good for that cluster's Kubernetes API alone (as a kube-context's token), not for the web UI. Log in with a key of your own.", scopedTo(ce)))
	default:
		u.renderLogin(w, r, http.StatusUnauthorized, next, "Logging in failed: "+err.Error())
	}
}

// scopedTo is the virtual cluster (CLUSTER/NAMESPACE/NAME) the API's
// refusal names as the one the key is scoped to, "" if none.
func scopedTo(ce *callError) string {
	if d := ce.details; d != nil && d.Kind == platformapi.ScopedKeyKind {
		return d.Name
	}
	return ""
}

func (u *UI) logout(w http.ResponseWriter, r *http.Request, sess *session) {
	u.sessions.drop(sess.id)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}
