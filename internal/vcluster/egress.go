package vcluster

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"

	"github.com/sublet-dev/sublet/internal/controlplane"
	"github.com/sublet-dev/sublet/internal/egress"
	"github.com/sublet-dev/sublet/internal/isolation"
	"github.com/sublet-dev/sublet/internal/syncer"
)

// egressGuard is the guard every connection of the virtual API server goes
// through, and the socket it serves the API server on.
type egressGuard struct {
	*egress.Guard
	socket *egress.Socket
}

// startEgressGuard serves the egress guard for cp's API server until ctx
// ends, calling fail if it cannot. It starts knowing only the admin's
// CIDRs (a warm control plane's come with its assignment): until
// startSyncing tells it more, it refuses everything else.
func startEgressGuard(ctx context.Context, cp *controlplane.ControlPlane, o Options, log klog.Logger, reg prometheus.Registerer, fail context.CancelCauseFunc) (*egressGuard, error) {
	allowed, err := isolation.ParseCIDRs(o.EgressAllowedCIDRs)
	if err != nil {
		return nil, fmt.Errorf("--egress-allowed-cidrs: %w", err)
	}
	g := egress.NewGuard(log.WithName("egress"), reg)
	g.SetAllowedCIDRs(allowed)
	sock, err := egress.Listen()
	if err != nil {
		return nil, err
	}
	go func() {
		if err := g.Serve(ctx, sock); err != nil {
			fail(err)
		}
	}()
	cp.SetEgressProxy(sock.Path)
	return &egressGuard{Guard: g, socket: sock}, nil
}

// allowEgress tells the guard what the running syncer makes reachable: the
// kubelet proxy at once, the cluster's own host pods and services once the
// syncer's host informers have listed them.
func allowEgress(g *egress.Guard, o Options, sctx *syncer.Context, kubelet *syncer.KubeletEndpoint) error {
	allowed, err := isolation.ParseCIDRs(o.EgressAllowedCIDRs)
	if err != nil {
		return fmt.Errorf("--egress-allowed-cidrs: %w", err)
	}
	addr, err := netip.ParseAddr(kubelet.Address)
	if err != nil {
		return fmt.Errorf("kubelet proxy address %q: %w", kubelet.Address, err)
	}
	sctx.Addresses = &syncer.OwnedAddresses{}
	g.SetAllowedCIDRs(allowed)
	g.SetKubelet(netip.AddrPortFrom(addr, uint16(kubelet.Port)))
	g.SetOwned(sctx.Addresses)
	return nil
}
