package ui

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sublet-dev/sublet/internal/platformapi"
)

// apiHost names the platform in the UI's calls; they never leave the
// process, so it is never resolved.
const apiHost = "http://platform.sublet.invalid"

// maxReply bounds a reply the UI reads.
const maxReply = 64 << 20

// callError is an error reply of a call, with the API's message.
type callError struct {
	code int
	msg  string
	// retryAfter is the reply's Retry-After (a rate limit's 429).
	retryAfter string
	details    *metav1.StatusDetails
}

func (e *callError) Error() string { return e.msg }

// call sends a request with key, made for the browser request r, to the
// platform's API (authentication, RBAC gate, limits, audit) and decodes a
// JSON reply into out.
func (u *UI) call(r *http.Request, key, method, path, contentType string, body interface{}, out interface{}) error {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(withRemoteAddr(r.Context(), r.RemoteAddr), method, apiHost+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "sublet-ui")
	if contentType == "" {
		contentType = "application/json"
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := u.client.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		ce := &callError{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
		st := &metav1.Status{}
		if json.Unmarshal(data, st) == nil && st.Message != "" {
			ce.msg, ce.details = st.Message, st.Details
		} else {
			ce.msg = fmt.Sprintf("%s %s: HTTP %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(data)))
		}
		return ce
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// whoami is the user of key, as the platform's API knows them.
func (u *UI) whoami(r *http.Request, key string) (*platformapi.User, error) {
	who := &platformapi.User{}
	if err := u.call(r, key, http.MethodGet, "/api/v1/whoami", "", nil, who); err != nil {
		return nil, err
	}
	return who, nil
}

// callCode is the HTTP status of a call's error reply, 0 if err is not
// one.
func callCode(err error) int {
	var ce *callError
	if errors.As(err, &ce) {
		return ce.code
	}
	return 0
}
