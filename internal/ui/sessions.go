package ui

import (
	"errors"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/sublet-dev/sublet/internal/platformapi"
)

const (
	sessionCookie = "sublet_session"
	// sessionLifetime bounds a session; the key's own expiry bounds it too.
	sessionLifetime = 12 * time.Hour
	// maxSessions bounds the sessions kept, whoever they are of.
	maxSessions = 10000
)

type session struct {
	id, key, csrf string
	user          *platformapi.User
	// owner is the user's name, for the per-user count.
	owner     string
	expires   time.Time
	mu        sync.Mutex
	downloads map[string]download // kubeconfigs to download, by id
}

// download is a kubeconfig made on the Connect page.
type download struct {
	name    string
	data    []byte
	expires time.Time
}

// errSessionsFull refuses a login while the server holds maxSessions
// sessions that have not expired.
var errSessionsFull = errors.New("the server holds as many sessions as it may")

// sessionStore holds the web UI's sessions in memory. One user has at most
// perUser: a new login over that ends the same user's oldest session, and
// never another user's.
type sessionStore struct {
	perUser int
	mu      sync.Mutex
	byID    map[string]*session
	byUser  map[string][]*session // oldest first
}

func newSessionStore(perUser int) *sessionStore {
	return &sessionStore{perUser: perUser, byID: map[string]*session{}, byUser: map[string][]*session{}}
}

// get returns the unexpired session of r's cookie, nil if none.
func (st *sessionStore) get(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	sess := st.byID[c.Value]
	if sess == nil {
		return nil
	}
	if time.Now().After(sess.expires) {
		st.remove(sess)
		return nil
	}
	return sess
}

func (st *sessionStore) drop(id string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if sess := st.byID[id]; sess != nil {
		st.remove(sess)
	}
}

// add keeps sess, ending its user's oldest sessions past perUser. When the
// store is full of unexpired sessions it refuses with errSessionsFull
// rather than end someone else's.
func (st *sessionStore) add(sess *session) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	now := time.Now()
	user := sess.user.Name
	sess.owner = user
	for _, old := range slices.Clone(st.byUser[user]) {
		if now.After(old.expires) {
			st.remove(old)
		}
	}
	for len(st.byUser[user]) >= st.perUser {
		st.remove(st.byUser[user][0])
	}
	if len(st.byID) >= maxSessions {
		for _, old := range st.byID {
			if now.After(old.expires) {
				st.remove(old)
			}
		}
		if len(st.byID) >= maxSessions {
			return errSessionsFull
		}
	}
	st.byID[sess.id] = sess
	st.byUser[user] = append(st.byUser[user], sess)
	return nil
}

// remove forgets sess; st.mu is held.
func (st *sessionStore) remove(sess *session) {
	delete(st.byID, sess.id)
	user := sess.owner
	rest := slices.DeleteFunc(st.byUser[user], func(s *session) bool { return s == sess })
	if len(rest) == 0 {
		delete(st.byUser, user)
	} else {
		st.byUser[user] = rest
	}
}
