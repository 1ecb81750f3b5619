package ui

import (
	"strings"
	"testing"
)

// TestSafeNext: the page a login returns to is a path of this site, or /.
// Each refused case is one a browser reads as another site (or a URL
// parser and a browser read differently).
func TestSafeNext(t *testing.T) {
	for _, tc := range []struct {
		name, next, want string
	}{
		// Kept: paths of this site, with queries and encoded parts that
		// stay on it.
		{"root", "/", "/"},
		{"a page", "/accesskeys", "/accesskeys"},
		{"a virtual cluster", "/vc/local/team-a/demo", "/vc/local/team-a/demo"},
		{"a query", "/?name=demo&cluster=local", "/?name=demo&cluster=local"},
		{"an encoded space", "/?flash=Going%20to%20sleep.", "/?flash=Going%20to%20sleep."},
		{"an encoded slash inside", "/vc/local/a%2Fb/demo", "/vc/local/a%2Fb/demo"},
		{"a fragment", "/vc/local/team-a/demo#connect-h", "/vc/local/team-a/demo#connect-h"},

		// Refused: another host.
		{"empty", "", "/"},
		{"protocol-relative", "//evil.example/", "/"},
		{"protocol-relative with a path", "//evil.example/login", "/"},
		{"backslash after the slash", `/\evil.example/`, "/"},
		{"backslash first", `\\evil.example/`, "/"},
		{"backslashes", `/\/evil.example/`, "/"},
		{"a backslash later", `/a\b`, "/"},
		{"tab between the slashes", "/\t/evil.example/", "/"},
		{"newline between the slashes", "/\n/evil.example/", "/"},
		{"carriage return between the slashes", "/\r/evil.example/", "/"},
		{"NUL", "/\x00/evil.example/", "/"},
		{"DEL", "/\x7f/evil.example/", "/"},
		{"C1 control", "/\u0085/evil.example/", "/"},
		{"encoded tab", "/%09/evil.example/", "/"},
		{"encoded newline", "/%0a/evil.example/", "/"},
		{"encoded NUL", "/%00/evil.example/", "/"},
		{"encoded slash", "/%2f/evil.example/", "/"},
		{"encoded slash, upper case", "/%2F%2Fevil.example/", "/"},
		{"encoded backslash", "/%5cevil.example/", "/"},
		{"encoded backslash, upper case", "/%5C%5Cevil.example/", "/"},
		{"doubly encoded slash", "/%252f/evil.example/", "/"},
		{"doubly encoded backslash", "/%255cevil.example/", "/"},
		{"doubly encoded tab", "/%2509/evil.example/", "/"},
		{"encoded again and again", "/" + strings.Repeat("%25", 6) + "41", "/"},
		{"a bad escape", "/%zz", "/"},

		// Refused: schemes, and what is not a path.
		{"https URL", "https://evil.example/", "/"},
		{"scheme-relative without slash", "https:evil.example", "/"},
		{"javascript", "javascript:alert(1)", "/"},
		{"data", "data:text/html,<script>alert(1)</script>", "/"},
		{"relative path", "accesskeys", "/"},
		{"dot path", "./accesskeys", "/"},
		{"leading space", " /accesskeys", "/"},
		{"leading tab", "\t//evil.example/", "/"},
		{"user info", "//user@evil.example/", "/"},
		{"too long", "/" + strings.Repeat("a", maxNextLength), "/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := safeNext(tc.next); got != tc.want {
				t.Errorf("safeNext(%q) = %q, want %q", tc.next, got, tc.want)
			}
		})
	}
}
