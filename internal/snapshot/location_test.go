package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

func TestParseLocation(t *testing.T) {
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	cases := []struct {
		in, file, ref, scheme string
		digest                bool
		err                   string // part of the error; "" for none
	}{
		{in: "/var/lib/sublet/snapshots/a.snapshot", file: "/var/lib/sublet/snapshots/a.snapshot"},
		{in: "/var/lib/../lib/./a", file: "/var/lib/a"},
		{in: "file:///srv/snaps/a", file: "/srv/snaps/a"},
		{in: "file://host/srv/a", err: "no host"},
		{in: "file://srv/a", err: "no host"},
		{in: "snaps/a", err: "relative: give an absolute path"},
		{in: "./a", err: "relative"},
		{in: "", err: "no snapshot location"},
		{in: "s3://bucket/a", err: "unknown scheme"},
		{in: "https://ghcr.io/acme/snaps:v1", err: "unknown scheme"},
		{in: "oci://ghcr.io/acme/snaps:v1", ref: "ghcr.io/acme/snaps:v1", scheme: "https"},
		{in: "oci://ghcr.io/acme/snaps@" + digest, ref: "ghcr.io/acme/snaps@" + digest, scheme: "https", digest: true},
		{in: "oci://127.0.0.1:5000/snaps/vc:one", ref: "127.0.0.1:5000/snaps/vc:one", scheme: "http"},
		{in: "oci://localhost:5000/snaps:one", ref: "localhost:5000/snaps:one", scheme: "http"},
		{in: "oci://localhost/snaps:one", ref: "localhost/snaps:one", scheme: "http"},
		{in: "oci://127.0.0.2:5000/snaps:one", ref: "127.0.0.2:5000/snaps:one", scheme: "http"},
		{in: "oci://[::1]:5000/snaps:one", ref: "[::1]:5000/snaps:one", scheme: "http"},
		{in: "oci://ghcr.io/acme/snaps", err: "oci://REGISTRY/REPO:TAG"},
		{in: "oci://snaps:v1", err: "oci://REGISTRY/REPO:TAG"},
		{in: "oci://", err: "oci://REGISTRY/REPO:TAG"},
		{in: "oci://ghcr.io/Acme/snaps:v1", err: "oci://REGISTRY/REPO:TAG"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			loc, err := ParseLocation(c.in)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				return
			}
			mustNil(t, err)
			if loc.File != c.file {
				t.Errorf("File = %q, want %q", loc.File, c.file)
			}
			if c.ref == "" {
				if loc.Ref != nil {
					t.Errorf("Ref = %v, want none", loc.Ref)
				}
				return
			}
			if loc.Ref == nil || loc.Ref.String() != c.ref {
				t.Fatalf("Ref = %v, want %s", loc.Ref, c.ref)
			}
			if got := loc.Ref.Context().Scheme(); got != c.scheme {
				t.Errorf("scheme %s, want %s", got, c.scheme)
			}
			if _, isDigest := loc.Ref.(name.Digest); isDigest != c.digest {
				t.Errorf("digest reference: %v, want %v", isDigest, c.digest)
			}
			again, err := ParseLocation(loc.String())
			if err != nil || again.String() != loc.String() {
				t.Errorf("ParseLocation(%q) = %v, %v; want it again", loc.String(), again, err)
			}
		})
	}
}

// archiveFile writes a small snapshot to a file and returns its path.
func archiveFile(t *testing.T, k *Key) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "archive")
	mustNil(t, os.WriteFile(path, archiveOf(t, k, sampleTree()), 0o644))
	return path
}

func sha256File(t *testing.T, path string) (string, int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	mustNil(t, err)
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:]), int64(len(data))
}

