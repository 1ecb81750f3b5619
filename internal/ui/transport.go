package ui

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// handlerTransport is an http.RoundTripper that serves each request by
// calling a handler in this process, with no network in between: the web
// UI's calls reach the platform's API as any client's do, through its
// authentication, limits and audit, without leaving the server.
//
// The handler sees a server-side request: the path and query of the
// client's URL, its headers, body and context, no TLS, and as its remote
// address the one of the browser request the call is made for (see
// withRemoteAddr), so failed logins count against that browser's address.
// The reply is buffered whole before RoundTrip returns, which suits the
// UI's bounded JSON replies, not watches or upgrades.
type handlerTransport struct {
	handler http.Handler
}

// remoteAddrKey keys, in a call's context, the remote address it is made
// for.
type remoteAddrKey struct{}

// withRemoteAddr returns ctx for calls made on behalf of a client at
// addr.
func withRemoteAddr(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, remoteAddrKey{}, addr)
}

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	in := req.Clone(req.Context())
	in.URL = &url.URL{Path: req.URL.Path, RawPath: req.URL.RawPath, RawQuery: req.URL.RawQuery}
	in.RequestURI = in.URL.RequestURI()
	in.Host = req.URL.Host
	in.Proto, in.ProtoMajor, in.ProtoMinor = "HTTP/1.1", 1, 1
	in.RemoteAddr, _ = req.Context().Value(remoteAddrKey{}).(string)
	if in.Body == nil {
		in.Body = http.NoBody
	}
	w := &bufferedResponse{header: http.Header{}}
	t.handler.ServeHTTP(w, in)
	if req.Body != nil {
		_ = req.Body.Close()
	}
	return w.response(req), nil
}

// bufferedResponse is the http.ResponseWriter of an in-process call: it
// keeps the status, the headers as they were when it was written, and the
// body.
type bufferedResponse struct {
	header, sent http.Header
	code         int
	body         bytes.Buffer
}

func (w *bufferedResponse) Header() http.Header { return w.header }

func (w *bufferedResponse) WriteHeader(code int) {
	if w.code != 0 {
		return
	}
	w.code = code
	w.sent = w.header.Clone()
}

func (w *bufferedResponse) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}

func (w *bufferedResponse) response(req *http.Request) *http.Response {
	w.WriteHeader(http.StatusOK) // nothing written: an empty 200, as a server sends
	return &http.Response{
		Status:        strconv.Itoa(w.code) + " " + http.StatusText(w.code),
		StatusCode:    w.code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        w.sent,
		Body:          io.NopCloser(bytes.NewReader(w.body.Bytes())),
		ContentLength: int64(w.body.Len()),
		Request:       req,
	}
}
