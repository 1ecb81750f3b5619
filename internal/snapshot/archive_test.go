package snapshot

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
)

// testTree is a directory as the tests write and expect it: slash paths to
// contents, with modes; a path ending in "/" is a directory.
type testTree map[string]testFile

type testFile struct {
	data string
	mode fs.FileMode
}

func sampleTree() testTree {
	rnd := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 200<<10) // over age's 64 KiB chunks
	for i := range big {
		big[i] = byte(rnd.UintN(256))
	}
	return testTree{
		"db/":                {mode: 0o700},
		"db/state.db":        {data: string(big), mode: 0o600},
		"pki/":               {mode: 0o755},
		"pki/ca.crt":         {data: "-----BEGIN CERTIFICATE-----\n", mode: 0o644},
		"pki/ca.key":         {data: "secret", mode: 0o600},
		"pki/etcd/":          {mode: 0o500},
		"pki/etcd/peer.crt":  {data: "peer", mode: 0o640},
		"empty/":             {mode: 0o750},
		"marker":             {data: "", mode: 0o644},
		"bin/":               {mode: 0o700},
		"bin/run":            {data: "#!/bin/sh\n", mode: 0o755},
		"deep/":              {mode: 0o700},
		"deep/a/":            {mode: 0o700},
		"deep/a/b/":          {mode: 0o700},
		"deep/a/b/c/":        {mode: 0o700},
		"deep/a/b/c/d/":      {mode: 0o700},
		"deep/a/b/c/d/e.txt": {data: "deep", mode: 0o600},
	}
}

// writeTree makes tree under dir; directories get their mode after their
// files are written.
func writeTree(t testing.TB, dir string, tree testTree) {
	t.Helper()
	for name, f := range tree {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if strings.HasSuffix(name, "/") {
			mustNil(t, os.MkdirAll(p, 0o700))
			continue
		}
		mustNil(t, os.MkdirAll(filepath.Dir(p), 0o700))
		mustNil(t, os.WriteFile(p, []byte(f.data), 0o600))
		mustNil(t, os.Chmod(p, f.mode))
	}
	for name, f := range tree {
		if strings.HasSuffix(name, "/") {
			mustNil(t, os.Chmod(filepath.Join(dir, filepath.FromSlash(name)), f.mode))
		}
	}
}

// readTree returns what is under dir, in testTree's form.
func readTree(t testing.TB, dir string) testTree {
	t.Helper()
	tree := testTree{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		name := filepath.ToSlash(rel)
		switch {
		case info.IsDir():
			tree[name+"/"] = testFile{mode: info.Mode().Perm()}
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			tree[name] = testFile{data: string(data), mode: info.Mode().Perm()}
		default:
			t.Errorf("%s is a %v", name, info.Mode().Type())
		}
		return nil
	})
	mustNil(t, err)
	return tree
}

func compareTrees(t *testing.T, got, want testTree) {
	t.Helper()
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			t.Errorf("%s missing", name)
		case g.mode != w.mode:
			t.Errorf("%s has mode %v, want %v", name, g.mode, w.mode)
		case g.data != w.data:
			t.Errorf("%s has %d bytes of other content, want %d", name, len(g.data), len(w.data))
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected %s", name)
		}
	}
}

func mustNil(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustKey(t testing.TB) *Key {
	t.Helper()
	k, err := GenerateKey()
	mustNil(t, err)
	return k
}

func sampleManifest() Manifest {
	return Manifest{
		Name:              "nightly",
		Source:            Source{Namespace: "team-a", Name: "dev", UID: "0b5e8f6c-uid"},
		Created:           time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC),
		KubernetesVersion: "v1.32.4",
		Datastore:         "sqlite",
		Values:            "sync:\n  toHost: {}\n",
		Template:          "small",
		OwnValues:         "a: 1\n",
		Sleeping:          true,
	}
}

// archiveOf writes tree with k and returns the archive, through a buffer (so
// Write spools to a temporary file).
func archiveOf(t testing.TB, k *Key, tree testTree) []byte {
	t.Helper()
	src := t.TempDir()
	writeTree(t, src, tree)
	var buf bytes.Buffer
	_, err := Write(&buf, sampleManifest(), k, src)
	mustNil(t, err)
	return buf.Bytes()
}

func jsonOf(t testing.TB, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	mustNil(t, err)
	return string(data)
}