func TestStoreOpenFile(t *testing.T) {
	ctx := context.Background()
	k := mustKey(t)
	src := archiveFile(t, k)
	root := t.TempDir()
	loc, err := ParseLocation("file://" + filepath.Join(root, "new", "dirs", "a.snapshot"))
	mustNil(t, err)

	digest, size, err := Store(ctx, src, loc)
	mustNil(t, err)
	if wantDigest, wantSize := sha256File(t, src); digest != wantDigest || size != wantSize {
		t.Errorf("Store = %s, %d; want %s, %d", digest, size, wantDigest, wantSize)
	}
	for p, want := range map[string]os.FileMode{
		filepath.Join(root, "new"):         0o700,
		filepath.Join(root, "new", "dirs"): 0o700,
		loc.File:                           0o600,
	} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, %v; want mode %v", p, fi.Mode(), err, want)
		}
	}
	if entries, _ := os.ReadDir(filepath.Dir(loc.File)); len(entries) != 1 {
		t.Errorf("destination directory holds %d entries, want the snapshot alone", len(entries))
	}

	rc, err := Open(ctx, loc)
	mustNil(t, err)
	dst := t.TempDir()
	_, err = Extract(rc, k, dst)
	mustNil(t, err)
	mustNil(t, rc.Close())
	compareTrees(t, readTree(t, dst), sampleTree())

	// Storing again replaces the file whole.
	_, _, err = Store(ctx, archiveFile(t, k), loc)
	mustNil(t, err)
	// What is not a snapshot is not stored, and the old one stays.
	notSnapshot := filepath.Join(t.TempDir(), "junk")
	mustNil(t, os.WriteFile(notSnapshot, []byte("junk"), 0o600))
	before, _ := os.ReadFile(loc.File)
	if _, _, err := Store(ctx, notSnapshot, loc); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Store of junk: error %v, want ErrCorrupt", err)
	}
	if after, _ := os.ReadFile(loc.File); !bytes.Equal(before, after) {
		t.Error("a failed Store changed the stored snapshot")
	}
}

func TestOpenFileErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk")
	mustNil(t, os.WriteFile(junk, []byte("not a tar at all, just text"), 0o600))
	cases := map[string]struct {
		path string
		want error
		says string
	}{
		"missing":   {path: filepath.Join(dir, "missing"), want: ErrNotFound, says: "does not exist"},
		"junk":      {path: junk, want: ErrCorrupt, says: "is not a Sublet snapshot"},
		"directory": {path: dir, want: ErrCorrupt, says: "directory"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Open(ctx, Location{File: c.path})
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) || !strings.Contains(err.Error(), c.path) {
				t.Errorf("error %v, want %v naming %s and saying %q", err, c.want, c.path, c.says)
			}
		})
	}
}

func TestRemove(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.snapshot")
	mustNil(t, os.WriteFile(path, []byte("x"), 0o600))
	loc := Location{File: path}
	mustNil(t, Remove(loc))
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("file still there: %v", err)
	}
	mustNil(t, Remove(loc))
	oci, err := ParseLocation("oci://127.0.0.1:1/snaps:a")
	mustNil(t, err)
	mustNil(t, Remove(oci))
}

func TestInvalidLocation(t *testing.T) {
	ctx := context.Background()
	for _, loc := range []Location{{}, {File: "relative/a"}} {
		if _, err := Open(ctx, loc); err == nil || !strings.Contains(err.Error(), "ParseLocation") {
			t.Errorf("Open(%q): error %v, want one about the location", loc, err)
		}
		if _, _, err := Store(ctx, "/nonexistent", loc); err == nil || !strings.Contains(err.Error(), "ParseLocation") {
			t.Errorf("Store(%q): error %v, want one about the location", loc, err)
		}
		if err := Remove(loc); err == nil {
			t.Errorf("Remove(%q) succeeded", loc)
		}
	}
}

// TestOpenReadsFromStart: Open leaves the reader at the archive's start.
func TestOpenReadsFromStart(t *testing.T) {
	k := mustKey(t)
	path := archiveFile(t, k)
	rc, err := Open(context.Background(), Location{File: path})
	mustNil(t, err)
	defer rc.Close()
	got, err := io.ReadAll(rc)
	mustNil(t, err)
	if want, _ := os.ReadFile(path); !bytes.Equal(got, want) {
		t.Error("Open's reader does not give the archive from its start")
	}
}
