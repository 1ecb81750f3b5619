package server

import (
	"github.com/sublet-dev/sublet/internal/platformapi"

	"context"
	"fmt"
	"net/http"
	"time"
	"unicode"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
)

// Bounds of an access key's fields, so a key costs a known amount to
// store, list and check.
const (
	maxKeyUserLength        = 256
	maxKeyGroups            = 32
	maxKeyGroupLength       = 256
	maxKeyDescriptionLength = 1024
	maxKeyTTL               = 10 * 365 * 24 * time.Hour
)

// keyUserIndex indexes AccessKeys by spec.user.
const keyUserIndex = "spec.user"

// requestError is a request refused with code and a message saying why.
type requestError struct {
	code int
	msg  string
}

func (e *requestError) Error() string { return e.msg }

// checkKeyRequest checks the fields of a key to create against their
// bounds and returns its lifetime (0: no expiry).
func checkKeyRequest(req *platformapi.AccessKeyRequest) (time.Duration, *requestError) {
	invalid := func(format string, args ...interface{}) (time.Duration, *requestError) {
		return 0, &requestError{code: http.StatusUnprocessableEntity, msg: fmt.Sprintf(format, args...)}
	}
	if msg := checkText("user", req.User, maxKeyUserLength, false); msg != "" {
		return invalid("%s", msg)
	}
	if len(req.Groups) > maxKeyGroups {
		return invalid("a key may have at most %d groups; %d were given", maxKeyGroups, len(req.Groups))
	}
	for _, g := range req.Groups {
		if msg := checkText("group", g, maxKeyGroupLength, false); msg != "" {
			return invalid("%s", msg)
		}
	}
	if req.Description != "" {
		if msg := checkText("description", req.Description, maxKeyDescriptionLength, true); msg != "" {
			return invalid("%s", msg)
		}
	}
	if req.TTL == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(req.TTL)
	if err != nil || d <= 0 {
		return 0, &requestError{code: http.StatusBadRequest, msg: fmt.Sprintf("ttl %q is not a positive duration (example: 720h)", req.TTL)}
	}
	if d > maxKeyTTL {
		return invalid("ttl %s is longer than %s (10 years), the most a key may have; leave --ttl out for a key that does not expire", req.TTL, shortDuration(maxKeyTTL))
	}
	return d, nil
}

// checkText says what is wrong with field value s ("" if nothing): empty,
// longer than max characters, not UTF-8, or with control characters (line
// breaks and tabs allowed if multiline).
func checkText(field, s string, max int, multiline bool) string {
	switch {
	case s == "":
		return field + " is empty"
	case !utf8.ValidString(s):
		return field + " is not valid UTF-8"
	case utf8.RuneCountInString(s) > max:
		return fmt.Sprintf("%s is %d characters long, longer than the %d a key's %s may have", field, utf8.RuneCountInString(s), max, field)
	}
	for _, r := range s {
		if unicode.IsControl(r) && !(multiline && (r == '\n' || r == '\t')) {
			return fmt.Sprintf("%s %q has a control character (%U)", field, s, r)
		}
	}
	return ""
}

// keysOf counts the AccessKeys of user the server's cache knows.
func (s *Server) keysOf(ctx context.Context, user string) (int, error) {
	list := &storagev1.AccessKeyList{}
	if err := s.cache.List(ctx, list, client.MatchingFields{keyUserIndex: user}); err != nil {
		return 0, err
	}
	return len(list.Items), nil
}

// keyCapError is the refusal of a key for user, who has n keys.
func (s *Server) keyCapError(user string, n int) *requestError {
	return &requestError{code: http.StatusUnprocessableEntity, msg: fmt.Sprintf(
		"user %q has %d access keys, and %d is the most one user may have (the server's --%s): delete one that is no longer needed with 'sublet delete accesskey NAME' ('sublet list accesskeys' lists them, expired ones too), then try again",
		user, n, s.limits.AccessKeysPerUser, flagAccessKeysPerUser)}
}

// awaitKeyInCache waits until the server's cache has key name, so the next
// count sees it and the key authenticates as soon as it is handed out. A
// cache that is slow to catch up only delays the reply.
func (s *Server) awaitKeyInCache(ctx context.Context, name string) {
	s.awaitKeyCached(ctx, name, true)
}

// awaitKeyCached waits until the server's cache has key name (present) or
// no longer has it: a deleted key frees its place under the cap, and stops
// authenticating, by the time the deletion is answered.
func (s *Server) awaitKeyCached(ctx context.Context, name string, present bool) {
	_ = wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		err := s.cache.Get(ctx, types.NamespacedName{Name: name}, &storagev1.AccessKey{})
		return (err == nil) == present, nil
	})
}
