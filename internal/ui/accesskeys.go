package ui

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/sublet-dev/sublet/internal/platformapi"
)

type keysData struct {
	Keys    []platformapi.AccessKeyInfo
	Created *platformapi.AccessKeyInfo
}

func (u *UI) keysPage(w http.ResponseWriter, r *http.Request, sess *session) {
	u.renderKeys(w, r, sess, nil, http.StatusOK, "")
}

func (u *UI) renderKeys(w http.ResponseWriter, r *http.Request, sess *session, created *platformapi.AccessKeyInfo, code int, problem string) {
	d := keysData{Created: created}
	if err := u.call(r, sess.key, http.MethodGet, "/api/v1/accesskeys", "", nil, &d.Keys); err != nil {
		problem = strings.TrimPrefix(problem+"; "+err.Error(), "; ")
	}
	u.render(w, code, "accesskeys", pageData{Title: "Access keys", Nav: "accesskeys", User: sess.user, CSRF: sess.csrf,
		Flash: r.URL.Query().Get("flash"), Error: problem, Data: d})
}

func (u *UI) createKey(w http.ResponseWriter, r *http.Request, sess *session) {
	var key platformapi.AccessKeyInfo
	req := platformapi.AccessKeyRequest{TTL: strings.TrimSpace(r.PostFormValue("ttl")), Description: strings.TrimSpace(r.PostFormValue("description"))}
	if err := u.call(r, sess.key, http.MethodPost, "/api/v1/accesskeys", "", req, &key); err != nil {
		u.renderKeys(w, r, sess, nil, http.StatusUnprocessableEntity, "The key was not created: "+err.Error())
		return
	}
	u.renderKeys(w, r, sess, &key, http.StatusOK, "")
}

func (u *UI) revokeKey(w http.ResponseWriter, r *http.Request, sess *session) {
	name := r.PathValue("name")
	if err := u.call(r, sess.key, http.MethodDelete, "/api/v1/accesskeys/"+url.PathEscape(name), "", nil, nil); err != nil {
		u.renderKeys(w, r, sess, nil, http.StatusUnprocessableEntity, "The key was not revoked: "+err.Error())
		return
	}
	http.Redirect(w, r, "/accesskeys?flash="+url.QueryEscape("Access key "+name+" is revoked."), http.StatusSeeOther)
}
