package snapshot

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"filippo.io/age"
)

const theArchive = "the archive"

// ReadManifest reads only the clear manifest of an archive; it needs no key.
// It does not check the format version, so that a listing can show snapshots
// written by a newer Sublet. Nothing binds it to the payload before Extract
// has compared it with the sealed copy: decide nothing on it that a swapped
// manifest could abuse (which namespace may restore the snapshot).
func ReadManifest(r io.Reader) (Manifest, error) {
	return readManifest(tar.NewReader(r))
}

func readManifest(tr *tar.Reader) (Manifest, error) {
	hdr, err := tr.Next()
	if errors.Is(err, io.EOF) {
		return Manifest{}, corrupt(theArchive, errors.New("it is empty"))
	}
	if err != nil {
		return Manifest{}, corrupt(theArchive, err)
	}
	if hdr.Name != manifestEntry || hdr.Typeflag != tar.TypeReg {
		return Manifest{}, corrupt(theArchive, fmt.Errorf("its first entry is %q, not %s", hdr.Name, manifestEntry))
	}
	m, err := parseManifest(tr, hdr, "manifest")
	if err != nil {
		return Manifest{}, err
	}
	if m.Format == 0 {
		return Manifest{}, corrupt(theArchive, errors.New("its manifest has no format version"))
	}
	return m, nil
}

// parseManifest reads the manifest entry hdr of tr; what names it in errors.
func parseManifest(tr *tar.Reader, hdr *tar.Header, what string) (Manifest, error) {
	if hdr.Size > maxManifestSize {
		return Manifest{}, corrupt(theArchive, fmt.Errorf("its %s has %d bytes, over %d", what, hdr.Size, maxManifestSize))
	}
	data, err := io.ReadAll(tr)
	if err != nil {
		return Manifest{}, corrupt(theArchive, fmt.Errorf("%s: %w", what, err))
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return Manifest{}, corrupt(theArchive, fmt.Errorf("%s: %w", what, err))
	}
	return m, nil
}

// Extract checks the manifest's format, decrypts the payload with k, checks
// that the clear manifest is the one sealed in the payload, and writes the
// payload's files under dir, which must be empty or absent (it is then
// created with mode 0700). It refuses entries with absolute paths or "..",
// links, and anything but regular files and directories. It returns the
// sealed manifest, or the zero Manifest on error. Errors match ErrCorrupt for
// data that is not a snapshot, is damaged or whose clear manifest was
// altered, and ErrKeyMismatch for a snapshot made for another key. On error,
// it removes what it wrote under dir. It unpacks at most DefaultLimits.
func Extract(r io.Reader, k *Key, dir string) (Manifest, error) {
	return ExtractWithin(r, k, dir, DefaultLimits)
}

// ExtractWithin is Extract with limits lim: a payload over them is an
// error matching ErrTooLarge, and what was written is removed.
func ExtractWithin(r io.Reader, k *Key, dir string, lim Limits) (Manifest, error) {
	existed, err := checkTarget(dir)
	if err != nil {
		return Manifest{}, err
	}
	tr := tar.NewReader(r)
	m, err := readManifest(tr)
	if err != nil {
		return Manifest{}, err
	}
	plain, err := openPayload(tr, m, k)
	if err != nil {
		return Manifest{}, err
	}
	p, err := openSealed(plain, m)
	if err != nil {
		return Manifest{}, err
	}
	p.lim = lim
	if !existed {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return Manifest{}, fmt.Errorf("extract snapshot into %s: %w", dir, err)
		}
	}
	if err := extractRest(r, tr, p, dir); err != nil {
		removeWritten(dir, existed)
		return Manifest{}, err
	}
	return p.manifest, nil
}

// checkTarget says whether dir exists, and fails if it is not an empty
// directory.
func checkTarget(dir string) (existed bool, err error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("extract snapshot into %s: %w", dir, err)
	}
	if len(entries) > 0 {
		return false, fmt.Errorf("extract snapshot into %s: the directory is not empty; give an empty or absent directory", dir)
	}
	return true, nil
}

// openPayload checks the format, finds the payload entry and starts
// decrypting it.
func openPayload(tr *tar.Reader, m Manifest, k *Key) (io.Reader, error) {
	if m.Format != FormatVersion {
		if m.Format > FormatVersion {
			return nil, fmt.Errorf("the snapshot has format %d and this Sublet reads format %d: restore it with the newer Sublet that wrote it", m.Format, FormatVersion)
		}
		return nil, corrupt(theArchive, fmt.Errorf("unknown format %d", m.Format))
	}
	hdr, err := tr.Next()
	if errors.Is(err, io.EOF) {
		return nil, corrupt(theArchive, errors.New("it has no payload"))
	}
	if err != nil {
		return nil, corrupt(theArchive, err)
	}
	if hdr.Name != payloadEntry || hdr.Typeflag != tar.TypeReg {
		return nil, corrupt(theArchive, fmt.Errorf("its second entry is %q, not %s", hdr.Name, payloadEntry))
	}
	plain, err := age.Decrypt(tr, k.id)
	var noMatch *age.NoIdentityMatchError
	if errors.As(err, &noMatch) {
		return nil, keyMismatch(m, k)
	}
	if err != nil {
		return nil, corrupt(theArchive, fmt.Errorf("payload: %w", err))
	}
	return plain, nil
}

// keyMismatch explains a payload that k cannot decrypt. When the manifest
// names k's recipient all the same, the archive was altered: it is corrupt.
func keyMismatch(m Manifest, k *Key) error {
	if m.Recipient == k.Recipient() {
		return corrupt(theArchive, fmt.Errorf("its payload does not decrypt with this platform's key %s, which its manifest names", k.Recipient()))
	}
	return &snapshotError{
		sentinel: ErrKeyMismatch,
		msg: fmt.Sprintf("the snapshot was made by another platform: it is encrypted to %s and this platform's key is %s; "+
			"restore it on the platform that made it, or give this platform that platform's snapshot key", m.Recipient, k.Recipient()),
	}
}

// extractRest writes the payload's files under dir, then reads the rest of
// the archive: the payload is only known whole once its end is authenticated,
// and a registry blob's digest is only checked at its end.
func extractRest(r io.Reader, tr *tar.Reader, p *payload, dir string) error {
	if err := extractPayload(p, dir); err != nil {
		return err
	}
	hdr, err := tr.Next()
	if err == nil {
		return corrupt(theArchive, fmt.Errorf("unexpected entry %q after the payload", hdr.Name))
	}
	if !errors.Is(err, io.EOF) {
		return corrupt(theArchive, err)
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return corrupt(theArchive, err)
	}
	return nil
}

// removeWritten removes what Extract wrote: dir itself if Extract created it,
// else what is in it (it was empty).
func removeWritten(dir string, existed bool) {
	if !existed {
		os.RemoveAll(dir)
		return
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// entryPath returns the local path of a payload entry name, or an error for
// a name that would leave the target directory.
func entryPath(name string) (string, error) {
	clean := path.Clean(name)
	if name == "" || clean == "." || path.IsAbs(name) || !filepath.IsLocal(filepath.FromSlash(clean)) {
		return "", fmt.Errorf("entry %q is outside the snapshot's directory", name)
	}
	return filepath.FromSlash(clean), nil
}
