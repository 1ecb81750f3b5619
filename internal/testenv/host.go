package testenv

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"testing"
)

// StartHost runs `sublet host run` with the given number of simulated nodes.
func StartHost(ctx context.Context, dataDir string, nodes int, extraArgs ...string) (*Process, error) {
	args := append([]string{"host", "run", "--nodes", strconv.Itoa(nodes)}, extraArgs...)
	return Start(ctx, dataDir, args...)
}

// StartControlPlane runs a bare control plane in virtual-cluster mode: the
// future virtual cluster's apiserver and controller-manager, no scheduler.
func StartControlPlane(ctx context.Context, dataDir string, extraArgs ...string) (*Process, error) {
	args := append([]string{"controlplane", "run", "--mode", "virtual"}, extraArgs...)
	return Start(ctx, dataDir, args...)
}

// MainWithHost is TestMain for packages that share one host cluster: it
// starts the host with nodes simulated nodes, stores it in *host, runs the
// tests and stops the host. With -short it runs the tests without a host.
func MainWithHost(m *testing.M, nodes int, host **Process) int {
	flag.Parse()
	if testing.Short() {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "sublet-host-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// The tests exec into simulated pods: this host opts in.
	p, err := StartHost(context.Background(), dir, nodes, "--simulate-exec")
	if err != nil {
		fmt.Fprintln(os.Stderr, "start shared host cluster:", err)
		return 1
	}
	*host = p
	code := m.Run()
	if err := p.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stop shared host cluster:", err, "\n", p.Output())
		if code == 0 {
			code = 1
		}
	}
	return code
}
