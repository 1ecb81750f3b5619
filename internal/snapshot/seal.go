package snapshot

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"
)

// readSealedManifest reads the manifest that must be the payload's first
// entry.
func readSealedManifest(tr *tar.Reader) (Manifest, error) {
	hdr, err := tr.Next()
	if errors.Is(err, io.EOF) {
		return Manifest{}, corrupt(theArchive, fmt.Errorf("its payload is empty: it lacks its sealed manifest %s", sealedManifestEntry))
	}
	if err != nil {
		return Manifest{}, corrupt(theArchive, fmt.Errorf("payload: %w", err))
	}
	if hdr.Name != sealedManifestEntry || hdr.Typeflag != tar.TypeReg {
		return Manifest{}, corrupt(theArchive, fmt.Errorf("its payload begins with %q, not its sealed manifest %s", hdr.Name, sealedManifestEntry))
	}
	return parseManifest(tr, hdr, "sealed manifest")
}

// checkSealed refuses a clear manifest m other than the sealed one. The
// error names the fields that differ but not their sealed values: whoever
// swapped the clear manifest is not to learn what the payload describes.
func checkSealed(m, sealed Manifest) error {
	if sameManifest(m, sealed) {
		return nil
	}
	fields := manifestDiff(m, sealed)
	var what string
	switch len(fields) {
	case 0: // a field manifestDiff cannot tell apart; sameManifest decides
		what = "it differs"
	case 1:
		what = "its " + fields[0] + " differs"
	default:
		what = "its " + strings.Join(fields, ", ") + " differ"
	}
	return corrupt(theArchive, fmt.Errorf("its clear manifest was altered: %s from the manifest sealed in its payload", what))
}

// sameManifest says whether a and b are equal in every field, with times
// equal when they are the same instant.
func sameManifest(a, b Manifest) bool {
	a.Created, b.Created = a.Created.Round(0).UTC(), b.Created.Round(0).UTC()
	return reflect.DeepEqual(a, b)
}

// manifestDiff returns the JSON paths (e.g. "source.namespace") of the
// fields in which a and b differ. It walks the struct, so a field added to
// Manifest is compared without a change here.
func manifestDiff(a, b Manifest) []string {
	return diffFields(reflect.ValueOf(a), reflect.ValueOf(b), "")
}

var timeType = reflect.TypeFor[time.Time]()

func diffFields(a, b reflect.Value, prefix string) []string {
	var diff []string
	t := a.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name := prefix + jsonName(f)
		fa, fb := a.Field(i), b.Field(i)
		switch {
		case f.Type == timeType:
			if !fa.Interface().(time.Time).Equal(fb.Interface().(time.Time)) {
				diff = append(diff, name)
			}
		case f.Type.Kind() == reflect.Struct:
			diff = append(diff, diffFields(fa, fb, name+".")...)
		case !reflect.DeepEqual(fa.Interface(), fb.Interface()):
			diff = append(diff, name)
		}
	}
	return diff
}

// jsonName is the name f has in the manifest's JSON.
func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "" {
		return f.Name
	}
	return name
}
