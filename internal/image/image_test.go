package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/sublet-dev/sublet/internal/testenv"
)

var created = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testOptions(t *testing.T, binary string) Options {
	t.Helper()
	certs := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(certs, []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return Options{Binary: binary, CACerts: certs, Version: "0.1.0", Source: "https://github.com/sublet-dev/sublet",
		Revision: "0123456789abcdef", Created: created}
}

// archive builds the image of o and writes it as an archive to a file.
func archive(t *testing.T, o Options) (string, v1.Hash) {
	t.Helper()
	img, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "image.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := WriteArchive(f, img, name.MustParseReference("ghcr.io/sublet-dev/sublet:0.1.0").(name.Tag), o.Created); err != nil {
		t.Fatal(err)
	}
	return path, d
}

// TestReproducible: the same inputs give the same digest and the same
// archive bytes; another creation time or binary gives another digest.
func TestReproducible(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "sublet")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho fake\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	o := testOptions(t, bin)
	a1, d1 := archive(t, o)
	a2, d2 := archive(t, o)
	if d1 != d2 {
		t.Errorf("two builds: digests %s and %s", d1, d2)
	}
	b1, _ := os.ReadFile(a1)
	b2, _ := os.ReadFile(a2)
	if !bytes.Equal(b1, b2) {
		t.Errorf("two builds: archives differ (%d and %d bytes)", len(b1), len(b2))
	}
	later := o
	later.Created = created.Add(time.Second)
	if _, d := archive(t, later); d == d1 {
		t.Errorf("another creation time gave the same digest %s", d)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho other\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, d := archive(t, o); d == d1 {
		t.Errorf("another binary gave the same digest %s", d)
	}
}

// TestArchive opens the archive of the real binary both ways tools read it
// (OCI layout and docker's manifest.json), checks the config and the
// layer's files, and runs the binary from the layer.
func TestArchive(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the built sublet binary; skipped with -short")
	}
	bin, err := testenv.Binary()
	if err != nil {
		t.Fatal(err)
	}
	path, digest := archive(t, testOptions(t, bin))

	// OCI layout: index.json names the manifest and the reference.
	dir := t.TempDir()
	untar(t, path, dir)
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != digest {
		t.Fatalf("index.json: %+v, want one manifest %s", im.Manifests, digest)
	}
	if got := im.Manifests[0].Annotations["org.opencontainers.image.ref.name"]; got != "0.1.0" {
		t.Errorf("ref.name annotation %q, want 0.1.0", got)
	}
	img, err := idx.Image(digest)
	if err != nil {
		t.Fatal(err)
	}
	// docker load's manifest.json gives the same image.
	tag, _ := name.NewTag("ghcr.io/sublet-dev/sublet:0.1.0")
	dimg, err := tarball.ImageFromPath(path, &tag)
	if err != nil {
		t.Fatalf("read as a docker archive: %v", err)
	}
	if d, err := dimg.ConfigName(); err != nil {
		t.Fatal(err)
	} else if c, _ := img.ConfigName(); d != c {
		t.Errorf("manifest.json config %s, index.json's image config %s", d, c)
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Architecture != runtime.GOARCH || cf.OS != "linux" {
		t.Errorf("platform %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
	}
	if got := strings.Join(cf.Config.Entrypoint, " "); got != BinaryPath {
		t.Errorf("entrypoint %q, want %s", got, BinaryPath)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("user %q, want numeric 65532:65532 (restricted pod security needs non-root)", cf.Config.User)
	}
	for k, want := range map[string]string{LabelVersion: "0.1.0", LabelSource: "https://github.com/sublet-dev/sublet", LabelRevision: "0123456789abcdef"} {
		if got := cf.Config.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	if !cf.Created.Time.Equal(created) {
		t.Errorf("created %s, want %s", cf.Created.Time, created)
	}

	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %d (%v), want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	exe := filepath.Join(t.TempDir(), "sublet")
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = h
		if !h.ModTime.Equal(created) {
			t.Errorf("%s: mtime %s, want %s", h.Name, h.ModTime, created)
		}
		switch h.Name {
		case strings.TrimPrefix(BinaryPath, "/"):
			writeFile(t, exe, tr, 0o755)
		case "etc/passwd":
			b, _ := io.ReadAll(tr)
			if !strings.Contains(string(b), "nonroot:x:65532:65532:") {
				t.Errorf("/etc/passwd has no nonroot user 65532:\n%s", b)
			}
		}
	}
	for _, f := range []string{"etc/ssl/certs/ca-certificates.crt", "etc/group", "tmp/", "home/nonroot/"} {
		if files[f] == nil {
			t.Errorf("layer lacks %s", f)
		}
	}
	if h := files["home/nonroot/"]; h != nil && h.Uid != UID {
		t.Errorf("home/nonroot owned by %d, want %d", h.Uid, UID)
	}
	out, err := exec.Command(exe, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "kubernetes: v1.") {
		t.Errorf("the image's sublet version: %v\n%s", err, out)
	}
}

func untar(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if h.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		writeFile(t, p, tr, 0o644)
	}
}

func writeFile(t *testing.T, path string, r io.Reader, mode os.FileMode) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, r); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
