package ui

import (
	"net/url"
	"strings"
)

// maxNextLength bounds the page a login returns to.
const maxNextLength = 2048

// safeNext returns next if it is a path on this site to return to after
// logging in, else "/". Browsers read more as "another site" than a URL
// parser does: they drop tabs and line breaks, treat \ as /, and a path
// starting with // (or /\) names a host. So next must start with a single
// /, hold no \ or control character, and stay so however many times it is
// percent-decoded.
func safeNext(next string) string {
	if next == "" || len(next) > maxNextLength {
		return "/"
	}
	for s, i := next, 0; ; i++ {
		if !sameSitePath(s) {
			return "/"
		}
		decoded, err := url.PathUnescape(s)
		if err != nil {
			return "/"
		}
		if decoded == s {
			break
		}
		if i == 3 {
			return "/" // encoded again and again: no page of ours
		}
		s = decoded
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return "/"
	}
	return next
}

// sameSitePath reports whether s, read as a browser would, is a path on
// this site: one leading /, no \, no control characters.
func sameSitePath(s string) bool {
	if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") {
		return false
	}
	for _, r := range s {
		if r < ' ' || r == 0x7f || r == '\\' || (r >= 0x80 && r <= 0x9f) {
			return false
		}
	}
	return true
}
