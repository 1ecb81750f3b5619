package snapshot

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"filippo.io/age"
)

// entrySpec is one entry of a hand-made payload.
type entrySpec struct {
	hdr  tar.Header
	data string
}

func reg(name, data string) entrySpec {
	return entrySpec{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o600, Size: int64(len(data))}, data: data}
}

// payloadOf makes a payload by hand, with the standard library only: a
// gzip-compressed tar of entries, encrypted to k.
func payloadOf(t testing.TB, k *Key, entries []entrySpec) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc, err := age.Encrypt(&buf, k.id.Recipient())
	mustNil(t, err)
	gz := gzip.NewWriter(enc)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		mustNil(t, tw.WriteHeader(&e.hdr))
		_, err := tw.Write([]byte(e.data))
		mustNil(t, err)
	}
	mustNil(t, tw.Close())
	mustNil(t, gz.Close())
	mustNil(t, enc.Close())
	return buf.Bytes()
}

// sealedEntry is the payload entry that seals m, as Write makes it.
func sealedEntry(t testing.TB, m Manifest) entrySpec {
	t.Helper()
	data, err := manifestJSON(m)
	mustNil(t, err)
	return reg(sealedManifestEntry, string(data))
}

// sealedPayloadOf makes a payload by hand that begins with m sealed.
func sealedPayloadOf(t testing.TB, k *Key, m Manifest, entries []entrySpec) []byte {
	t.Helper()
	return payloadOf(t, k, append([]entrySpec{sealedEntry(t, m)}, entries...))
}

// handMade makes an archive of m and payload with the standard library.
func handMade(t testing.TB, m Manifest, payload []byte) []byte {
	t.Helper()
	data, err := json.Marshal(m)
	mustNil(t, err)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range []entrySpec{reg(manifestEntry, string(data)), reg(payloadEntry, string(payload))} {
		mustNil(t, tw.WriteHeader(&e.hdr))
		_, err := tw.Write([]byte(e.data))
		mustNil(t, err)
	}
	mustNil(t, tw.Close())
	return buf.Bytes()
}

func manifestFor(k *Key) Manifest {
	m := sampleManifest()
	m.Format, m.Recipient = FormatVersion, k.Recipient()
	return m
}

func TestExtractHandMade(t *testing.T) {
	k := mustKey(t)
	dir := entrySpec{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "d/", Mode: 0o750}}
	m := manifestFor(k)
	archive := handMade(t, m, sealedPayloadOf(t, k, m, []entrySpec{dir, reg("d/f", "x"), reg("implicit/parent/g", "y")}))
	dst := t.TempDir()
	_, err := Extract(bytes.NewReader(archive), k, dst)
	mustNil(t, err)
	compareTrees(t, readTree(t, dst), testTree{
		"d/": {mode: 0o750}, "d/f": {data: "x", mode: 0o600},
		"implicit/": {mode: 0o700}, "implicit/parent/": {mode: 0o700}, "implicit/parent/g": {data: "y", mode: 0o600},
	})
}

func TestExtractRefusesUnsafeEntries(t *testing.T) {
	k := mustKey(t)
	base := t.TempDir()
	ok := reg("ok", "fine")
	cases := map[string]entrySpec{
		"parent":     reg("../evil", "x"),
		"deep":       reg("a/../../evil", "x"),
		"absolute":   reg(filepath.Join(base, "evil"), "x"),
		"dot":        reg(".", "x"),
		"duplicate":  reg("ok", "again"),
		"symlink":    {hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "evil", Linkname: base}},
		"hardlink":   {hdr: tar.Header{Typeflag: tar.TypeLink, Name: "evil", Linkname: "ok"}},
		"device":     {hdr: tar.Header{Typeflag: tar.TypeChar, Name: "evil", Devmajor: 1, Devminor: 3}},
		"fifo":       {hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "evil"}},
		"dir-parent": {hdr: tar.Header{Typeflag: tar.TypeDir, Name: "../evil/"}},
		// The sealed manifest is never written out, not even a second one.
		"sealed-again":     reg(sealedManifestEntry, "{}"),
		"sealed-again-dot": reg("./"+sealedManifestEntry, "{}"),
		"sealed-again-dir": {hdr: tar.Header{Typeflag: tar.TypeDir, Name: sealedManifestEntry + "/", Mode: 0o700}},
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			m := manifestFor(k)
			archive := handMade(t, m, sealedPayloadOf(t, k, m, []entrySpec{ok, bad}))
			dst := filepath.Join(base, name, "dst")
			mustNil(t, os.MkdirAll(dst, 0o700))
			_, err := Extract(bytes.NewReader(archive), k, dst)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v, want ErrCorrupt", err)
			}
			assertEmpty(t, dst)
		})
	}
	filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "evil" {
			t.Errorf("%s was written", p)
		}
		return err
	})
}

