package controlplane

import (
	"bytes"
	"compress/flate"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/munnerz/goautoneg"
	"k8s.io/klog/v2"
	"k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/handler3"
	"k8s.io/kube-openapi/pkg/spec3"
)

// openAPIV3Service serves /openapi/v3 and the group-version documents under
// it as kube-openapi's handler3 does (the same discovery document and
// hashes, content types, headers, redirects and conditional requests), for
// the kube-apiserver's fixed set of group-versions. Where handler3 keeps
// every document's JSON as it serves it, 7.6 MB for the built-in APIs (all
// are serialised at start: the aggregator asks for the discovery document,
// whose hashes are those of the JSON), this keeps it deflated, about a
// tenth of that, and inflates it per request; the protobuf form, built on
// its first request, is kept the same way.
type openAPIV3Service struct {
	docs map[string]*v3Document

	mu        sync.Mutex
	discovery *servedBytes
}

// newOpenAPIV3Service serves, at each group-version path ("api/v1",
// "apis/apps/v1"), the document its build function makes; it is called
// once, when the document is first needed, and again only after a failure.
func newOpenAPIV3Service(builds map[string]func() (*spec3.OpenAPI, error)) *openAPIV3Service {
	s := &openAPIV3Service{docs: make(map[string]*v3Document, len(builds))}
	for gv, build := range builds {
		s.docs[gv] = &v3Document{build: build}
	}
	return s
}

// register installs the service on mux at servePath ("/openapi/v3").
func (s *openAPIV3Service) register(servePath string, mux common.PathHandlerByGroupVersion) {
	mux.Handle(servePath, http.HandlerFunc(s.serveDiscovery))
	mux.HandlePrefix(servePath+"/", http.HandlerFunc(s.serveGroupVersion))
}

// servedBytes is a response body with its etag and modification time.
type servedBytes struct {
	body     []byte
	etag     string
	modified time.Time
}

// v3Document is one group-version's document, kept deflated once built.
type v3Document struct {
	build func() (*spec3.OpenAPI, error)

	mu       sync.Mutex
	json     *servedBytes // body deflated
	protobuf []byte       // deflated; same etag and time as json
}

