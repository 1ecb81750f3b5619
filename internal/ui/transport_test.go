package ui

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestHandlerTransport: a call through the in-process transport reaches
// the handler as a server-side request (path, query, headers, body, the
// browser's address) and comes back as the reply it wrote.
func TestHandlerTransport(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path != "/api/v1/x y" || r.URL.RawQuery != "a=1" || r.RequestURI != "/api/v1/x%20y?a=1" ||
			r.Header.Get("Authorization") != "Bearer k" || string(body) != "in" || r.RemoteAddr != "192.0.2.7:1234" || r.TLS != nil {
			t.Errorf("the handler got %s %q %q %q %v %q from %q", r.Method, r.URL.Path, r.URL.RawQuery, r.RequestURI, r.Header, body, r.RemoteAddr)
		}
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(http.StatusTooManyRequests)
		w.Header().Set("X-Late", "not sent")
		_, _ = w.Write([]byte("out"))
	})
	c := &http.Client{Transport: handlerTransport{handler: h}}
	ctx := withRemoteAddr(context.Background(), "192.0.2.7:1234")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, apiHost+"/api/v1/x%20y?a=1", strings.NewReader("in"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer k")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "3" || resp.Header.Get("X-Late") != "" || string(body) != "out" {
		t.Errorf("reply: HTTP %d %v %q", resp.StatusCode, resp.Header, body)
	}

	// Nothing written: an empty 200.
	c = &http.Client{Transport: handlerTransport{handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})}}
	resp, err = c.Get(apiHost + "/")
	if err != nil || resp.StatusCode != http.StatusOK || resp.ContentLength != 0 {
		t.Errorf("an empty reply: %v, %v", resp, err)
	}
}
