package image

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// WriteArchive writes img as an OCI image layout in a tar (oci-layout,
// index.json, blobs/sha256/…) that also carries the manifest.json of
// `docker save`, so `docker load`, `podman load`, `kind load
// image-archive`, `ctr images import` and OCI tools (crane, skopeo
// oci-archive:) all read it. The tar is reproducible: fixed entry order,
// times and owners.
func WriteArchive(w io.Writer, img v1.Image, ref name.Tag, created time.Time) error {
	files := map[string][]byte{}
	manifest, err := img.RawManifest()
	if err != nil {
		return fmt.Errorf("archive: manifest: %w", err)
	}
	manifestDigest, err := img.Digest()
	if err != nil {
		return err
	}
	files[blobPath(manifestDigest)] = manifest
	config, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("archive: config: %w", err)
	}
	configDigest, err := img.ConfigName()
	if err != nil {
		return err
	}
	files[blobPath(configDigest)] = config
	layerPaths, err := addLayers(files, img)
	if err != nil {
		return err
	}
	index := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: types.OCIManifestSchema1,
			Digest:    manifestDigest,
			Size:      int64(len(manifest)),
			Annotations: map[string]string{
				"io.containerd.image.name":          ref.Name(),
				"org.opencontainers.image.ref.name": ref.TagStr(),
			},
		}},
	}
	if files["index.json"], err = json.Marshal(index); err != nil {
		return err
	}
	files["oci-layout"] = []byte(`{"imageLayoutVersion":"1.0.0"}`)
	dockerManifest := []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}{{Config: blobPath(configDigest), RepoTags: []string{ref.Name()}, Layers: layerPaths}}
	if files["manifest.json"], err = json.Marshal(dockerManifest); err != nil {
		return err
	}
	return writeTar(w, files, created)
}

// writeTar writes files (path → content) as a tar archive with fixed modes
// and times, in path order, after the blobs directories.
func writeTar(w io.Writer, files map[string][]byte, created time.Time) error {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := tar.NewWriter(w)
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Name: dir, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: created}); err != nil {
			return err
		}
	}
	for _, n := range names {
		data := files[n]
		if err := tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data)), ModTime: created}); err != nil {
			return fmt.Errorf("archive: %s: %w", n, err)
		}
		if _, err := tw.Write(data); err != nil {
			return fmt.Errorf("archive: %s: %w", n, err)
		}
	}
	return tw.Close()
}

// addLayers adds img's compressed layers to files as blobs and returns
// their paths, in order.
func addLayers(files map[string][]byte, img v1.Image) ([]string, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("archive: layers: %w", err)
	}
	var paths []string
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return nil, fmt.Errorf("archive: layer digest: %w", err)
		}
		rc, err := l.Compressed()
		if err != nil {
			return nil, fmt.Errorf("archive: layer %s: %w", d, err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("archive: layer %s: %w", d, err)
		}
		files[blobPath(d)] = data
		paths = append(paths, blobPath(d))
	}
	return paths, nil
}
