package snapshot

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// payload is a decrypted payload whose sealed manifest was read, and matched
// the clear one; tr is at the entry after it.
type payload struct {
	gz       *gzip.Reader
	tr       *tar.Reader
	manifest Manifest
	// lim bounds what is written; entries and written count it.
	lim     Limits
	entries int
	written int64
}

// openSealed starts reading the decrypted payload, and reads its sealed
// manifest and checks that m, the clear one, is the same, before any file is
// written.
func openSealed(plain io.Reader, m Manifest) (*payload, error) {
	gz, err := gzip.NewReader(plain)
	if err != nil {
		return nil, corrupt(theArchive, fmt.Errorf("payload: %w", err))
	}
	tr := tar.NewReader(gz)
	sealed, err := readSealedManifest(tr)
	if err != nil {
		return nil, err
	}
	if err := checkSealed(m, sealed); err != nil {
		return nil, err
	}
	return &payload{gz: gz, tr: tr, manifest: sealed}, nil
}

// extractPayload writes the files of the payload after its sealed manifest
// under dir.
func extractPayload(p *payload, dir string) error {
	dirs, err := extractEntries(p, dir)
	if err != nil {
		return err
	}
	// The tar ends before the gzip stream: reading that to its end checks
	// gzip's checksum, refuses anything after it and, as gzip reads on to its
	// source's end, makes age authenticate the last chunk.
	if _, err := io.Copy(io.Discard, p.gz); err != nil {
		return corrupt(theArchive, fmt.Errorf("payload: %w", err))
	}
	return chmodDirs(dirs)
}

// extractEntries writes p's remaining tar entries under dir, within p's
// limits, and returns its directories. Directories are made 0700 while
// files go in, and get their own mode last (chmodDirs), so that a
// read-only directory can still be filled.
func extractEntries(p *payload, dir string) ([]entry, error) {
	var dirs []entry
	for {
		hdr, err := p.tr.Next()
		if err == io.EOF {
			return dirs, nil
		}
		if err != nil {
			return nil, corrupt(theArchive, fmt.Errorf("payload: %w", err))
		}
		if err := p.take(hdr); err != nil {
			return nil, err
		}
		e, err := extractEntry(p.tr, hdr, dir)
		if err != nil {
			return nil, err
		}
		if hdr.Typeflag == tar.TypeDir {
			dirs = append(dirs, e)
		}
	}
}

// chmodDirs gives extracted directories their own modes, innermost first.
func chmodDirs(dirs []entry) error {
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(dirs[i].path, dirs[i].mode); err != nil {
			return fmt.Errorf("extract snapshot: %w", err)
		}
	}
	return nil
}

// take counts entry hdr against p's limits. A regular file's header gives
// the size tar reads of it (a sparse file's too, holes included).
func (p *payload) take(hdr *tar.Header) error {
	p.entries++
	if p.entries > p.lim.Entries {
		return tooLarge(fmt.Sprintf("the snapshot holds more than %d files and directories, the most this agent unpacks: it is not a data dir Sublet wrote", p.lim.Entries))
	}
	if hdr.Typeflag != tar.TypeReg {
		return nil
	}
	if hdr.Size < 0 || hdr.Size > p.lim.Bytes-p.written {
		return tooLarge(fmt.Sprintf("the snapshot unpacks to more than %d bytes (at %s), this agent's limit: raise its --snapshot-max-size to restore it", p.lim.Bytes, hdr.Name))
	}
	p.written += hdr.Size
	return nil
}

// entry is where a payload entry is written, with its permission bits.
type entry struct {
	path string
	mode fs.FileMode
}

// extractEntry writes one payload entry under dir.
func extractEntry(tr *tar.Reader, hdr *tar.Header, dir string) (entry, error) {
	rel, err := entryPath(hdr.Name)
	if err != nil {
		return entry{}, corrupt(theArchive, err)
	}
	if rel == sealedManifestEntry {
		return entry{}, corrupt(theArchive, fmt.Errorf("its payload holds %s again after its sealed manifest", hdr.Name))
	}
	target := entry{path: filepath.Join(dir, rel), mode: fs.FileMode(hdr.Mode).Perm()}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := os.MkdirAll(target.path, 0o700); err != nil {
			return target, fmt.Errorf("extract snapshot: %w", err)
		}
		return target, nil
	case tar.TypeReg:
		return target, writeFile(target, tr)
	default:
		return target, corrupt(theArchive, fmt.Errorf("entry %q is of tar type %q; a snapshot holds only regular files and directories", hdr.Name, hdr.Typeflag))
	}
}

// writeFile creates the file at f.path, failing if it exists (the payload
// names it twice), and copies r into it.
func writeFile(f entry, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
		return fmt.Errorf("extract snapshot: %w", err)
	}
	out, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if os.IsExist(err) {
			return corrupt(theArchive, fmt.Errorf("the payload holds %s twice", f.path))
		}
		return fmt.Errorf("extract snapshot: %w", err)
	}
	src := &sourceReader{r: r}
	_, err = io.Copy(out, src)
	if err == nil {
		err = out.Chmod(f.mode)
	}
	if err == nil {
		// A restore replaces a cluster's data with these files.
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if src.err != nil {
		return corrupt(theArchive, fmt.Errorf("payload: %w", src.err))
	}
	if err != nil {
		return fmt.Errorf("extract snapshot: %w", err)
	}
	return nil
}

// sourceReader remembers its error, which says the archive is damaged
// rather than the disk full.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}
