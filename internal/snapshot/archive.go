package snapshot

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"filippo.io/age"
)

// blockSize is the tar block: headers take one, contents are padded to it.
const blockSize = 512

// Write writes a snapshot archive to w: an uncompressed tar whose first entry
// is "manifest.json" (m with Format and Recipient filled in, and Created if it
// was zero) and whose second is "payload.age": a gzip-compressed tar of the
// same manifest bytes, as ".sublet-manifest.json", then the regular files and
// directories under dir, with their relative paths and permission bits,
// encrypted with age to k's recipient. Anything else under dir (a symlink, a
// device), and a ".sublet-manifest.json" directly in dir, is refused. It
// returns the manifest it wrote.
//
// The payload is streamed, never held in memory. A tar header comes before
// its contents, so the payload's header is written last, in place: when w is
// a file it is written directly, otherwise through a temporary file in
// os.TempDir().
func Write(w io.Writer, m Manifest, k *Key, dir string) (Manifest, error) {
	m.Format = FormatVersion
	m.Recipient = k.Recipient()
	if m.Created.IsZero() {
		m.Created = time.Now().UTC().Truncate(time.Second)
	}
	if f, ok := patchable(w); ok {
		return m, writeArchive(f, m, k, dir)
	}
	tmp, err := os.CreateTemp("", "sublet-snapshot-*.tar")
	if err != nil {
		return m, fmt.Errorf("write snapshot: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := writeArchive(tmp, m, k, dir); err != nil {
		return m, err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return m, fmt.Errorf("write snapshot: %w", err)
	}
	if _, err := io.Copy(w, tmp); err != nil {
		return m, fmt.Errorf("write snapshot: %w", err)
	}
	return m, nil
}

// patchableWriter is a writer whose earlier bytes can be rewritten.
type patchableWriter interface {
	io.Writer
	io.Seeker
	io.WriterAt
}

// patchable says whether w can have a header written in place: a regular file
// not opened for appending, but not a pipe or a terminal.
func patchable(w io.Writer) (patchableWriter, bool) {
	f, ok := w.(patchableWriter)
	if !ok {
		return nil, false
	}
	pos, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, false
	}
	// An *os.File opened with O_APPEND refuses WriteAt, even of nothing.
	if _, err := f.WriteAt(nil, pos); err != nil {
		return nil, false
	}
	return f, true
}

// writeArchive writes the archive at f's current offset: the manifest entry,
// a placeholder block for the payload's header, the payload, the end of the
// archive, and then the payload's header in place of the placeholder.
func writeArchive(f patchableWriter, m Manifest, k *Key, dir string) error {
	start, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	manifest, err := manifestJSON(m)
	if err != nil {
		return err
	}
	cw := &countingWriter{w: f}
	if err := writeManifest(cw, manifest, m.Created); err != nil {
		return err
	}
	headerAt := start + cw.n
	if _, err := cw.Write(make([]byte, blockSize)); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	size, err := writePayload(cw, k, dir, manifest, m.Created)
	if err != nil {
		return err
	}
	pad := (blockSize - size%blockSize) % blockSize
	// Two zero blocks end a tar archive.
	if _, err := cw.Write(make([]byte, pad+2*blockSize)); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	header, err := payloadHeader(size, m.Created)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(header, headerAt); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	return nil
}

// manifestJSON returns the bytes of both copies of m: the clear entry and the
// payload's sealed one.
func manifestJSON(m Manifest) ([]byte, error) {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("write snapshot manifest: %w", err)
	}
	return append(data, '\n'), nil
}

func writeManifest(w io.Writer, manifest []byte, modTime time.Time) error {
	tw := tar.NewWriter(w)
	if err := writeManifestEntry(tw, manifestEntry, manifest, 0o644, modTime); err != nil {
		return err
	}
	// Flush pads the entry; Close would also end the archive.
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write snapshot manifest: %w", err)
	}
	return nil
}

func writeManifestEntry(tw *tar.Writer, name string, manifest []byte, mode int64, modTime time.Time) error {
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Size:     int64(len(manifest)),
		Mode:     mode,
		ModTime:  modTime,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write snapshot manifest: %w", err)
	}
	if _, err := tw.Write(manifest); err != nil {
		return fmt.Errorf("write snapshot manifest: %w", err)
	}
	return nil
}

