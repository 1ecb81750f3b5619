package snapshot

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// archiveWith writes tree with k under the manifest m.
func archiveWith(t testing.TB, k *Key, m Manifest, tree testTree) []byte {
	t.Helper()
	src := t.TempDir()
	writeTree(t, src, tree)
	var buf bytes.Buffer
	_, err := Write(&buf, m, k, src)
	mustNil(t, err)
	return buf.Bytes()
}

// payloadBytes returns the contents of archive's payload entry, as written.
func payloadBytes(t testing.TB, archive []byte) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		hdr, err := tr.Next()
		mustNil(t, err)
		if hdr.Name == payloadEntry {
			data, err := io.ReadAll(tr)
			mustNil(t, err)
			return data
		}
	}
}

// expectAltered wants Extract to refuse archive as corrupt, nothing written,
// with a message that says the clear manifest was altered and names field.
func expectAltered(t *testing.T, k *Key, archive []byte, field string) {
	t.Helper()
	expectCorrupt(t, k, archive, field)
	_, err := Extract(bytes.NewReader(archive), k, t.TempDir())
	want := "its clear manifest was altered: its " + field + " differ"
	if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q, want one line with %q", err, want)
	}
}

// TestExtractRefusesSplice: the payload of team B's snapshot under the clear
// manifest of team A's, both made with the platform's key, is refused, and
// the error does not tell team A what B's sealed manifest says.
func TestExtractRefusesSplice(t *testing.T) {
	k := mustKey(t)
	ma := sampleManifest()
	mb := sampleManifest()
	mb.Source = Source{Namespace: "team-b", Name: "prod", UID: "b-uid"}
	archiveA := archiveWith(t, k, ma, testTree{"a": {data: "team a", mode: 0o600}})
	archiveB := archiveWith(t, k, mb, testTree{"b": {data: "team b", mode: 0o600}})
	clearA, err := ReadManifest(bytes.NewReader(archiveA))
	mustNil(t, err)

	spliced := handMade(t, clearA, payloadBytes(t, archiveB))
	if m, err := ReadManifest(bytes.NewReader(spliced)); err != nil || m.Source.Namespace != "team-a" {
		t.Fatalf("the spliced archive's clear manifest: %+v, %v; want team-a's", m, err)
	}
	expectAltered(t, k, spliced, "source.namespace, source.name, source.uid")
	m, err := Extract(bytes.NewReader(spliced), k, t.TempDir())
	if m != (Manifest{}) {
		t.Errorf("Extract returned %+v with its error, want the zero Manifest", m)
	}
	for _, s := range []string{"team-b", "prod", "b-uid"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q shows the sealed manifest's %q", err, s)
		}
	}

	// Each archive alone still extracts, with its own manifest.
	for name, c := range map[string]struct {
		archive []byte
		ns      string
	}{"a": {archiveA, "team-a"}, "b": {archiveB, "team-b"}} {
		m, err := Extract(bytes.NewReader(c.archive), k, t.TempDir())
		if err != nil || m.Source.Namespace != c.ns {
			t.Errorf("archive %s: %+v, %v; want namespace %s", name, m.Source, err, c.ns)
		}
	}
}

