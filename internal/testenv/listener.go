package testenv

import (
	"net"
	"testing"
	"time"
)

// Listener is a TCP listener on a loopback address that records every
// connection it accepts, for tests that check something never connected.
type Listener struct {
	net.Listener
	conns chan net.Conn
}

// Listen listens on ip (a loopback address) until the test ends and hands
// every connection to serve, if not nil, after recording it.
func Listen(t testing.TB, ip string, serve func(net.Conn)) *Listener {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	r := &Listener{Listener: l, conns: make(chan net.Conn, 64)}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			select {
			case r.conns <- c:
			default: // the record is full: enough to fail Untouched
			}
			if serve != nil {
				go serve(c)
			}
		}
	}()
	t.Cleanup(func() { l.Close() })
	return r
}

// Port is the port the listener listens on.
func (r *Listener) Port() int { return r.Addr().(*net.TCPAddr).Port }

// Untouched fails the test if anything connected to r before now. It
// connects itself and waits for that connection: connections are accepted
// in order, so its own comes first unless another was made earlier.
func (r *Listener) Untouched(t testing.TB) {
	t.Helper()
	marker, err := net.Dial("tcp", r.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer marker.Close()
	select {
	case c := <-r.conns:
		if c.RemoteAddr().String() != marker.LocalAddr().String() {
			t.Errorf("%s was connected to from %s", r.Addr(), c.RemoteAddr())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s never accepted the test's own connection", r.Addr())
	}
}
