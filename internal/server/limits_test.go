package server

import (
	"github.com/sublet-dev/sublet/internal/platformapi"

	"strings"
	"testing"
	"time"
)

func TestRateFlag(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Rate
		str  string
		err  bool
	}{
		{in: "60/1m", want: Rate{60, time.Minute}, str: "60/1m"},
		{in: "10/m", want: Rate{10, time.Minute}, str: "10/1m"},
		{in: "200/5s", want: Rate{200, 5 * time.Second}, str: "200/5s"},
		{in: "5/90s", want: Rate{5, 90 * time.Second}, str: "5/90s"},
		{in: "3/1h", want: Rate{3, time.Hour}, str: "3/1h"},
		{in: "1/1500ms", want: Rate{1, 1500 * time.Millisecond}, str: "1/1.5s"},
		{in: "60", err: true},
		{in: "0/1m", err: true},
		{in: "-1/1m", err: true},
		{in: "x/1m", err: true},
		{in: "60/", err: true},
		{in: "60/0s", err: true},
		{in: "60/-1m", err: true},
		{in: "60/fortnight", err: true},
	} {
		var r Rate
		err := r.Set(tc.in)
		if tc.err {
			if err == nil || !strings.Contains(err.Error(), "60/1m") {
				t.Errorf("Set(%q) = %v, want an error with an example", tc.in, err)
			}
			continue
		}
		if err != nil || r != tc.want || r.String() != tc.str {
			t.Errorf("Set(%q) = %v %v (%q), want %v (%q)", tc.in, r, err, r.String(), tc.want, tc.str)
		}
	}
}

func TestLimitsComplete(t *testing.T) {
	if got := (Limits{}).complete(); got != DefaultLimits() {
		t.Errorf("zero limits completed to %+v, want the defaults %+v", got, DefaultLimits())
	}
	set := Limits{AccessKeysPerUser: 3, FailedLogins: Rate{1, time.Hour}}
	got := set.complete()
	if got.AccessKeysPerUser != 3 || got.FailedLogins != set.FailedLogins || got.SessionsPerUser != DefaultLimits().SessionsPerUser {
		t.Errorf("complete() changed what was set or left a zero: %+v", got)
	}
	if err := (&Limits{AccessKeysPerUser: -1, SessionsPerUser: 1}).Validate(); err == nil || !strings.Contains(err.Error(), "--max-access-keys-per-user") {
		t.Errorf("a negative cap: %v, want an error naming the flag", err)
	}
}

func TestBuckets(t *testing.T) {
	b := newBuckets(Rate{N: 3, Per: time.Hour})
	for i := 0; i < 3; i++ {
		if ok, _ := b.take("alice"); !ok {
			t.Fatalf("take %d of 3 refused", i+1)
		}
	}
	ok, after := b.take("alice")
	if ok || after < 19*time.Minute || after > 20*time.Minute {
		t.Errorf("the 4th take: %v, retry after %s; want refused, retry after about 20m (an hour / 3)", ok, after)
	}
	if ok, _ := b.take("bob"); !ok {
		t.Errorf("bob's take refused because alice is at her limit")
	}
}

func TestLimitErrorMessage(t *testing.T) {
	e := &limitError{what: `access keys created by user "alice"`, rate: Rate{60, time.Minute}, flag: flagKeyCreations, retryAfter: 1500 * time.Millisecond}
	want := `too many access keys created by user "alice": at most 60 per 1m (the server's --access-key-create-limit 60/1m); retry in 2s`
	if e.Error() != want {
		t.Errorf("message:\n%s\nwant\n%s", e.Error(), want)
	}
	for d, secs := range map[time.Duration]int{0: 1, time.Millisecond: 1, time.Second: 1, 1001 * time.Millisecond: 2, time.Minute: 60} {
		if got := retryAfterSeconds(d); got != secs {
			t.Errorf("retryAfterSeconds(%s) = %d, want %d", d, got, secs)
		}
	}
}

func TestClientAddress(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.7:51234":                    "10.0.0.7",
		"[2001:db8:1:2:3:4:5:6]:443":        "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff:ffff:ffff:1]:1": "2001:db8:1:2::/64",
		"[::ffff:10.0.0.7]:80":              "10.0.0.7",
		"192.0.2.1":                         "192.0.2.1",
		"pipe":                              "pipe",
	} {
		if got := clientAddress(in); got != want {
			t.Errorf("clientAddress(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckKeyRequest(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	groups := func(n int) []string {
		g := make([]string, n)
		for i := range g {
			g[i] = "g"
		}
		return g
	}
	for _, tc := range []struct {
		name string
		req  platformapi.AccessKeyRequest
		code int
		want string
		ttl  time.Duration
	}{
		{name: "plain", req: platformapi.AccessKeyRequest{User: "alice", Groups: []string{"team-a"}}},
		{name: "at every bound", req: platformapi.AccessKeyRequest{User: long(maxKeyUserLength), Groups: groups(maxKeyGroups),
			Description: long(maxKeyDescriptionLength), TTL: "87600h"}, ttl: maxKeyTTL},
		{name: "a multi-line description", req: platformapi.AccessKeyRequest{User: "alice", Description: "for CI\n\trunner 3"}},
		{name: "a ttl", req: platformapi.AccessKeyRequest{User: "alice", TTL: "720h"}, ttl: 720 * time.Hour},
		{name: "user too long", req: platformapi.AccessKeyRequest{User: long(maxKeyUserLength + 1)}, code: 422, want: "user is 257 characters long, longer than the 256"},
		{name: "user with a newline", req: platformapi.AccessKeyRequest{User: "alice\nadmin"}, code: 422, want: "user \"alice\\nadmin\" has a control character"},
		{name: "user not UTF-8", req: platformapi.AccessKeyRequest{User: "\xff"}, code: 422, want: "not valid UTF-8"},
		{name: "too many groups", req: platformapi.AccessKeyRequest{User: "alice", Groups: groups(maxKeyGroups + 1)}, code: 422, want: "at most 32 groups; 33 were given"},
		{name: "group too long", req: platformapi.AccessKeyRequest{User: "alice", Groups: []string{long(maxKeyGroupLength + 1)}}, code: 422, want: "group is 257 characters long"},
		{name: "empty group", req: platformapi.AccessKeyRequest{User: "alice", Groups: []string{""}}, code: 422, want: "group is empty"},
		{name: "description too long", req: platformapi.AccessKeyRequest{User: "alice", Description: long(maxKeyDescriptionLength + 1)}, code: 422, want: "description is 1025 characters long"},
		{name: "description with an escape", req: platformapi.AccessKeyRequest{User: "alice", Description: "\x1b[2J"}, code: 422, want: "control character"},
		{name: "ttl too long", req: platformapi.AccessKeyRequest{User: "alice", TTL: "87601h"}, code: 422, want: "longer than 87600h (10 years)"},
		{name: "ttl not a duration", req: platformapi.AccessKeyRequest{User: "alice", TTL: "a month"}, code: 400, want: "not a positive duration"},
		{name: "ttl negative", req: platformapi.AccessKeyRequest{User: "alice", TTL: "-1h"}, code: 400, want: "not a positive duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ttl, err := checkKeyRequest(&tc.req)
			if tc.code == 0 {
				if err != nil || ttl != tc.ttl {
					t.Errorf("got %s, %v; want %s, no error", ttl, err, tc.ttl)
				}
				return
			}
			if err == nil || err.code != tc.code || !strings.Contains(err.msg, tc.want) {
				t.Errorf("got %v; want HTTP %d with %q", err, tc.code, tc.want)
			}
		})
	}
}
