package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestExtractWithinLimits: a payload that unpacks to more bytes or entries
// than allowed (it compresses to little: anyone with the platform's
// recipient can make one) is refused before its excess is written, and
// nothing it wrote stays; one just within the limits unpacks.
func TestExtractWithinLimits(t *testing.T) {
	k := mustKey(t)
	zeros := strings.Repeat("\x00", 4<<20)
	bomb := archiveOf(t, k, testTree{"db/": {mode: 0o700}, "db/a": {data: "small", mode: 0o600}, "db/state.db": {data: zeros, mode: 0o600}})
	if len(bomb) > 64<<10 {
		t.Fatalf("the test's payload is %d bytes; it should compress to little", len(bomb))
	}
	many := testTree{}
	for i := range 20 {
		many[fmt.Sprintf("f%02d", i)] = testFile{data: "x", mode: 0o600}
	}
	manyArchive := archiveOf(t, k, many)
	for _, tc := range []struct {
		name    string
		archive []byte
		lim     Limits
		refused bool
	}{
		{"bytes over", bomb, Limits{Bytes: 4 << 20, Entries: 100}, true},
		{"bytes just within", bomb, Limits{Bytes: 4<<20 + 5, Entries: 100}, false},
		{"entries over", manyArchive, Limits{Bytes: 1 << 20, Entries: 19}, true},
		{"entries just within", manyArchive, Limits{Bytes: 1 << 20, Entries: 20}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := t.TempDir()
			_, err := ExtractWithin(bytes.NewReader(tc.archive), k, dst, tc.lim)
			if !tc.refused {
				mustNil(t, err)
				return
			}
			if !errors.Is(err, ErrTooLarge) || errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v, want one matching ErrTooLarge only", err)
			}
			assertEmpty(t, dst)
		})
	}
}
