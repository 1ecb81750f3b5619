package ui

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sublet-dev/sublet/internal/platformapi"
)

// TestSessionStore: a user's sessions past the cap end oldest first and
// never another user's; a full store refuses a login rather than end
// someone else's session, once expired ones are dropped.
func TestSessionStore(t *testing.T) {
	st := newSessionStore(2)
	n := 0
	login := func(user string, expires time.Time) *session {
		n++
		sess := &session{id: fmt.Sprintf("%s-%d", user, n), user: &platformapi.User{Name: user}, expires: expires}
		if err := st.add(sess); err != nil {
			t.Fatalf("login %s: %v", sess.id, err)
		}
		return sess
	}
	alive := func(sess *session) bool {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: sess.id})
		return st.get(r) == sess
	}
	later := time.Now().Add(time.Hour)
	// bob's session ends later than alice's: eviction by expiry across
	// users would pick alice's first either way, so it is the count per
	// user that decides.
	bob := login("bob", later.Add(time.Hour))
	a1, a2 := login("alice", later), login("alice", later)
	a3 := login("alice", later)
	if alive(a1) {
		t.Errorf("alice's oldest session outlived her third login over a cap of 2")
	}
	if !alive(a2) || !alive(a3) || !alive(bob) {
		t.Errorf("alive: alice's second %v, third %v, bob's %v; want all", alive(a2), alive(a3), alive(bob))
	}
	// An expired session of alice's makes room before her live ones go.
	st = newSessionStore(2)
	old := login("alice", time.Now().Add(-time.Second))
	b1, b2 := login("alice", later), login("alice", later)
	if alive(old) || !alive(b1) || !alive(b2) {
		t.Errorf("expired %v, live ones %v %v; want the expired one gone, the live ones kept", alive(old), alive(b1), alive(b2))
	}
	st.drop(b1.id)
	if alive(b1) || len(st.byUser["alice"]) != 1 {
		t.Errorf("a dropped session is still counted: %d", len(st.byUser["alice"]))
	}

	// Full of live sessions: the next login is refused, nobody's ends.
	st = newSessionStore(1)
	for i := 0; i < maxSessions; i++ {
		login(fmt.Sprintf("u%d", i), later)
	}
	if err := st.add(&session{id: "late", user: &platformapi.User{Name: "late"}, expires: later}); err != errSessionsFull {
		t.Errorf("a login into a full store: %v, want errSessionsFull", err)
	}
	if len(st.byID) != maxSessions {
		t.Errorf("a refused login changed the store: %d sessions", len(st.byID))
	}
	// Its own user's next login still replaces its own session.
	again := &session{id: "u0-again", user: &platformapi.User{Name: "u0"}, expires: later}
	if err := st.add(again); err != nil || !alive(again) {
		t.Errorf("u0 logging in again in a full store: %v", err)
	}
}
