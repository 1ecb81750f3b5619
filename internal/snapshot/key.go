package snapshot

import (
	"errors"
	"fmt"
	"strings"

	"filippo.io/age"
)

// Key is the platform's snapshot key: an age X25519 identity. Snapshots are
// encrypted to its recipient and only a platform holding the key reads them.
//
// Key has no String method, on purpose: printed or logged (%v, %+v, %#v,
// JSON) it shows a pointer or nothing, never the secret, and a caller must
// say which form it wants: Secret or Recipient.
type Key struct {
	id *age.X25519Identity
}

// GenerateKey returns a new random key.
func GenerateKey() (*Key, error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("generate snapshot key: %w", err)
	}
	return &Key{id: id}, nil
}

// ParseKey parses the form Secret returns; surrounding space is ignored.
// Its errors never contain s.
func ParseKey(s string) (*Key, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "age1") {
		return nil, errors.New("the snapshot key is an age public key (age1…): give the secret key (AGE-SECRET-KEY-1…)")
	}
	// age's own errors may quote part of s, so they are not passed on.
	id, err := age.ParseX25519Identity(s)
	if err != nil {
		return nil, errors.New("the snapshot key is not an age X25519 secret key (AGE-SECRET-KEY-1…): check the Secret that holds it")
	}
	return &Key{id: id}, nil
}

// Secret returns the key in the AGE-SECRET-KEY-1… form, for storing in a
// Kubernetes Secret. It is the secret itself: never log it or put it in an
// error.
func (k *Key) Secret() string { return k.id.String() }

// Recipient returns the public form of the key (age1…), which snapshots
// record in their manifest.
func (k *Key) Recipient() string { return k.id.Recipient().String() }
