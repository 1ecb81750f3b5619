package snapshot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Media types of a snapshot pushed to an OCI registry.
const (
	// ArchiveMediaType is the one layer's: the archive as Write writes it,
	// uncompressed since its payload already is compressed.
	ArchiveMediaType types.MediaType = "application/vnd.sublet.snapshot.v1.tar"
	// ConfigMediaType is the config blob's, which holds the manifest JSON. It
	// is also the artifact type.
	ConfigMediaType types.MediaType = "application/vnd.sublet.snapshot.config.v1+json"
)

// registryTransport is the default transport with a bound on how long a
// registry may take to answer, so one that stops answering fails the
// snapshot rather than holding it forever.
var registryTransport = func() http.RoundTripper {
	t := remote.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = time.Minute
	return t
}()

func remoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain), remote.WithTransport(registryTransport)}
}

// storeOCI pushes the archive f, whose manifest is m, to loc's tag.
func storeOCI(ctx context.Context, f *os.File, m Manifest, loc Location) (string, int64, error) {
	if _, ok := loc.Ref.(name.Tag); !ok {
		return "", 0, fmt.Errorf("store snapshot to %s: give a tag (oci://REGISTRY/REPO:TAG); a digest names content already pushed", loc)
	}
	h, size, err := v1.SHA256(f)
	if err != nil {
		return "", 0, fmt.Errorf("store snapshot %s: %w", f.Name(), err)
	}
	config, err := json.Marshal(m)
	if err != nil {
		return "", 0, fmt.Errorf("store snapshot %s: %w", f.Name(), err)
	}
	img, err := partial.CompressedToImage(&artifact{
		config:  config,
		created: m.Created,
		layer:   &archiveLayer{path: f.Name(), digest: h, size: size},
	})
	if err != nil {
		return "", 0, fmt.Errorf("store snapshot %s: %w", f.Name(), err)
	}
	if err := remote.Write(loc.Ref, img, remoteOptions(ctx)...); err != nil {
		return "", 0, registryError("snapshot "+loc.String()+" cannot be pushed", loc, err)
	}
	return h.String(), size, nil
}

// openOCI returns the layer of the snapshot artifact at loc, after checking
// that it is one.
func openOCI(ctx context.Context, loc Location) (io.ReadCloser, error) {
	opts := remoteOptions(ctx)
	subject := "snapshot " + loc.String()
	desc, err := remote.Get(loc.Ref, opts...)
	if err != nil {
		return nil, registryError(subject+" cannot be read", loc, err)
	}
	if desc.MediaType != types.OCIManifestSchema1 && desc.MediaType != types.DockerManifestSchema2 {
		return nil, corrupt(subject, fmt.Errorf("it is a %s, not an artifact's manifest", desc.MediaType))
	}
	mf, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return nil, corrupt(subject, err)
	}
	if len(mf.Layers) != 1 || mf.Layers[0].MediaType != ArchiveMediaType {
		return nil, corrupt(subject, fmt.Errorf("it has config %s and layers [%s]; a snapshot has config %s and one %s layer",
			mf.Config.MediaType, layerTypes(mf.Layers), ConfigMediaType, ArchiveMediaType))
	}
	layer, err := remote.Layer(loc.Ref.Context().Digest(mf.Layers[0].Digest.String()), opts...)
	if err != nil {
		return nil, registryError(subject+" cannot be read", loc, err)
	}
	rc, err := layer.Compressed()
	if err != nil {
		return nil, registryError(subject+" cannot be read", loc, err)
	}
	return rc, nil
}

func layerTypes(layers []v1.Descriptor) string {
	names := make([]string, len(layers))
	for i, l := range layers {
		names[i] = string(l.MediaType)
	}
	return strings.Join(names, ", ")
}

// registryError says what the registry's answer means, after what failed:
// nothing at loc (when reading), missing credentials, or another failure.
func registryError(what string, loc Location, err error) error {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return fmt.Errorf("%s: %w", what, err)
	}
	switch terr.StatusCode {
	case http.StatusNotFound:
		if terr.Request != nil && terr.Request.Method != http.MethodGet && terr.Request.Method != http.MethodHead {
			break
		}
		return &snapshotError{
			sentinel: ErrNotFound,
			msg:      fmt.Sprintf("snapshot %s does not exist: the registry has no such repository, tag or digest", loc),
			err:      err,
		}
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("%s: the registry refused the credentials (HTTP %d); log in to %s (docker login) as the user the agent runs as: %w",
			what, terr.StatusCode, loc.Ref.Context().RegistryStr(), err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// artifact is a snapshot as an OCI image: the manifest as config, the
// archive as its one layer.
type artifact struct {
	config  []byte
	created time.Time
	layer   *archiveLayer
}

func (a *artifact) RawConfigFile() ([]byte, error) { return a.config, nil }

func (a *artifact) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

func (a *artifact) RawManifest() ([]byte, error) {
	configDigest, configSize, err := v1.SHA256(bytes.NewReader(a.config))
	if err != nil {
		return nil, err
	}
	return json.Marshal(v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  string(ConfigMediaType),
		Config:        v1.Descriptor{MediaType: ConfigMediaType, Size: configSize, Digest: configDigest},
		Layers: []v1.Descriptor{{
			MediaType:   ArchiveMediaType,
			Size:        a.layer.size,
			Digest:      a.layer.digest,
			Annotations: map[string]string{"org.opencontainers.image.title": "snapshot.tar"},
		}},
		Annotations: map[string]string{"org.opencontainers.image.created": a.created.UTC().Format(time.RFC3339)},
	})
}

func (a *artifact) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if h == a.layer.digest {
		return a.layer, nil
	}
	return nil, fmt.Errorf("snapshot artifact has no blob %s", h)
}

// archiveLayer is the archive file, read anew for each upload attempt.
type archiveLayer struct {
	path   string
	digest v1.Hash
	size   int64
}

func (l *archiveLayer) Digest() (v1.Hash, error)             { return l.digest, nil }
func (l *archiveLayer) DiffID() (v1.Hash, error)             { return l.digest, nil }
func (l *archiveLayer) Compressed() (io.ReadCloser, error)   { return os.Open(l.path) }
func (l *archiveLayer) Uncompressed() (io.ReadCloser, error) { return os.Open(l.path) }
func (l *archiveLayer) Size() (int64, error)                 { return l.size, nil }
func (l *archiveLayer) MediaType() (types.MediaType, error)  { return ArchiveMediaType, nil }
