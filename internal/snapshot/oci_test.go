package snapshot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// testRegistry starts an in-memory registry on loopback and returns its
// host:port. The docker config is an empty directory, so no credentials of
// the machine are used.
func testRegistry(t *testing.T, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func mustLocation(t *testing.T, s string) Location {
	t.Helper()
	loc, err := ParseLocation(s)
	mustNil(t, err)
	return loc
}

func TestStoreOpenOCI(t *testing.T) {
	ctx := context.Background()
	host := testRegistry(t, nil)
	k := mustKey(t)
	src := archiveFile(t, k)
	loc := mustLocation(t, "oci://"+host+"/snapshots/team-a/dev:nightly")

	digest, size, err := Store(ctx, src, loc)
	mustNil(t, err)
	if wantDigest, wantSize := sha256File(t, src); digest != wantDigest || size != wantSize {
		t.Errorf("Store = %s, %d; want %s, %d", digest, size, wantDigest, wantSize)
	}
	desc := checkArtifact(t, loc, digest, size)

	for _, l := range []Location{loc, mustLocation(t, "oci://"+host+"/snapshots/team-a/dev@"+desc.Digest.String())} {
		rc, err := Open(ctx, l)
		mustNil(t, err)
		dst := t.TempDir()
		m, err := Extract(rc, k, dst)
		mustNil(t, err)
		mustNil(t, rc.Close())
		if m.Name != "nightly" {
			t.Errorf("%s: manifest name %q", l, m.Name)
		}
		compareTrees(t, readTree(t, dst), sampleTree())
	}

	if _, _, err := Store(ctx, src, mustLocation(t, "oci://"+host+"/snapshots/x@"+desc.Digest.String())); err == nil || !strings.Contains(err.Error(), "give a tag") {
		t.Errorf("Store to a digest: error %v, want one asking for a tag", err)
	}
}

// checkArtifact checks the pushed manifest's media types, artifact type,
// layer and config, and returns its descriptor.
func checkArtifact(t *testing.T, loc Location, digest string, size int64) *remote.Descriptor {
	t.Helper()
	desc, err := remote.Get(loc.Ref)
	mustNil(t, err)
	mf, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	mustNil(t, err)
	if mf.ArtifactType != string(ConfigMediaType) || mf.Config.MediaType != ConfigMediaType {
		t.Errorf("artifactType %q, config media type %q; want %s", mf.ArtifactType, mf.Config.MediaType, ConfigMediaType)
	}
	if len(mf.Layers) != 1 || mf.Layers[0].MediaType != ArchiveMediaType || mf.Layers[0].Digest.String() != digest || mf.Layers[0].Size != size {
		t.Errorf("layers %+v, want one %s of %s, %d bytes", mf.Layers, ArchiveMediaType, digest, size)
	}
	img, err := desc.Image()
	mustNil(t, err)
	config, err := img.RawConfigFile()
	mustNil(t, err)
	var m Manifest
	mustNil(t, json.Unmarshal(config, &m))
	if m.Name != "nightly" || m.Format != FormatVersion || m.Recipient == "" {
		t.Errorf("config blob holds %s, want the manifest", config)
	}
	return desc
}

func TestOpenOCIErrors(t *testing.T) {
	ctx := context.Background()
	host := testRegistry(t, nil)
	img, err := random.Image(256, 1)
	mustNil(t, err)
	mustNil(t, remote.Write(mustLocation(t, "oci://"+host+"/apps/web:v1").Ref, img))
	idx, err := random.Index(256, 1, 2)
	mustNil(t, err)
	mustNil(t, remote.WriteIndex(mustLocation(t, "oci://"+host+"/apps/multi:v1").Ref, idx))

	cases := map[string]struct {
		want error
		says string
	}{
		"oci://" + host + "/apps/web:v1":        {want: ErrCorrupt, says: "is not a Sublet snapshot"},
		"oci://" + host + "/apps/multi:v1":      {want: ErrCorrupt, says: "image.index"},
		"oci://" + host + "/apps/web:missing":   {want: ErrNotFound, says: "does not exist"},
		"oci://" + host + "/nothing/here:v1":    {want: ErrNotFound, says: "does not exist"},
		"oci://" + host + "/apps/web@" + zeroes: {want: ErrNotFound, says: "does not exist"},
	}
	for s, c := range cases {
		t.Run(s, func(t *testing.T) {
			rc, err := Open(ctx, mustLocation(t, s))
			if err == nil {
				rc.Close()
			}
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) || !strings.Contains(err.Error(), s) {
				t.Errorf("error %v, want %v naming %s and saying %q", err, c.want, s, c.says)
			}
		})
	}
}

const zeroes = "sha256:0000000000000000000000000000000000000000000000000000000000000000"

func TestOCIRefusedCredentials(t *testing.T) {
	ctx := context.Background()
	host := testRegistry(t, func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusUnauthorized)
		})
	})
	loc := mustLocation(t, "oci://"+host+"/snapshots:a")
	if _, err := Open(ctx, loc); err == nil || !strings.Contains(err.Error(), "cannot be read") || !strings.Contains(err.Error(), "log in to "+host) {
		t.Errorf("Open: error %v, want one asking to log in", err)
	}
	_, _, err := Store(ctx, archiveFile(t, mustKey(t)), loc)
	if err == nil || !strings.Contains(err.Error(), "cannot be pushed") || !strings.Contains(err.Error(), "log in to "+host) {
		t.Errorf("Store: error %v, want one asking to log in", err)
	}
}

// TestOpenOCITamperedBlob: a registry that serves other bytes than the
// layer's digest is caught, even where neither age nor the sealed manifest
// can see it (a space moved in the clear manifest's JSON).
func TestOpenOCITamperedBlob(t *testing.T) {
	ctx := context.Background()
	var tamper atomic.Bool
	host := testRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !tamper.Load() || r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
				h.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(bytes.Replace(rec.Body.Bytes(), []byte(`"name": "nightly"`), []byte(`"name":"nightly" `), 1))
		})
	})
	k := mustKey(t)
	loc := mustLocation(t, "oci://"+host+"/snapshots:a")
	_, _, err := Store(ctx, archiveFile(t, k), loc)
	mustNil(t, err)
	tamper.Store(true)
	rc, err := Open(ctx, loc)
	mustNil(t, err)
	defer rc.Close()
	dst := t.TempDir()
	if _, err := Extract(rc, k, dst); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("error %v, want ErrCorrupt", err)
	}
	assertEmpty(t, dst)
}

// TestStoreOCINotFoundIsNotMissing: a 404 to a push is the registry's
// refusal, not a missing snapshot.
func TestStoreOCINotFoundIsNotMissing(t *testing.T) {
	host := testRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				h.ServeHTTP(w, r)
				return
			}
			w.WriteHeader(http.StatusNotFound)
		})
	})
	_, _, err := Store(context.Background(), archiveFile(t, mustKey(t)), mustLocation(t, "oci://"+host+"/snapshots:a"))
	if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "cannot be pushed") {
		t.Errorf("error %v, want a push failure that is not ErrNotFound", err)
	}
}