// payloadHeader returns the one tar block that heads the payload entry. The
// GNU format keeps it one block whatever the size (ustar stops at 8 GiB).
func payloadHeader(size int64, modTime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     payloadEntry,
		Size:     size,
		Mode:     0o600,
		ModTime:  modTime.Truncate(time.Second),
		Format:   tar.FormatGNU,
	}
	if err := tar.NewWriter(&buf).WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("write snapshot payload header: %w", err)
	}
	if buf.Len() != blockSize {
		return nil, fmt.Errorf("write snapshot payload header: it took %d bytes, not one block", buf.Len())
	}
	return buf.Bytes(), nil
}

// writePayload writes the encrypted, compressed tar of the sealed manifest
// and dir to w and returns the number of bytes it wrote.
func writePayload(w io.Writer, k *Key, dir string, manifest []byte, modTime time.Time) (int64, error) {
	cw := &countingWriter{w: w}
	enc, err := age.Encrypt(cw, k.id.Recipient())
	if err != nil {
		return 0, fmt.Errorf("encrypt snapshot payload: %w", err)
	}
	gz := gzip.NewWriter(enc)
	tw := tar.NewWriter(gz)
	if err := writeManifestEntry(tw, sealedManifestEntry, manifest, 0o600, modTime); err != nil {
		return 0, err
	}
	if err := addTree(tw, dir); err != nil {
		return 0, err
	}
	for _, c := range []io.Closer{tw, gz, enc} {
		if err := c.Close(); err != nil {
			return 0, fmt.Errorf("write snapshot payload: %w", err)
		}
	}
	return cw.n, nil
}

// addTree adds the directories and regular files under dir to tw, in lexical
// order, with slash-separated paths relative to dir.
func addTree(tw *tar.Writer, dir string) error {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", dir, err)
	}
	if fi, err := os.Stat(root); err != nil {
		return fmt.Errorf("snapshot %s: %w", dir, err)
	} else if !fi.IsDir() {
		return fmt.Errorf("snapshot %s: not a directory", dir)
	}
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == root {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		if rel == sealedManifestEntry {
			return fmt.Errorf("snapshot %s: it holds %s, a name Sublet keeps for the snapshot's own manifest; move that out of the directory", dir, sealedManifestEntry)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return addEntry(tw, path, filepath.ToSlash(rel), info)
	})
}

func addEntry(tw *tar.Writer, path, name string, info fs.FileInfo) error {
	hdr := &tar.Header{
		Name:    name,
		Mode:    int64(info.Mode().Perm()),
		ModTime: info.ModTime(),
	}
	switch {
	case info.IsDir():
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("snapshot %s: %w", path, err)
		}
		return nil
	case info.Mode().IsRegular():
		hdr.Typeflag = tar.TypeReg
		hdr.Size = info.Size()
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("snapshot %s: %w", path, err)
		}
		return copyFile(tw, path, info.Size())
	default:
		return fmt.Errorf("snapshot %s: it is a %s; a snapshot holds only regular files and directories", path, fileKind(info.Mode()))
	}
}

// copyFile copies the size bytes of the file at path to w, and fails if the
// file's size changed since it was listed.
func copyFile(w io.Writer, path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", path, err)
	}
	defer f.Close()
	if _, err := io.CopyN(w, f, size); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("snapshot %s: the file shrank while it was read; snapshot a directory nothing writes to", path)
		}
		return fmt.Errorf("snapshot %s: %w", path, err)
	}
	if n, _ := f.Read(make([]byte, 1)); n > 0 {
		return fmt.Errorf("snapshot %s: the file grew while it was read; snapshot a directory nothing writes to", path)
	}
	return nil
}

func fileKind(mode fs.FileMode) string {
	switch {
	case mode&fs.ModeSymlink != 0:
		return "symbolic link"
	case mode&fs.ModeDevice != 0:
		return "device"
	case mode&fs.ModeNamedPipe != 0:
		return "named pipe"
	case mode&fs.ModeSocket != 0:
		return "socket"
	default:
		return "special file"
	}
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