func TestWriteExtractRoundTrip(t *testing.T) {
	k := mustKey(t)
	tree := sampleTree()
	src := t.TempDir()
	writeTree(t, src, tree)

	var buf bytes.Buffer
	wrote, err := Write(&buf, sampleManifest(), k, src)
	mustNil(t, err)
	want := sampleManifest()
	want.Format, want.Recipient = FormatVersion, k.Recipient()
	if jsonOf(t, wrote) != jsonOf(t, want) {
		t.Errorf("Write returned %s, want %s", jsonOf(t, wrote), jsonOf(t, want))
	}

	dst := filepath.Join(t.TempDir(), "absent", "restore")
	got, err := Extract(bytes.NewReader(buf.Bytes()), k, dst)
	mustNil(t, err)
	if jsonOf(t, got) != jsonOf(t, want) {
		t.Errorf("Extract returned %s, want %s", jsonOf(t, got), jsonOf(t, want))
	}
	compareTrees(t, readTree(t, dst), tree)
	if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("created target: %v, %v; want mode 0700", fi.Mode(), err)
	}
}

// TestWriteToFile covers the in-place header: at an offset in a file, and in
// a file opened for appending, where Write must not write in place.
func TestWriteToFile(t *testing.T) {
	k := mustKey(t)
	tree := sampleTree()
	src := t.TempDir()
	writeTree(t, src, tree)
	prefix := []byte("some bytes before the archive")
	for _, flag := range []int{0, os.O_APPEND} {
		path := filepath.Join(t.TempDir(), "archive")
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|flag, 0o600)
		mustNil(t, err)
		_, err = f.Write(prefix)
		mustNil(t, err)
		_, err = Write(f, sampleManifest(), k, src)
		mustNil(t, err)
		mustNil(t, f.Close())

		data, err := os.ReadFile(path)
		mustNil(t, err)
		if !bytes.HasPrefix(data, prefix) {
			t.Fatalf("flag %#x: the bytes before the archive were overwritten", flag)
		}
		dst := t.TempDir()
		_, err = Extract(bytes.NewReader(data[len(prefix):]), k, dst)
		mustNil(t, err)
		compareTrees(t, readTree(t, dst), tree)
	}
}

// TestArchiveLayout reads an archive with the standard library and age: the
// clear manifest, then the payload, whose tar begins with the same manifest
// bytes, sealed.
func TestArchiveLayout(t *testing.T) {
	k := mustKey(t)
	tr := tar.NewReader(bytes.NewReader(archiveOf(t, k, testTree{"f": {data: "x", mode: 0o600}})))
	var names, inner []string
	var clearJSON, sealedJSON []byte
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		mustNil(t, err)
		names = append(names, hdr.Name)
		switch hdr.Name {
		case manifestEntry:
			clearJSON, err = io.ReadAll(tr)
			mustNil(t, err)
		case payloadEntry:
			plain, err := age.Decrypt(tr, k.id)
			if err != nil {
				t.Fatalf("payload does not decrypt with age: %v", err)
			}
			gz, err := gzip.NewReader(plain)
			mustNil(t, err)
			ptr := tar.NewReader(gz)
			for {
				phdr, err := ptr.Next()
				if err == io.EOF {
					break
				}
				mustNil(t, err)
				inner = append(inner, phdr.Name)
				if phdr.Name == sealedManifestEntry {
					sealedJSON, err = io.ReadAll(ptr)
					mustNil(t, err)
				}
			}
		}
	}
	if strings.Join(names, ",") != manifestEntry+","+payloadEntry {
		t.Errorf("entries %v, want [%s %s]", names, manifestEntry, payloadEntry)
	}
	if strings.Join(inner, ",") != sealedManifestEntry+",f" {
		t.Errorf("payload entries %v, want [%s f]", inner, sealedManifestEntry)
	}
	if len(clearJSON) == 0 || !bytes.Equal(clearJSON, sealedJSON) {
		t.Errorf("sealed manifest %q, want the clear one's bytes %q", sealedJSON, clearJSON)
	}
}

func TestReadManifestNeedsNoKey(t *testing.T) {
	k := mustKey(t)
	m, err := ReadManifest(bytes.NewReader(archiveOf(t, k, sampleTree())))
	mustNil(t, err)
	if m.Format != FormatVersion || m.Recipient != k.Recipient() || m.Name != "nightly" || m.Source.UID != "0b5e8f6c-uid" {
		t.Errorf("ReadManifest = %+v", m)
	}
	for name, data := range map[string][]byte{"empty": nil, "text": []byte("hello, world"), "gzip": gzipOf(t, []byte("x"))} {
		if _, err := ReadManifest(bytes.NewReader(data)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: ReadManifest error %v, want ErrCorrupt", name, err)
		}
	}
}

func gzipOf(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	_, err := gz.Write(data)
	mustNil(t, err)
	mustNil(t, gz.Close())
	return buf.Bytes()
}

