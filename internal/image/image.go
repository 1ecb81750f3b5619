// Package image builds the Sublet container image without a container
// daemon or a base image: one layer with the static binary, CA
// certificates and a non-root user, assembled with go-containerregistry.
// The same inputs always give the same digest: every timestamp is the
// given creation time and every tar entry is written in a fixed order.
package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// In-image paths and the user the image runs as (distroless's "nonroot").
const (
	BinaryPath = "/usr/local/bin/sublet"
	CACertPath = "/etc/ssl/certs/ca-certificates.crt"
	UID        = 65532
	HomeDir    = "/home/nonroot"
)

// OCI annotation keys the image carries as labels.
const (
	LabelVersion  = "org.opencontainers.image.version"
	LabelSource   = "org.opencontainers.image.source"
	LabelRevision = "org.opencontainers.image.revision"
	LabelCreated  = "org.opencontainers.image.created"
	LabelTitle    = "org.opencontainers.image.title"
)

// Options are the inputs of one image.
type Options struct {
	// Binary is the static sublet binary (for Arch).
	Binary string
	// CACerts is a PEM bundle of trusted CA certificates.
	CACerts string
	// Version, Source (a repository URL) and Revision (a commit) become
	// labels.
	Version, Source, Revision string
	// Arch is the GOARCH of Binary; default this machine's.
	Arch string
	// Created is the time every file and the config carry (the commit's
	// time makes builds of one commit identical); default the Unix epoch.
	Created time.Time
}

// Build assembles the image.
func Build(o Options) (v1.Image, error) {
	if o.Binary == "" || o.CACerts == "" || o.Version == "" {
		return nil, errors.New("image: binary, CA certificates and version are required")
	}
	if o.Arch == "" {
		o.Arch = runtime.GOARCH
	}
	if o.Created.IsZero() {
		o.Created = time.Unix(0, 0)
	}
	o.Created = o.Created.UTC()
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("image: read the binary: %w", err)
	}
	certs, err := os.ReadFile(o.CACerts)
	if err != nil {
		return nil, fmt.Errorf("image: read the CA certificates: %w", err)
	}
	layerTar, err := rootFS(o.Created, bin, certs)
	if err != nil {
		return nil, err
	}
	// Compressed once here; go-containerregistry uses gzip input as is.
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(layerTar); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	compressed := gz.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(compressed)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	created := v1.Time{Time: o.Created}
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: types.OCILayer, History: v1.History{
		Created: created, CreatedBy: "sublet internal/image: binary, CA certificates, user nonroot",
	}})
	if err != nil {
		return nil, fmt.Errorf("image: append the layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Created = o.Arch, "linux", created
	cf.Config = v1.Config{
		Entrypoint: []string{BinaryPath},
		User:       fmt.Sprintf("%d:%d", UID, UID),
		WorkingDir: HomeDir,
		Env: []string{
			"PATH=/usr/local/bin:/usr/bin:/bin",
			"HOME=" + HomeDir,
			"SSL_CERT_FILE=" + CACertPath,
		},
		Labels: map[string]string{
			LabelTitle:    "sublet",
			LabelVersion:  o.Version,
			LabelSource:   o.Source,
			LabelRevision: o.Revision,
			LabelCreated:  o.Created.Format(time.RFC3339),
		},
	}
	return mutate.ConfigFile(img, cf)
}

type entry struct {
	name string
	mode int64
	uid  int
	data []byte // nil: a directory
}

// rootFS is the image's one layer as an uncompressed tar.
func rootFS(created time.Time, bin, certs []byte) ([]byte, error) {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:%d:%d:nonroot:%s:/sbin/nologin\n", UID, UID, HomeDir)
	group := fmt.Sprintf("root:x:0:\nnobody:x:65534:\nnonroot:x:%d:\n", UID)
	entries := []entry{
		{name: "etc/", mode: 0o755},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/ssl/", mode: 0o755},
		{name: "etc/ssl/certs/", mode: 0o755},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: certs},
		{name: "home/", mode: 0o755},
		{name: "home/nonroot/", mode: 0o700, uid: UID},
		{name: "tmp/", mode: 0o1777},
		{name: "usr/", mode: 0o755},
		{name: "usr/local/", mode: 0o755},
		{name: "usr/local/bin/", mode: 0o755},
		{name: "usr/local/bin/sublet", mode: 0o755, data: bin},
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.uid, ModTime: created,
			Typeflag: tar.TypeReg, Size: int64(len(e.data)),
		}
		if e.data == nil {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if e.uid != 0 {
			h.Uname, h.Gname = "nonroot", "nonroot"
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("image: layer entry %s: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("image: layer entry %s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// blobPath is where an archive keeps the blob of digest h.
func blobPath(h v1.Hash) string { return path.Join("blobs", h.Algorithm, h.Hex) }
