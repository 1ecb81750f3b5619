package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
)

// keyHashIndex indexes AccessKeys by spec.keySHA256.
const keyHashIndex = "spec.keySHA256"

// KeyPrefix starts every access key, so a leaked one is recognisable.
const KeyPrefix = "slk_"

// User is who a request is from.
type User struct {
	Name   string   `json:"user"`
	Groups []string `json:"groups"`
	// Key is the AccessKey object's name.
	Key string `json:"accessKey"`
}

// HashKey returns the hex SHA-256 of an access key, as AccessKeys store it.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// NewKey returns a fresh random access key.
func NewKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return KeyPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

var errUnauthorized = errors.New("unauthorized")

// authenticate finds the AccessKey of the request's bearer token.
func (s *Server) authenticate(ctx context.Context, r *http.Request) (*User, error) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		return nil, errUnauthorized
	}
	list := &storagev1.AccessKeyList{}
	if err := s.cache.List(ctx, list, client.MatchingFields{keyHashIndex: HashKey(token)}); err != nil {
		return nil, err
	}
	for _, k := range list.Items {
		if k.Spec.Expiration != nil && !time.Now().Before(k.Spec.Expiration.Time) {
			continue
		}
		return &User{Name: k.Spec.User, Groups: k.Spec.Groups, Key: k.Name}, nil
	}
	return nil, errUnauthorized
}