// serialiseLocked builds and serialises the document unless it has been;
// d.mu is held.
func (d *v3Document) serialiseLocked() error {
	if d.json != nil {
		return nil
	}
	doc, err := d.build()
	if err != nil {
		return err
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	deflated, err := deflate(raw)
	if err != nil {
		return err
	}
	d.json = &servedBytes{body: deflated, etag: v3ETag(raw), modified: time.Now()}
	return nil
}

// etag is the hash of the document's JSON.
func (d *v3Document) etag() (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.serialiseLocked(); err != nil {
		return "", err
	}
	return d.json.etag, nil
}

// get is the document as JSON, or as protobuf, inflated.
func (d *v3Document) get(protobuf bool) (servedBytes, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.serialiseLocked(); err != nil {
		return servedBytes{}, err
	}
	var raw []byte
	var err error
	switch {
	case protobuf && d.protobuf != nil:
		raw, err = inflate(d.protobuf)
	case protobuf:
		if raw, err = inflate(d.json.body); err == nil {
			if raw, err = handler3.ToV3ProtoBinary(raw); err == nil {
				d.protobuf, err = deflate(raw)
			}
		}
	default:
		raw, err = inflate(d.json.body)
	}
	if err != nil {
		return servedBytes{}, err
	}
	return servedBytes{body: raw, etag: d.json.etag, modified: d.json.modified}, nil
}

// discoveryDocument is the /openapi/v3 document, built once every
// group-version's document has been.
func (s *openAPIV3Service) discoveryDocument() (*servedBytes, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.discovery != nil {
		return s.discovery, nil
	}
	gvs := make([]string, 0, len(s.docs))
	for gv := range s.docs {
		gvs = append(gvs, gv)
	}
	sort.Strings(gvs)
	discovery := handler3.OpenAPIV3Discovery{Paths: make(map[string]handler3.OpenAPIV3DiscoveryGroupVersion, len(gvs))}
	for _, gv := range gvs {
		etag, err := s.docs[gv].etag()
		if err != nil {
			return nil, err
		}
		discovery.Paths[gv] = handler3.OpenAPIV3DiscoveryGroupVersion{ServerRelativeURL: v3DocumentURL(gv, etag)}
	}
	raw, err := json.Marshal(discovery)
	if err != nil {
		return nil, err
	}
	s.discovery = &servedBytes{body: raw, etag: v3ETag(raw), modified: time.Now()}
	return s.discovery, nil
}

func (s *openAPIV3Service) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	d, err := s.discoveryDocument()
	if err != nil {
		klog.ErrorS(err, "Serving the OpenAPI v3 discovery document")
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.Header().Set("Etag", strconv.Quote(d.etag))
	w.Header().Set("Content-Type", "application/json")
	http.ServeContent(w, r, "/openapi/v3", d.modified, bytes.NewReader(d.body))
}

// The media types a group-version document is served as, in the order a
// wildcard picks them: the subtype asked for, and the content type served.
var v3MediaTypes = []struct{ subType, contentType string }{
	{"json", "application/json"},
	{"com.github.proto-openapi.spec.v3.v1.0+protobuf", "application/com.github.proto-openapi.spec.v3.v1.0+protobuf"},
	// The older name of the protobuf type, answered with the current one.
	{"com.github.proto-openapi.spec.v3@v1.0+protobuf", "application/com.github.proto-openapi.spec.v3.v1.0+protobuf"},
}

func (s *openAPIV3Service) serveGroupVersion(w http.ResponseWriter, r *http.Request) {
	gv := strings.TrimPrefix(r.URL.Path, "/openapi/v3/")
	w.Header().Add("Vary", "Accept")
	doc, ok := s.docs[gv]
	if !ok {
		http.NotFound(w, r)
		return
	}
	accept := r.Header.Get("Accept")
	if accept == "" {
		accept = "*/*"
	}
	for _, clause := range goautoneg.ParseAccept(accept) {
		for _, mt := range v3MediaTypes {
			if clause.Type != "application" && clause.Type != "*" || clause.SubType != mt.subType && clause.SubType != "*" {
				continue
			}
			b, err := doc.get(mt.contentType != "application/json")
			if err != nil {
				klog.ErrorS(err, "Serving an OpenAPI v3 document", "groupVersion", gv)
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", mt.contentType)
			w.Header().Set("Etag", strconv.Quote(b.etag))
			if hash := r.URL.Query().Get("hash"); hash != "" {
				if hash != b.etag {
					// A stale link: send the client to the current one.
					http.Redirect(w, r, v3DocumentURL(gv, b.etag), http.StatusMovedPermanently)
					return
				}
				// What a hash names never changes.
				w.Header().Set("Cache-Control", "public, immutable")
				w.Header().Set("Expires", time.Now().AddDate(1, 0, 0).Format(time.RFC1123))
			}
			http.ServeContent(w, r, "", b.modified, bytes.NewReader(b.body))
			return
		}
	}
	w.WriteHeader(http.StatusNotAcceptable)
}

// v3DocumentURL is the server-relative URL of a group-version's document
// with the hash of its content, as the discovery document lists it.
func v3DocumentURL(gv, etag string) string {
	u := url.URL{Path: path.Join("/openapi/v3", gv), RawQuery: url.Values{"hash": {etag}}.Encode()}
	return u.String()
}

// v3ETag is the hash that names a document: SHA-512 in upper-case hex.
func v3ETag(b []byte) string {
	return fmt.Sprintf("%X", sha512.Sum512(b))
}

func deflate(b []byte) ([]byte, error) {
	var out bytes.Buffer
	w, err := flate.NewWriter(&out, flate.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return bytes.Clone(out.Bytes()), nil
}

func inflate(b []byte) ([]byte, error) {
	return io.ReadAll(flate.NewReader(bytes.NewReader(b)))
}
