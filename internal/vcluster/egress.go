package vcluster

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"

	"github.com/sublet-dev/sublet/internal/component"
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

// newEgressGuard makes the egress guard for cp's API server, whose
// Component serves it. It starts knowing only the admin's CIDRs (a warm
// control plane's come with its assignment): until startSyncing tells it
// more, it refuses everything else.
func newEgressGuard(cp *controlplane.ControlPlane, o Options, log klog.Logger, reg prometheus.Registerer) (*egressGuard, error) {
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
	cp.SetEgressProxy(sock.Path)
	return &egressGuard{Guard: g, socket: sock}, nil
}

// component serves the guard until its context ends.
func (g *egressGuard) component() component.Component {
	return component.Component{Name: "egress guard", NoReadiness: true, Run: func(ctx context.Context, _ func()) error {
		return g.Serve(ctx, g.socket)
	}}
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