// TestExtractRefusesAlteredManifest changes one field of the clear manifest
// of a written archive at a time and re-tars it with the original payload.
func TestExtractRefusesAlteredManifest(t *testing.T) {
	k := mustKey(t)
	archive := archiveWith(t, k, sampleManifest(), testTree{"f": {data: "x", mode: 0o600}})
	payload := payloadBytes(t, archive)
	orig, err := ReadManifest(bytes.NewReader(archive))
	mustNil(t, err)
	// A recipient that is not k's, with a payload k decrypts all the same.
	other := mustKey(t).Recipient()
	cases := map[string]func(m *Manifest){
		"name":              func(m *Manifest) { m.Name = "weekly" },
		"source.namespace":  func(m *Manifest) { m.Source.Namespace = "team-b" },
		"source.name":       func(m *Manifest) { m.Source.Name = "prod" },
		"source.uid":        func(m *Manifest) { m.Source.UID = "other-uid" },
		"created":           func(m *Manifest) { m.Created = m.Created.Add(time.Second) },
		"kubernetesVersion": func(m *Manifest) { m.KubernetesVersion = "v1.31.0" },
		"datastore":         func(m *Manifest) { m.Datastore = "etcd" },
		"values":            func(m *Manifest) { m.Values = "" },
		"template":          func(m *Manifest) { m.Template = "large" },
		"ownValues":         func(m *Manifest) { m.OwnValues = "a: 2\n" },
		"recipient":         func(m *Manifest) { m.Recipient = other },
		"sleeping":          func(m *Manifest) { m.Sleeping = false },
	}
	// Format is checked before the payload is opened: another format is
	// refused as such (TestExtractRefusesOtherFormats).
	if got, want := len(cases)+1, len(manifestDiff(Manifest{}, allFieldsSet())); got != want {
		t.Fatalf("%d cases and format, for %d manifest fields: add a case for the new field", got-1, want)
	}
	for field, alter := range cases {
		t.Run(field, func(t *testing.T) {
			m := orig
			alter(&m)
			expectAltered(t, k, handMade(t, m, payload), field)
		})
	}

	// The same instant in another zone, or the JSON laid out otherwise, is
	// the same manifest.
	m := orig
	m.Created = m.Created.In(time.FixedZone("CET", 3600))
	got, err := Extract(bytes.NewReader(handMade(t, m, payload)), k, t.TempDir())
	if err != nil || !sameManifest(got, orig) {
		t.Errorf("Created in another zone: %+v, %v; want it accepted", got, err)
	}
}

// allFieldsSet returns a manifest with every field, however deep, set to a
// value other than its zero.
func allFieldsSet() Manifest {
	var m Manifest
	setAll(reflect.ValueOf(&m).Elem())
	return m
}

func setAll(v reflect.Value) {
	switch {
	case v.Type() == timeType:
		v.Set(reflect.ValueOf(time.Unix(1, 0)))
	case v.Kind() == reflect.Struct:
		for i := range v.NumField() {
			setAll(v.Field(i))
		}
	case v.Kind() == reflect.String:
		v.SetString("x")
	case v.Kind() == reflect.Int:
		v.SetInt(1)
	case v.Kind() == reflect.Bool:
		v.SetBool(true)
	default:
		panic("allFieldsSet: set a " + v.Kind().String() + " here")
	}
}

// TestManifestDiffCoversEveryField: every field of Manifest, a new one too,
// is compared, and named by its JSON path.
func TestManifestDiffCoversEveryField(t *testing.T) {
	full := allFieldsSet()
	diff := manifestDiff(Manifest{}, full)
	data, err := json.Marshal(full)
	mustNil(t, err)
	var generic map[string]any
	mustNil(t, json.Unmarshal(data, &generic))
	want := jsonPaths(generic, "")
	slices.Sort(want)
	if strings.Join(slices.Sorted(slices.Values(diff)), ",") != strings.Join(want, ",") {
		t.Errorf("manifestDiff names %v, want the JSON paths %v", diff, want)
	}
	if sameManifest(Manifest{}, full) || !sameManifest(full, full) {
		t.Error("sameManifest does not tell a full manifest from the zero one")
	}
	if d := manifestDiff(full, full); len(d) != 0 {
		t.Errorf("manifestDiff of a manifest with itself: %v", d)
	}
}

// jsonPaths returns the dotted paths of the leaves of v, in no order.
func jsonPaths(v map[string]any, prefix string) []string {
	var paths []string
	for k, x := range v {
		if sub, ok := x.(map[string]any); ok {
			paths = append(paths, jsonPaths(sub, prefix+k+".")...)
		} else {
			paths = append(paths, prefix+k)
		}
	}
	return paths
}

