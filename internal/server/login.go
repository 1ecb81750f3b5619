package server

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
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
func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, code int, next, problem string) {
	token := randomToken()
	if c, err := r.Cookie(loginCookie); err == nil && len(c.Value) == len(token) {
		token = c.Value
	}
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: token, Path: "/login", MaxAge: int(loginFormLifetime.Seconds()),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	s.render(w, code, "login", pageData{Title: "Log in", Error: problem, CSRF: token, Data: safeNext(next)})
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.renderLogin(w, r, http.StatusOK, r.URL.Query().Get("next"), "")
}

// login checks the form's CSRF token, then its key; a failed key counts
// against the client's address and that key (429 past the limit). A new
// session over the user's cap ends their oldest.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimSpace(r.PostFormValue("key"))
	next := safeNext(r.PostFormValue("next"))
	c, err := r.Cookie(loginCookie)
	if sent := r.PostFormValue("csrf"); err != nil || sent == "" || subtle.ConstantTimeCompare([]byte(sent), []byte(c.Value)) != 1 {
		s.renderLogin(w, r, http.StatusForbidden, next,
			"This login form's CSRF token is missing or does not match this browser's: the form is older than an hour, or was sent from another page. Log in with the form below.")
		return
	}
	u, err := s.authenticateKey(r.Context(), key)
	if errors.Is(err, errUnauthorized) {
		var limited *limitError
		if errors.As(s.limiter.failedLogin(r.RemoteAddr, key), &limited) {
			w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(limited.retryAfter)))
			s.renderLogin(w, r, http.StatusTooManyRequests, next, "Not logged in: "+limited.Error()+".")
			return
		}
	}
	if err != nil {
		msg := "That access key is not valid: it is unknown, expired or revoked. Create one with 'sublet create accesskey'."
		if !errors.Is(err, errUnauthorized) {
			msg = "Logging in failed: " + err.Error()
		}
		s.renderLogin(w, r, http.StatusUnauthorized, next, msg)
		return
	}
	if box, ok := r.Context().Value(userHolder{}).(*userBox); ok {
		box.user = u
	}
	if u.Scope != nil {
		s.renderLogin(w, r, http.StatusForbidden, next, fmt.Sprintf(
			"That access key is scoped to virtual cluster %s: it is good for that cluster's Kubernetes API alone (as a kube-context's token), not for the web UI. Log in with a key of your own.", scopeString(u.Scope)))
		return
	}
	expires := time.Now().Add(sessionLifetime)
	if u.keyExpires != nil && u.keyExpires.Before(expires) {
		expires = *u.keyExpires
	}
	sess := &session{id: randomToken(), key: key, csrf: randomToken(), user: u, expires: expires, downloads: map[string]download{}}
	if err := s.ui.sessions.add(sess); err != nil {
		s.renderLogin(w, r, http.StatusServiceUnavailable, next, "Not logged in: "+err.Error()+" ("+strconv.Itoa(maxSessions)+"); try again once some have ended, or use the CLI.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: sess.id, Path: "/", Expires: expires,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, sess *session) {
	s.ui.sessions.drop(sess.id)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}
