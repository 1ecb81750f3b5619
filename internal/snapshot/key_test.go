package snapshot

import (
	"strings"
	"testing"
)

func TestKeyRoundTrip(t *testing.T) {
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k.Secret(), "AGE-SECRET-KEY-1") {
		t.Errorf("Secret() = %.20s…, want the AGE-SECRET-KEY-1 form", k.Secret())
	}
	if !strings.HasPrefix(k.Recipient(), "age1") {
		t.Errorf("Recipient() = %q, want the age1 form", k.Recipient())
	}
	// A Secret's data often ends with a newline.
	parsed, err := ParseKey(" " + k.Secret() + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Secret() != k.Secret() || parsed.Recipient() != k.Recipient() {
		t.Error("parsed key differs from the generated one")
	}
	other, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if other.Recipient() == k.Recipient() {
		t.Error("two generated keys have the same recipient")
	}
}

func TestParseKeyErrorsKeepTheSecret(t *testing.T) {
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	secret := k.Secret()
	// One character changed breaks the bech32 checksum.
	last := secret[len(secret)-1]
	damaged := secret[:len(secret)-1] + string("QP"[boolIndex(last == 'Q')])
	cases := map[string]string{
		"damaged":   damaged,
		"truncated": secret[:len(secret)-5],
		"other":     "OTHER-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ",
		"password":  "hunter2-very-secret",
		"empty":     "",
	}
	for name, s := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseKey(s)
			if err == nil {
				t.Fatal("no error")
			}
			if s != "" && strings.Contains(err.Error(), s[len(s)/2:]) {
				t.Errorf("error %q quotes the key", err)
			}
			if !strings.Contains(err.Error(), "AGE-SECRET-KEY-1") {
				t.Errorf("error %q does not say what a key looks like", err)
			}
		})
	}
	if _, err := ParseKey(k.Recipient()); err == nil || !strings.Contains(err.Error(), "public key") {
		t.Errorf("ParseKey(recipient) error = %v, want one that says it is the public key", err)
	}
}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}
