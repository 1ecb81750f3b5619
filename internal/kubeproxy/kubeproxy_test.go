package kubeproxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

// TestRefusedBeforeBody: an API server that answers before it reads the
// request body (as it refuses a write it does not authorize), behind the
// proxy, to an HTTP/2 client that sends its body late. The client stops
// sending its body once it sees the refusal's headers; the proxy's own
// request must not wait for that body, or neither response ever ends.
// The client sends the rest of its body only if no answer came first.
func TestRefusedBeforeBody(t *testing.T) {
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteStatus(w, http.StatusForbidden, "Forbidden", "not you")
	}))
	backend.EnableHTTP2 = true
	backend.StartTLS()
	defer backend.Close()
	b, err := NewBackend(&rest.Config{Host: backend.URL, TLSClientConfig: rest.TLSClientConfig{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.Serve(w, r, r.URL.Path, nil, nil)
	}))
	front.EnableHTTP2 = true
	front.StartTLS()
	defer front.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 5 {
		body, send := io.Pipe()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, front.URL+"/api/v1/namespaces", body)
		if err != nil {
			t.Fatal(err)
		}
		answered := make(chan struct{})
		go func() {
			_, _ = send.Write([]byte(`{"kind":"Namespace",`))
			select {
			case <-answered:
				send.CloseWithError(io.ErrUnexpectedEOF)
			case <-time.After(200 * time.Millisecond):
				_, _ = send.Write([]byte(`"metadata":{"name":"x"}}`))
				send.Close()
			}
		}()
		res, err := front.Client().Do(req)
		close(answered)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if res.ProtoMajor != 2 {
			t.Fatalf("request %d went over %s; the test needs HTTP/2", i, res.Proto)
		}
		data, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || res.StatusCode != http.StatusForbidden || !strings.Contains(string(data), "not you") {
			t.Fatalf("request %d: %d %q %v", i, res.StatusCode, data, err)
		}
	}
}

// TestBodyForwarded: a request body reaches the API server whole, and one
// over MaxBody is refused with 413 before it is sent on.
func TestBodyForwarded(t *testing.T) {
	got := make(chan string, 1)
	backend := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		got <- string(data)
		w.WriteHeader(http.StatusCreated)
	}))
	defer backend.Close()
	b, err := NewBackend(&rest.Config{Host: backend.URL, TLSClientConfig: rest.TLSClientConfig{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.Serve(w, r, r.URL.Path, nil, nil)
	}))
	defer front.Close()
	want := strings.Repeat("x", 100<<10)
	res, err := front.Client().Post(front.URL+"/api/v1/configmaps", "application/json", strings.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated || <-got != want {
		t.Fatalf("status %d, or the body changed on the way", res.StatusCode)
	}
	res, err = front.Client().Post(front.URL+"/api/v1/configmaps", "application/json", io.LimitReader(zeros{}, MaxBody+1))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("a body over MaxBody: status %d", res.StatusCode)
	}
	select {
	case <-got:
		t.Fatal("a body over MaxBody reached the API server")
	default:
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestBackendNotListening: a backend that refuses connections (a control
// plane restarting on a new address) is 503 with Retry-After, which
// client-go retries; one that hangs up stays 502.
func TestBackendNotListening(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	// One that accepts connections and closes them at once.
	hangup, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hangup.Close()
	go func() {
		for {
			c, err := hangup.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for _, c := range []struct {
		host       string
		code       int
		retryAfter string
	}{
		{"https://" + addr, http.StatusServiceUnavailable, "1"},
		{"https://" + hangup.Addr().String(), http.StatusBadGateway, ""},
	} {
		b, err := NewBackend(&rest.Config{Host: c.host, TLSClientConfig: rest.TLSClientConfig{Insecure: true}})
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		b.Serve(rec, httptest.NewRequest(http.MethodGet, "/api", nil), "/api", nil, nil)
		if rec.Code != c.code || rec.Header().Get("Retry-After") != c.retryAfter {
			t.Errorf("%s: %d, Retry-After %q; want %d, %q", c.host, rec.Code, rec.Header().Get("Retry-After"), c.code, c.retryAfter)
		}
	}
}
