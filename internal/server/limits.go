package server

import (
	"github.com/sublet-dev/sublet/internal/platformapi"

	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/time/rate"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/lru"
)

// Limits bound what one user may spend on the server: stored objects
// (access keys, sessions) by count, and the work done for them (access
// reviews, key creations, failed logins) by rate. Each user has buckets of
// their own, so one user at a limit does not slow another.
type Limits struct {
	// AccessKeysPerUser caps the AccessKeys of one user, keys made for
	// them by others included.
	AccessKeysPerUser int
	// SessionsPerUser caps one user's web UI sessions; a new login over it
	// ends that user's oldest session.
	SessionsPerUser int
	// AccessReviews limits, per user, the access reviews the server asks a
	// cluster for on their behalf (decisions are reused for recheckEvery).
	AccessReviews Rate
	// KeyCreations limits, per user, the access keys they create.
	KeyCreations Rate
	// FailedLogins limits failed key checks (a bad key on the login form
	// or in an Authorization header), per client address and per key.
	FailedLogins Rate
}

// DefaultLimits are the limits of a server started without flags.
func DefaultLimits() Limits {
	return Limits{
		AccessKeysPerUser: 50,
		SessionsPerUser:   20,
		AccessReviews:     Rate{N: 200, Per: 5 * time.Second},
		KeyCreations:      Rate{N: 60, Per: time.Minute},
		FailedLogins:      Rate{N: 10, Per: time.Minute},
	}
}

// Flag names, quoted in the messages that refuse a request at a limit.
const (
	flagAccessKeysPerUser = "max-access-keys-per-user"
	flagSessionsPerUser   = "max-sessions-per-user"
	flagAccessReviews     = "access-review-limit"
	flagKeyCreations      = "access-key-create-limit"
	flagFailedLogins      = "failed-login-limit"
)

// AddFlags binds the limits to fs.
func (l *Limits) AddFlags(fs *pflag.FlagSet) {
	fs.IntVar(&l.AccessKeysPerUser, flagAccessKeysPerUser, l.AccessKeysPerUser, "Most access keys one user may have; keys made for a user by someone else count against that user. A create over it is refused (HTTP 422) until one is deleted.")
	fs.IntVar(&l.SessionsPerUser, flagSessionsPerUser, l.SessionsPerUser, "Most web UI sessions one user may have; a new login over it ends that user's oldest session.")
	fs.Var(&l.AccessReviews, flagAccessReviews, "Access reviews (SubjectAccessReviews) the server may ask a cluster for on one user's behalf, as N/PERIOD: up to N at once, N more each PERIOD. A decision is reused for 5s. Over it: HTTP 429 with Retry-After.")
	fs.Var(&l.KeyCreations, flagKeyCreations, "Access keys one user may create, as N/PERIOD. Over it: HTTP 429 with Retry-After.")
	fs.Var(&l.FailedLogins, flagFailedLogins, "Failed key checks (a bad key on the login form or in an Authorization header) from one client address, and with one key, as N/PERIOD. Over it: HTTP 429 with Retry-After; a valid key is never refused by it.")
}

// Validate reports limits that cannot work.
func (l *Limits) Validate() error {
	var errs []error
	if l.AccessKeysPerUser < 1 {
		errs = append(errs, fmt.Errorf("--%s %d: must be 1 or more", flagAccessKeysPerUser, l.AccessKeysPerUser))
	}
	if l.SessionsPerUser < 1 {
		errs = append(errs, fmt.Errorf("--%s %d: must be 1 or more", flagSessionsPerUser, l.SessionsPerUser))
	}
	return errors.Join(errs...)
}

// complete fills the limits left zero with the defaults.
func (l Limits) complete() Limits {
	d := DefaultLimits()
	if l.AccessKeysPerUser == 0 {
		l.AccessKeysPerUser = d.AccessKeysPerUser
	}
	if l.SessionsPerUser == 0 {
		l.SessionsPerUser = d.SessionsPerUser
	}
	for _, r := range []struct{ set, def *Rate }{
		{&l.AccessReviews, &d.AccessReviews}, {&l.KeyCreations, &d.KeyCreations}, {&l.FailedLogins, &d.FailedLogins},
	} {
		if r.set.N == 0 {
			*r.set = *r.def
		}
	}
	return l
}

// Rate is a token bucket: up to N at once, refilled at N per Per. As a
// flag it reads N/PERIOD (60/1m, 200/5s; the 1 of a PERIOD may be left
// out: 10/m).
type Rate struct {
	N   int
	Per time.Duration
}

func (r Rate) String() string {
	if r.N == 0 {
		return ""
	}
	return strconv.Itoa(r.N) + "/" + shortDuration(r.Per)
}

// Set parses N/PERIOD.
func (r *Rate) Set(s string) error {
	n, per, ok := strings.Cut(s, "/")
	count, err := strconv.Atoi(n)
	if !ok || err != nil || count < 1 {
		return fmt.Errorf("%q is not N/PERIOD with N 1 or more (example: 60/1m)", s)
	}
	if per != "" && (per[0] < '0' || per[0] > '9') {
		per = "1" + per
	}
	d, err := time.ParseDuration(per)
	if err != nil || d <= 0 {
		return fmt.Errorf("%q: the period is not a positive duration (example: 60/1m)", s)
	}
	*r = Rate{N: count, Per: d}
	return nil
}

// Type is how the flag's value is shown in help.
func (r *Rate) Type() string { return "N/PERIOD" }

