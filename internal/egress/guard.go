package egress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"
)

// Owned tells which addresses are this virtual cluster's own on the host.
type Owned interface {
	// Known reports whether Owns answers from a complete view (the
	// informers behind it have synced).
	Known() bool
	Owns(netip.Addr) bool
}

// Guard serves HTTP CONNECT for the API server's egress selector: each
// request names HOST:PORT; the guard resolves HOST, checks every address
// against its rules and, if all pass, dials the first that answers. A
// refusal is the response's status line, which the API server quotes in
// the error its client sees.
type Guard struct {
	log     klog.Logger
	refused *prometheus.CounterVec
	// LookupHost resolves names; LocalAddrs lists this machine's addresses.
	// Both are the system's unless a test sets them before Serve.
	LookupHost func(ctx context.Context, host string) ([]netip.Addr, error)
	LocalAddrs func() ([]netip.Addr, error)
	dialer     net.Dialer

	mu      sync.Mutex
	kubelet netip.AddrPort
	allowed []netip.Prefix
	owned   Owned
}

// Time limits of one CONNECT: reading its request, resolving, dialing.
const (
	requestTimeout = 10 * time.Second
	dialTimeout    = 10 * time.Second
)

// NewGuard returns a guard that refuses everything until told more. Its
// refusals are logged to log and counted in reg, if not nil.
func NewGuard(log klog.Logger, reg prometheus.Registerer) *Guard {
	g := &Guard{
		log: log,
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sublet_egress_refused_total",
			Help: "Connections the virtual control plane asked for and the egress guard refused, by reason.",
		}, []string{"reason"}),
		LookupHost: func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		},
		LocalAddrs: interfaceAddrs,
		dialer:     net.Dialer{Timeout: dialTimeout},
	}
	if reg != nil {
		reg.MustRegister(g.refused)
	}
	return g
}

// SetKubelet allows the runtime's kubelet proxy.
func (g *Guard) SetKubelet(addr netip.AddrPort) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.kubelet = addr
}

// SetAllowedCIDRs sets the admin's additions.
func (g *Guard) SetAllowedCIDRs(cidrs []netip.Prefix) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.allowed = cidrs
}

// SetOwned allows the cluster's own pods and services, once o knows them.
func (g *Guard) SetOwned(o Owned) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.owned = o
}

// rules are the guard's rules at this moment.
func (g *Guard) rules() Rules {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := Rules{Kubelet: g.kubelet, AllowedCIDRs: g.allowed}
	if g.owned != nil && g.owned.Known() {
		r.Owned = g.owned.Owns
	}
	local, err := g.LocalAddrs()
	if err != nil {
		// Without the list every address might be the machine's.
		g.log.Error(err, "list this machine's addresses; egress is refused to all but the kubelet proxy and the allowed CIDRs")
		r.Local = func(netip.Addr) bool { return true }
	} else {
		r.Local = func(a netip.Addr) bool {
			for _, l := range local {
				if l.Unmap() == a {
					return true
				}
			}
			return false
		}
	}
	return r
}

// Serve answers CONNECT requests on l until ctx ends. Tunnels already open
// then run until either side closes them.
func (g *Guard) Serve(ctx context.Context, l net.Listener) error {
	stop := context.AfterFunc(ctx, func() { _ = l.Close() })
	defer stop()
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("egress guard: %w", err)
		}
		go g.serveConn(ctx, conn)
	}
}

func (g *Guard) serveConn(ctx context.Context, conn net.Conn) {
	_ = conn.SetReadDeadline(time.Now().Add(requestTimeout))
	br := bufio.NewReader(io.LimitReader(conn, http.DefaultMaxHeaderBytes))
	req, err := http.ReadRequest(br)
	if err != nil {
		conn.Close()
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	if req.Method != http.MethodConnect {
		answer(conn, http.StatusMethodNotAllowed, "the egress guard serves CONNECT only")
		conn.Close()
		return
	}
	target := req.RequestURI
	ctx, cancel := context.WithTimeout(ctx, requestTimeout+dialTimeout)
	up, status, err := g.dial(ctx, target)
	cancel()
	if err != nil {
		answer(conn, status, err.Error())
		conn.Close()
		return
	}
	if br.Buffered() > 0 {
		// The client speaks only after the answer (TLS follows).
		answer(conn, http.StatusBadRequest, "data sent before the CONNECT was answered")
		conn.Close()
		up.Close()
		return
	}
	if answer(conn, http.StatusOK, "Connection established") != nil {
		conn.Close()
		up.Close()
		return
	}
	g.log.V(4).Info("egress allowed", "target", target, "address", up.RemoteAddr().String())
	splice(conn, up)
}

// dial resolves target, checks every address it names and dials the first
// that answers. On error it returns the HTTP status to answer with.
func (g *Guard) dial(ctx context.Context, target string) (net.Conn, int, error) {
	host, portStr, err := net.SplitHostPort(target)
	port, perr := strconv.ParseUint(portStr, 10, 16)
	if err != nil || perr != nil || port == 0 || host == "" {
		return nil, http.StatusBadRequest, fmt.Errorf("egress to %q refused: not HOST:PORT", target)
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else if addrs, err = g.LookupHost(ctx, host); err != nil || len(addrs) == 0 {
		if err == nil {
			err = errors.New("no addresses")
		}
		return nil, http.StatusBadGateway, fmt.Errorf("egress to %s failed: resolve %s: %v", target, host, err)
	}
	rules := g.rules()
	for _, a := range addrs {
		if r := rules.Check(target, netip.AddrPortFrom(a, uint16(port))); r != nil {
			g.refused.WithLabelValues(r.Reason).Inc()
			g.log.Info("egress refused", "target", target, "address", r.Addr.String(), "reason", r.Reason)
			return nil, http.StatusForbidden, r
		}
	}
	var errs []error
	for _, a := range addrs {
		// The address checked, not the name: no second lookup.
		conn, err := g.dialer.DialContext(ctx, "tcp", netip.AddrPortFrom(a.Unmap(), uint16(port)).String())
		if err == nil {
			return conn, 0, nil
		}
		errs = append(errs, err)
	}
	return nil, http.StatusBadGateway, fmt.Errorf("egress to %s failed: %v", target, errors.Join(errs...))
}

// answer writes a response whose status line carries text: the API
// server's CONNECT client reports the status line and nothing else.
func answer(conn net.Conn, status int, text string) error {
	text = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, text)
	_, err := fmt.Fprintf(conn, "HTTP/1.1 %d %s\r\nContent-Length: 0\r\n\r\n", status, text)
	return err
}

// splice copies both ways until both directions are done.
func splice(a, b net.Conn) {
	defer a.Close()
	defer b.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(b, a)
		closeWrite(b)
	}()
	_, _ = io.Copy(a, b)
	closeWrite(a)
	<-done
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	} else {
		_ = c.Close()
	}
}

// interfaceAddrs lists the addresses of this machine's network interfaces.
func interfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}
