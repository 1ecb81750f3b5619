package controlplane

import (
	"context"
	"fmt"
	"net"
)

// datastore is the storage backend the apiserver talks to over the etcd API.
type datastore interface {
	// start runs the store until ctx ends or stop is called and returns the
	// client URL for --etcd-servers.
	start(ctx context.Context) (string, error)
	// stop shuts the store down and waits for it.
	stop()
}

// FreePort asks the kernel for a free TCP port on addr.
func FreePort(addr string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