// shortDuration writes d as a person would: 1m, not 1m0s.
func shortDuration(d time.Duration) string {
	for _, u := range []struct {
		d    time.Duration
		unit string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if d >= u.d && d%u.d == 0 {
			return strconv.FormatInt(int64(d/u.d), 10) + u.unit
		}
	}
	return d.String()
}

// maxBuckets bounds how many keys (users, addresses, key hashes) a bucket
// set remembers; the least recently used are forgotten first.
const maxBuckets = 10000

// buckets are token buckets of one Rate, one per key.
type buckets struct {
	rate Rate
	mu   sync.Mutex
	lru  *lru.Cache
}

func newBuckets(r Rate) *buckets {
	return &buckets{rate: r, lru: lru.New(maxBuckets)}
}

// take takes a token from key's bucket; if there is none it returns how
// long until there is one.
func (b *buckets) take(key string) (ok bool, retryAfter time.Duration) {
	b.mu.Lock()
	v, found := b.lru.Get(key)
	if !found {
		v = rate.NewLimiter(rate.Limit(float64(b.rate.N)/b.rate.Per.Seconds()), b.rate.N)
		b.lru.Add(key, v)
	}
	b.mu.Unlock()
	lim := v.(*rate.Limiter)
	now := time.Now()
	if lim.AllowN(now, 1) {
		return true, 0
	}
	missing := 1 - lim.TokensAt(now)
	return false, time.Duration(missing / float64(lim.Limit()) * float64(time.Second))
}

// limitError is a request refused at a rate limit.
type limitError struct {
	// what was limited, for whom: `access reviews for user "alice"`.
	what string
	rate Rate
	flag string
	// hint says what else would help, if anything.
	hint       string
	retryAfter time.Duration
}

func (e *limitError) Error() string {
	msg := fmt.Sprintf("too many %s: at most %d per %s (the server's --%s %s)", e.what, e.rate.N, shortDuration(e.rate.Per), e.flag, e.rate)
	if e.hint != "" {
		msg += "; " + e.hint
	}
	return msg + fmt.Sprintf("; retry in %ds", retryAfterSeconds(e.retryAfter))
}

// retryAfterSeconds is d in whole seconds for a Retry-After header: rounded
// up, at least 1.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// writeTooMany writes a 429 for e: a Status kubectl prints, with Retry-After,
// which client-go honours before it retries.
func writeTooMany(w http.ResponseWriter, e *limitError) {
	secs := retryAfterSeconds(e.retryAfter)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusTooManyRequests)
	_ = json.NewEncoder(w).Encode(&metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Message: e.Error(), Reason: metav1.StatusReasonTooManyRequests,
		Code: http.StatusTooManyRequests, Details: &metav1.StatusDetails{RetryAfterSeconds: int32(secs)},
	})
}

// writeIfLimited answers 429 if err is a rate limit's refusal, and reports
// whether it did.
func writeIfLimited(w http.ResponseWriter, err error) bool {
	var limited *limitError
	if errors.As(err, &limited) {
		writeTooMany(w, limited)
		return true
	}
	return false
}

// clientAddress is the address a request's failed logins are counted
// under: its IP, or for IPv6 its /64, which one client usually holds whole.
func clientAddress(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() != nil {
		return ip.String()
	}
	return (&net.IPNet{IP: ip.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
}

// limiter holds the server's buckets.
type limiter struct {
	limits                          Limits
	reviews, creations              *buckets
	failedByAddress, failedByKeySum *buckets
}

func newLimiter(l Limits) *limiter {
	return &limiter{limits: l, reviews: newBuckets(l.AccessReviews), creations: newBuckets(l.KeyCreations),
		failedByAddress: newBuckets(l.FailedLogins), failedByKeySum: newBuckets(l.FailedLogins)}
}

// review takes a token for an access review on u's behalf.
func (l *limiter) review(u *User) error {
	if ok, after := l.reviews.take(u.Name); !ok {
		return &limitError{what: fmt.Sprintf("access reviews for user %q", u.Name), rate: l.limits.AccessReviews, flag: flagAccessReviews,
			hint: "each decision is reused for " + shortDuration(recheckEvery) + ", so asking again for the same virtual clusters costs nothing", retryAfter: after}
	}
	return nil
}

// createKey takes a token for an access key u creates.
func (l *limiter) createKey(u *User) error {
	if ok, after := l.creations.take(u.Name); !ok {
		return &limitError{what: fmt.Sprintf("access keys created by user %q", u.Name), rate: l.limits.KeyCreations, flag: flagKeyCreations, retryAfter: after}
	}
	return nil
}

// failedLogin counts a failed check of key from remoteAddr; past the limit
// for that address or that key it returns the refusal to answer with.
func (l *limiter) failedLogin(remoteAddr, key string) error {
	addr := clientAddress(remoteAddr)
	okAddr, afterAddr := l.failedByAddress.take(addr)
	okKey, afterKey := l.failedByKeySum.take(platformapi.HashKey(key))
	hint := "check the key: 'sublet create accesskey' makes one, 'sublet list accesskeys' lists yours with their expiry"
	switch {
	case !okAddr:
		return &limitError{what: "failed logins from " + addr, rate: l.limits.FailedLogins, flag: flagFailedLogins, hint: hint, retryAfter: afterAddr}
	case !okKey:
		return &limitError{what: "failed logins with this key", rate: l.limits.FailedLogins, flag: flagFailedLogins, hint: hint, retryAfter: afterKey}
	}
	return nil
}
