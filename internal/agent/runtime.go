package agent

import (
	"context"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
)

// Runtime runs virtual clusters: as child processes of the agent (process)
// or as pods in the host cluster (pod).
type Runtime interface {
	// Name is how status.runtime shows it.
	Name() string
	// Ensure makes vc run `sublet vcluster run` with the extra args, and
	// reports how far it got.
	Ensure(ctx context.Context, vc *storagev1.VirtualCluster, args []string) (State, error)
	// Sleep stops vc and keeps its data (sleep mode); stopped reports
	// whether it has stopped (call again until it has). Ensure starts it
	// again.
	Sleep(ctx context.Context, vc *storagev1.VirtualCluster) (stopped bool, err error)
	// Delete stops vc and removes its data and the host objects the
	// runtime made for it.
	Delete(ctx context.Context, vc *storagev1.VirtualCluster) error
}

// State is what a runtime reports about one virtual cluster.
type State struct {
	// Ready: the virtual API server answers /readyz.
	Ready bool
	// Kubeconfig is an admin kubeconfig reaching the virtual API server
	// from where the agent runs (nil until ready).
	Kubeconfig []byte
	// Endpoint is the virtual API server's URL.
	Endpoint string
	// Version is the version /version reports (gitVersion).
	Version string
	// Message says what the runtime is doing or waiting for.
	Message string
	// Refused: the runtime exited because it refused its configuration
	// (Message has its error); it is not started again until the
	// configuration changes.
	Refused bool
}