func TestExtractKeyMismatch(t *testing.T) {
	mine, theirs := mustKey(t), mustKey(t)
	archive := archiveOf(t, theirs, sampleTree())
	dst := t.TempDir()
	_, err := Extract(bytes.NewReader(archive), mine, dst)
	if !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("error %v, want ErrKeyMismatch", err)
	}
	if errors.Is(err, ErrCorrupt) {
		t.Error("a key mismatch also matches ErrCorrupt")
	}
	for _, s := range []string{"another platform", theirs.Recipient(), mine.Recipient()} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %q", err, s)
		}
	}
	if strings.Contains(err.Error(), "SECRET") {
		t.Errorf("error %q shows a secret key", err)
	}
	assertEmpty(t, dst)
}

// TestExtractRefusesOtherFormats: a newer format asks for a newer Sublet.
func TestExtractRefusesOtherFormats(t *testing.T) {
	k := mustKey(t)
	m := sampleManifest()
	m.Format, m.Recipient = FormatVersion+1, k.Recipient()
	archive := handMade(t, m, payloadOf(t, k, nil))
	_, err := Extract(bytes.NewReader(archive), k, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "format 2") || !strings.Contains(err.Error(), "newer Sublet") {
		t.Errorf("error %v, want one about format 2 and a newer Sublet", err)
	}
}

func TestExtractNeedsEmptyTarget(t *testing.T) {
	k := mustKey(t)
	dst := t.TempDir()
	mustNil(t, os.WriteFile(filepath.Join(dst, "keep"), []byte("mine"), 0o600))
	_, err := Extract(bytes.NewReader(archiveOf(t, k, sampleTree())), k, dst)
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("error %v, want one about the non-empty directory", err)
	}
	if data, _ := os.ReadFile(filepath.Join(dst, "keep")); string(data) != "mine" {
		t.Error("Extract touched the existing file")
	}
}

func TestWriteRefusesSpecialFiles(t *testing.T) {
	k := mustKey(t)
	src := t.TempDir()
	writeTree(t, src, testTree{"a": {data: "a", mode: 0o600}})
	mustNil(t, os.Symlink("/etc/passwd", filepath.Join(src, "link")))
	_, err := Write(io.Discard, sampleManifest(), k, src)
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("error %v, want a refusal of the symbolic link", err)
	}
	if _, err := Write(io.Discard, sampleManifest(), k, filepath.Join(src, "a")); err == nil {
		t.Error("Write of a file, not a directory, succeeded")
	}
}

// assertEmpty fails unless dir is an empty directory.
func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	mustNil(t, err)
	for _, e := range entries {
		t.Errorf("%s left in %s", e.Name(), dir)
	}
}

// BenchmarkWriteExtract writes and extracts 10 MiB: half random bytes, half
// repetitive text, as a database holds both.
func BenchmarkWriteExtract(b *testing.B) {
	k := mustKey(b)
	rnd := rand.New(rand.NewPCG(3, 4))
	random := make([]byte, 5<<20)
	for i := range random {
		random[i] = byte(rnd.UintN(256))
	}
	line := []byte("key=/registry/pods/default/web-0 value={\"kind\":\"Pod\"}\n")
	text := bytes.Repeat(line, (5<<20)/len(line)+1)[:5<<20]
	src := b.TempDir()
	mustNil(b, os.WriteFile(filepath.Join(src, "random"), random, 0o600))
	mustNil(b, os.WriteFile(filepath.Join(src, "text"), text, 0o600))
	work := b.TempDir()
	archive, out := filepath.Join(work, "archive"), filepath.Join(work, "out")
	b.SetBytes(int64(len(random) + len(text)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f, err := os.Create(archive)
		mustNil(b, err)
		_, err = Write(f, sampleManifest(), k, src)
		mustNil(b, err)
		_, err = f.Seek(0, io.SeekStart)
		mustNil(b, err)
		_, err = Extract(f, k, out)
		mustNil(b, err)
		mustNil(b, f.Close())
		mustNil(b, os.RemoveAll(out))
	}
}

// TestCopyFileSizeChanged: a file whose size differs from the one it was
// listed with (something writes to it) fails the snapshot.
func TestCopyFileSizeChanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	mustNil(t, os.WriteFile(path, []byte("12345"), 0o600))
	mustNil(t, copyFile(io.Discard, path, 5))
	for listed, says := range map[int64]string{4: "grew", 6: "shrank"} {
		if err := copyFile(io.Discard, path, listed); err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("listed with %d bytes: error %v, want one saying it %s", listed, err, says)
		}
	}
}
