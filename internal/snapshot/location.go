package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

const (
	fileScheme = "file://"
	ociScheme  = "oci://"
)

// Location is where a snapshot archive is stored: exactly one of File and Ref
// is set.
type Location struct {
	// File is an absolute, cleaned path on the machine of the host cluster.
	File string
	// Ref is an OCI reference: a tag, or for reading also a digest.
	Ref name.Reference
}

// String returns the location in the form ParseLocation reads.
func (l Location) String() string {
	if l.Ref != nil {
		return ociScheme + l.Ref.String()
	}
	return l.File
}

// check refuses a Location that ParseLocation would not return.
func (l Location) check() error {
	if (l.Ref == nil) == (l.File == "") || (l.File != "" && !filepath.IsAbs(l.File)) {
		return fmt.Errorf("snapshot location %q is neither an absolute file path nor an OCI reference: make it with ParseLocation", l.String())
	}
	return nil
}

// ParseLocation parses an absolute file path, optionally written
// file:///abs/path, or oci://REGISTRY/REPO:TAG (or @sha256:… to read a
// snapshot by digest). Registries on loopback addresses are spoken to over
// plain HTTP, others over HTTPS (go-containerregistry also takes plain HTTP
// for private 10/8, 172.16/12 and 192.168/16 addresses).
func ParseLocation(s string) (Location, error) {
	switch {
	case s == "":
		return Location{}, errors.New("no snapshot location: give an absolute path or oci://REGISTRY/REPO:TAG")
	case strings.HasPrefix(s, ociScheme):
		ref, err := parseOCI(strings.TrimPrefix(s, ociScheme))
		if err != nil {
			return Location{}, fmt.Errorf("snapshot location %q: %w; write oci://REGISTRY/REPO:TAG", s, err)
		}
		return Location{Ref: ref}, nil
	case strings.HasPrefix(s, fileScheme):
		p := strings.TrimPrefix(s, fileScheme)
		if !strings.HasPrefix(p, "/") {
			return Location{}, fmt.Errorf("snapshot location %q: a file location is file:///ABSOLUTE/PATH, with no host", s)
		}
		return Location{File: filepath.Clean(p)}, nil
	case strings.Contains(s, "://"):
		return Location{}, fmt.Errorf("snapshot location %q: unknown scheme; give an absolute path, file:///PATH or oci://REGISTRY/REPO:TAG", s)
	case !filepath.IsAbs(s):
		return Location{}, fmt.Errorf("snapshot location %q is relative: give an absolute path, since the snapshot is written by the agent on the host cluster's machine", s)
	}
	return Location{File: filepath.Clean(s)}, nil
}

// parseOCI parses a reference that names its registry and a tag or digest.
func parseOCI(s string) (name.Reference, error) {
	ref, err := name.ParseReference(s, name.StrictValidation)
	if err != nil {
		return nil, err
	}
	if !isLoopback(ref.Context().RegistryStr()) {
		return ref, nil
	}
	return name.ParseReference(s, name.StrictValidation, name.Insecure)
}

// isLoopback says whether a registry host[:port] is on this machine.
func isLoopback(registry string) bool {
	host := registry
	if h, _, err := net.SplitHostPort(registry); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Store copies the archive file at path to loc and returns the archive's
// digest (sha256:…) and size. A file is written atomically, 0600, through a
// temporary file in its directory, whose missing parents are created 0700.
// An OCI location must be a tag; the archive is pushed as an artifact with
// credentials from the docker config (authn.DefaultKeychain).
func Store(ctx context.Context, path string, loc Location) (digest string, size int64, err error) {
	if err := loc.check(); err != nil {
		return "", 0, err
	}
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("store snapshot: %w", err)
	}
	defer f.Close()
	m, err := ReadManifest(f)
	if err != nil {
		return "", 0, fmt.Errorf("store snapshot %s: %w", path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", 0, fmt.Errorf("store snapshot %s: %w", path, err)
	}
	if loc.Ref != nil {
		return storeOCI(ctx, f, m, loc)
	}
	return storeFile(f, loc.File)
}

// storeFile copies src to dst through a temporary file beside dst.
func storeFile(src io.Reader, dst string) (string, int64, error) {
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", 0, fmt.Errorf("store snapshot to %s: %w", dst, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return "", 0, fmt.Errorf("store snapshot to %s: %w", dst, err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	size, err := io.Copy(io.MultiWriter(tmp, h), src)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		return "", 0, fmt.Errorf("store snapshot to %s: %w", dst, err)
	}
	syncDir(dir)
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), size, nil
}

// syncDir makes a rename in dir durable; where the file system cannot, the
// rename still happened, so its error is not one of Store's.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	d.Sync()
	d.Close()
}

// Open opens the archive at loc for reading. For OCI it pulls the layer of a
// snapshot artifact. Its errors name loc and match ErrNotFound when nothing
// is there, or ErrCorrupt when what is there is not a snapshot.
func Open(ctx context.Context, loc Location) (io.ReadCloser, error) {
	if err := loc.check(); err != nil {
		return nil, err
	}
	if loc.Ref != nil {
		return openOCI(ctx, loc)
	}
	return openFile(loc)
}

func openFile(loc Location) (io.ReadCloser, error) {
	f, err := os.Open(loc.File)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &snapshotError{sentinel: ErrNotFound, msg: fmt.Sprintf("snapshot %s does not exist", loc), err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot %s cannot be read: %w", loc, err)
	}
	fi, err := f.Stat()
	switch {
	case err != nil:
		err = fmt.Errorf("snapshot %s cannot be read: %w", loc, err)
	case fi.IsDir():
		err = corrupt("snapshot "+loc.String(), errors.New("it is a directory"))
	default:
		err = checkManifest(f, loc)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkManifest reads the manifest, to tell early that the file is a
// snapshot, and goes back to the start.
func checkManifest(f *os.File, loc Location) error {
	if _, err := ReadManifest(f); err != nil {
		return corrupt("snapshot "+loc.String(), errors.Unwrap(err))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("snapshot %s cannot be read: %w", loc, err)
	}
	return nil
}

// Remove deletes the snapshot at a file location; a missing file is not an
// error. For an OCI location it does nothing: registries delete tags and
// manifests by their own means and policies.
func Remove(loc Location) error {
	if err := loc.check(); err != nil || loc.Ref != nil {
		return err
	}
	if err := os.Remove(loc.File); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove snapshot %s: %w", loc, err)
	}
	return nil
}
