package egress

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apiserverapi "k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/server/egressselector"
	"k8s.io/klog/v2"

	"github.com/sublet-dev/sublet/internal/testenv"
)

// echoLine answers one line with "echo LINE".
func echoLine(c net.Conn) {
	line, _ := bufio.NewReader(c).ReadString('\n')
	_, _ = c.Write([]byte("echo " + line))
}

func port(l *testenv.Listener) uint16 { return uint16(l.Port()) }

// startGuard serves g on its own unix socket and returns the API server's
// own egress dialer for it.
func startGuard(t *testing.T, g *Guard) func(ctx context.Context, network, addr string) (net.Conn, error) {
	t.Helper()
	sock, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- g.Serve(ctx, sock) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		sock.Close()
		if _, err := os.Stat(sock.dir); !os.IsNotExist(err) {
			t.Errorf("socket directory %s left behind: %v", sock.dir, err)
		}
	})
	sel, err := egressselector.NewEgressSelector(&apiserverapi.EgressSelectorConfiguration{
		EgressSelections: []apiserverapi.EgressSelection{{Name: "cluster", Connection: apiserverapi.Connection{
			ProxyProtocol: apiserverapi.ProtocolHTTPConnect,
			Transport:     &apiserverapi.Transport{UDS: &apiserverapi.UDSTransport{UDSName: sock.Path}},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	dial, err := sel.Lookup(egressselector.Cluster.AsNetworkContext())
	if err != nil {
		t.Fatal(err)
	}
	return dial
}

func echo(t *testing.T, conn net.Conn) string {
	t.Helper()
	defer conn.Close()
	if _, err := conn.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(line)
}

func TestGuardThroughTheAPIServersDialer(t *testing.T) {
	kubelet := testenv.Listen(t, "127.0.0.1", echoLine)
	allowed := testenv.Listen(t, "127.0.0.2", echoLine)
	refused := testenv.Listen(t, "127.0.0.1", echoLine)
	reg := prometheus.NewRegistry()
	g := NewGuard(klog.Background(), reg)
	var lookups atomic.Int32
	g.LookupHost = func(_ context.Context, host string) ([]netip.Addr, error) {
		lookups.Add(1)
		switch host {
		case "evil.example":
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		case "mixed.example":
			return []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.1")}, nil
		case "allowed.example":
			return []netip.Addr{netip.MustParseAddr("127.0.0.2")}, nil
		}
		return nil, fmt.Errorf("no such host %s", host)
	}
	g.LocalAddrs = func() ([]netip.Addr, error) { return nil, nil }
	g.SetKubelet(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port(kubelet)))
	g.SetAllowedCIDRs([]netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")})
	dial := startGuard(t, g)
	ctx := context.Background()

	for _, addr := range []string{kubelet.Addr().String(), allowed.Addr().String()} {
		conn, err := dial(ctx, "tcp", addr)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		if got := echo(t, conn); got != "echo hello" {
			t.Errorf("through the guard to %s: %q, want the listener's echo", addr, got)
		}
	}
	lookups.Store(0)
	conn, err := dial(ctx, "tcp", fmt.Sprintf("allowed.example:%d", port(allowed)))
	if err != nil {
		t.Fatalf("dial allowed.example: %v", err)
	}
	if got := echo(t, conn); got != "echo hello" {
		t.Errorf("through the guard to allowed.example: %q", got)
	}
	if n := lookups.Load(); n != 1 {
		t.Errorf("allowed.example looked up %d times, want once (the checked address is dialed)", n)
	}

	refusedPort := port(refused)
	for _, tc := range []struct{ addr, want string }{
		{fmt.Sprintf("127.0.0.1:%d", refusedPort), fmt.Sprintf("egress to 127.0.0.1:%d refused: 127.0.0.1 is a loopback address, not a pod or service of this virtual cluster; an admin may allow it with isolation.egress.allowedCIDRs", refusedPort)},
		{fmt.Sprintf("evil.example:%d", refusedPort), fmt.Sprintf("egress to evil.example:%d refused: 127.0.0.1 is a loopback address", refusedPort)},
		// One bad address among good ones refuses the name.
		{fmt.Sprintf("mixed.example:%d", refusedPort), fmt.Sprintf("egress to mixed.example:%d refused: 127.0.0.1 is a loopback address", refusedPort)},
		{fmt.Sprintf("nowhere.example:%d", refusedPort), "resolve nowhere.example: no such host"},
		{"127.0.0.1:0", "not HOST:PORT"},
	} {
		conn, err := dial(ctx, "tcp", tc.addr)
		if err == nil {
			conn.Close()
			t.Errorf("dial %s went through, want %q", tc.addr, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("dial %s: %v\nwant it to contain %q", tc.addr, err, tc.want)
		}
	}
	refused.Untouched(t)
	if n := testutil.ToFloat64(g.refused.WithLabelValues(ReasonLoopback)); n != 3 {
		t.Errorf("sublet_egress_refused_total{reason=loopback} = %v, want 3", n)
	}
}

func TestGuardWaitsForTheSyncer(t *testing.T) {
	kubelet := testenv.Listen(t, "127.0.0.1", echoLine)
	g := NewGuard(klog.Background(), nil)
	g.LocalAddrs = func() ([]netip.Addr, error) { return nil, nil }
	dial := startGuard(t, g)
	ctx := context.Background()
	// A warm control plane: nothing is known, not even the kubelet proxy.
	if conn, err := dial(ctx, "tcp", kubelet.Addr().String()); err == nil {
		conn.Close()
		t.Fatal("a guard told nothing let a dial through")
	}
	kubelet.Untouched(t)

	owned := &fakeOwned{}
	g.SetOwned(owned)
	g.SetKubelet(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port(kubelet)))
	conn, err := dial(ctx, "tcp", kubelet.Addr().String())
	if err != nil {
		t.Fatalf("the kubelet proxy before the syncer synced: %v", err)
	}
	echo(t, conn)
	_, err = dial(ctx, "tcp", "10.244.0.7:8443")
	if err == nil || !strings.Contains(err.Error(), "not known yet") {
		t.Errorf("a pod address before the syncer synced: %v, want a refusal saying it is not known yet", err)
	}
}

type fakeOwned struct{ known bool }

func (f *fakeOwned) Known() bool          { return f.known }
func (f *fakeOwned) Owns(netip.Addr) bool { return true }

func TestListenFitsLongTempDirs(t *testing.T) {
	long := t.TempDir() + "/" + strings.Repeat("d", 120)
	if err := os.MkdirAll(long, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", long)
	sock, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	if len(sock.Path) > maxSocketPath {
		t.Errorf("socket path %s is %d bytes, over %d", sock.Path, len(sock.Path), maxSocketPath)
	}
	fi, err := os.Stat(sock.dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("socket directory mode %v, want 0700", fi.Mode().Perm())
	}
}

// TestListenRemovesDeadSockets: a guard killed before it could clean up
// leaves a directory with a socket no one listens on; the next Listen
// removes it and leaves a live guard's socket alone.
func TestListenRemovesDeadSockets(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	live, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	dead, err := os.MkdirTemp("", socketDirPattern)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: dead + "/proxy.sock", Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false) // as if the process had been killed
	l.Close()
	starting, err := os.MkdirTemp("", socketDirPattern)
	if err != nil {
		t.Fatal(err)
	}

	next, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("the dead guard's directory %s is still there: %v", dead, err)
	}
	for _, dir := range []string{live.dir, starting} {
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("%s was removed: %v", dir, err)
		}
	}
}