// TestExtractNeedsSealedManifest: a payload that lacks the sealed manifest,
// or does not begin with it, or whose sealed manifest is not JSON, is
// refused before anything is written.
func TestExtractNeedsSealedManifest(t *testing.T) {
	k := mustKey(t)
	m := manifestFor(k)
	sealed := sealedEntry(t, m)
	cases := map[string][]entrySpec{
		"empty":      nil,
		"missing":    {reg("f", "x")},
		"second":     {reg("f", "x"), sealed},
		"directory":  {{hdr: tar.Header{Typeflag: tar.TypeDir, Name: sealedManifestEntry + "/", Mode: 0o700}}, reg("f", "x")},
		"dotted":     {reg("./"+sealedManifestEntry, sealed.data), reg("f", "x")},
		"not json":   {reg(sealedManifestEntry, "not json"), reg("f", "x")},
		"old layout": {reg("db/state.db", "data")},
	}
	for name, entries := range cases {
		t.Run(name, func(t *testing.T) {
			expectCorrupt(t, k, handMade(t, m, payloadOf(t, k, entries)), name)
			_, err := Extract(bytes.NewReader(handMade(t, m, payloadOf(t, k, entries))), k, t.TempDir())
			if !strings.Contains(err.Error(), "sealed manifest") {
				t.Errorf("error %q does not say what is wrong with the sealed manifest", err)
			}
		})
	}
}

// TestWriteRefusesReservedName: the sealed manifest's name cannot come from
// the directory, as a file or a directory; deeper down it is an ordinary name.
func TestWriteRefusesReservedName(t *testing.T) {
	k := mustKey(t)
	for name, tree := range map[string]testTree{
		"file":      {sealedManifestEntry: {data: `{"source":{"namespace":"team-b"}}`, mode: 0o600}},
		"directory": {sealedManifestEntry + "/": {mode: 0o700}, "a": {data: "a", mode: 0o600}},
	} {
		src := t.TempDir()
		writeTree(t, src, tree)
		_, err := Write(io.Discard, sampleManifest(), k, src)
		if err == nil || !strings.Contains(err.Error(), sealedManifestEntry) || !strings.Contains(err.Error(), "move") {
			t.Errorf("%s: error %v, want a refusal of %s", name, err, sealedManifestEntry)
		}
	}

	nested := testTree{"sub/": {mode: 0o700}, "sub/" + sealedManifestEntry: {data: "mine", mode: 0o600}}
	dst := t.TempDir()
	_, err := Extract(bytes.NewReader(archiveOf(t, k, nested)), k, dst)
	mustNil(t, err)
	compareTrees(t, readTree(t, dst), nested)
}

// TestKeyPrintsNoSecret: however a Key is printed or marshalled, the secret
// does not show.
func TestKeyPrintsNoSecret(t *testing.T) {
	k := mustKey(t)
	secret := k.Secret()
	if _, ok := any(k).(fmt.Stringer); ok {
		t.Error("*Key is a fmt.Stringer; printing a key would call it")
	}
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		out = append(out, fmt.Sprintf(verb, k), fmt.Sprintf(verb, *k))
	}
	data, err := json.Marshal(k)
	mustNil(t, err)
	out = append(out, string(data), fmt.Sprint(k), fmt.Sprintln(*k))
	for _, s := range out {
		if strings.Contains(strings.ToUpper(s), "AGE-SECRET-KEY") || strings.Contains(strings.ToUpper(s), secret[len(secret)/2:]) {
			t.Errorf("%q shows the secret", s)
		}
	}
}

// TestExtractReturnsSealedManifest: what Extract returns comes from the
// payload, and nothing of the sealed manifest is left in the target.
func TestExtractReturnsSealedManifest(t *testing.T) {
	k := mustKey(t)
	m := manifestFor(k)
	dst := t.TempDir()
	got, err := Extract(bytes.NewReader(handMade(t, m, sealedPayloadOf(t, k, m, []entrySpec{reg("f", "x")}))), k, dst)
	mustNil(t, err)
	if !sameManifest(got, m) {
		t.Errorf("Extract returned %+v, want %+v", got, m)
	}
	if _, err := os.Stat(filepath.Join(dst, sealedManifestEntry)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the sealed manifest was written into the target (%v)", err)
	}
	compareTrees(t, readTree(t, dst), testTree{"f": {data: "x", mode: 0o600}})
}