// payloadSpan returns where the payload's contents are in archive.
func payloadSpan(t *testing.T, archive []byte) (start, end int) {
	t.Helper()
	r := bytes.NewReader(archive)
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		mustNil(t, err)
		if hdr.Name == payloadEntry {
			start = len(archive) - r.Len()
			return start, start + int(hdr.Size)
		}
	}
}

// expectCorrupt extracts a damaged archive into an empty and into an absent
// directory, and wants ErrCorrupt and nothing left behind.
func expectCorrupt(t *testing.T, k *Key, archive []byte, what string) {
	t.Helper()
	empty := t.TempDir()
	_, err := Extract(bytes.NewReader(archive), k, empty)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "is not a Sublet snapshot or is corrupt: ") {
		t.Fatalf("%s: error %v, want ErrCorrupt", what, err)
	}
	assertEmpty(t, empty)
	absent := filepath.Join(t.TempDir(), "absent")
	if _, err := Extract(bytes.NewReader(archive), k, absent); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("%s, absent directory: error %v, want ErrCorrupt", what, err)
	}
	if _, err := os.Stat(absent); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s: Extract left the directory it created (%v)", what, err)
	}
}

// TestExtractFlippedByte flips each byte of a small payload, and bytes spread
// over a large one: age authenticates every chunk, so every flip is caught.
func TestExtractFlippedByte(t *testing.T) {
	k := mustKey(t)
	small := archiveOf(t, k, testTree{"a/": {mode: 0o700}, "a/b": {data: "bee", mode: 0o600}})
	start, end := payloadSpan(t, small)
	for i := start; i < end; i++ {
		damaged := bytes.Clone(small)
		damaged[i] ^= 0x01
		expectCorrupt(t, k, damaged, "small payload, byte "+strconv.Itoa(i-start))
	}
	large := archiveOf(t, k, sampleTree())
	start, end = payloadSpan(t, large)
	for _, i := range []int{start + 100, start + 300, (start + end) / 2, end - 17, end - 1} {
		damaged := bytes.Clone(large)
		damaged[i] ^= 0x80
		expectCorrupt(t, k, damaged, "large payload, byte "+strconv.Itoa(i-start))
	}
}

// TestExtractTruncated cuts a small archive at every length that loses part
// of the payload, and a large one at a few. (Losing only the tar padding and
// end blocks loses no data.)
func TestExtractTruncated(t *testing.T) {
	k := mustKey(t)
	small := archiveOf(t, k, testTree{"a": {data: "aaa", mode: 0o600}})
	_, end := payloadSpan(t, small)
	for n := 0; n < end; n++ {
		expectCorrupt(t, k, small[:n], "cut at "+strconv.Itoa(n))
	}
	large := archiveOf(t, k, sampleTree())
	_, end = payloadSpan(t, large)
	for _, n := range []int{end / 2, end - 70000, end - 1} {
		expectCorrupt(t, k, large[:n], "large, cut at "+strconv.Itoa(n))
	}
}

func TestExtractTrailingEntry(t *testing.T) {
	k := mustKey(t)
	archive := archiveOf(t, k, testTree{"a": {data: "aaa", mode: 0o600}})
	// Replace the end of the archive with a third entry.
	var buf bytes.Buffer
	buf.Write(archive[:len(archive)-2*blockSize])
	tw := tar.NewWriter(&buf)
	extra := reg("extra", "x")
	mustNil(t, tw.WriteHeader(&extra.hdr))
	_, err := io.WriteString(tw, extra.data)
	mustNil(t, err)
	mustNil(t, tw.Close())
	expectCorrupt(t, k, buf.Bytes(), "trailing entry")
}

// TestExtractGzipTrailer: what follows the payload's tar is read too, so a
// bad gzip checksum or bytes after the gzip stream are refused.
func TestExtractGzipTrailer(t *testing.T) {
	k := mustKey(t)
	var gzipped bytes.Buffer
	gz := gzip.NewWriter(&gzipped)
	tw := tar.NewWriter(gz)
	for _, e := range []entrySpec{sealedEntry(t, manifestFor(k)), reg("f", "data")} {
		mustNil(t, tw.WriteHeader(&e.hdr))
		_, err := io.WriteString(tw, e.data)
		mustNil(t, err)
	}
	mustNil(t, tw.Close())
	mustNil(t, gz.Close())
	good := gzipped.Bytes()
	badChecksum := bytes.Clone(good)
	badChecksum[len(badChecksum)-8] ^= 1
	for name, plain := range map[string][]byte{
		"checksum": badChecksum,
		"trailing": append(bytes.Clone(good), "more"...),
	} {
		var buf bytes.Buffer
		enc, err := age.Encrypt(&buf, k.id.Recipient())
		mustNil(t, err)
		_, err = enc.Write(plain)
		mustNil(t, err)
		mustNil(t, enc.Close())
		expectCorrupt(t, k, handMade(t, manifestFor(k), buf.Bytes()), name)
	}
}
