// Package egress is the one gate through which a virtual cluster's API
// server opens connections: node, pod and service proxying, kubelet
// streams, admission and conversion webhooks, aggregated APIs. The API
// server's egress selector sends those dials as HTTP CONNECT requests to a
// Guard, which resolves the target itself, checks every address against
// Rules and dials the address it checked.
package egress

import (
	"fmt"
	"net/netip"
)

// AllowKey is the values key an admin sets to allow more; refusals name it.
const AllowKey = "isolation.egress.allowedCIDRs"

// Rules decide which addresses the virtual control plane may dial.
type Rules struct {
	// Kubelet is the runtime's kubelet proxy, where the virtual nodes say
	// their kubelet is; the zero value while it is not serving.
	Kubelet netip.AddrPort
	// AllowedCIDRs are the admin's additions. One that covers a loopback,
	// link-local, multicast or unspecified address, or one of this
	// machine's own, allows it only if it lies wholly inside that class
	// (127.0.0.1/32 does, 0.0.0.0/0 does not).
	AllowedCIDRs []netip.Prefix
	// Local reports whether an address is one of this machine's own.
	Local func(netip.Addr) bool
	// Owned reports whether an address is a pod or service of this virtual
	// cluster on the host; nil while that is not known yet.
	Owned func(netip.Addr) bool
}

// Reasons a dial is refused, as counted in metrics.
const (
	ReasonLoopback    = "loopback"
	ReasonLinkLocal   = "link-local"
	ReasonMulticast   = "multicast"
	ReasonUnspecified = "unspecified"
	ReasonLocal       = "machine-address"
	ReasonNotKnown    = "not-synced"
	ReasonNotOwned    = "not-owned"
)

// Refusal says which dial was refused and why.
type Refusal struct {
	// Target is what was asked for (HOST:PORT, HOST possibly a name).
	Target string
	// Addr is the address refused (Target's, or one HOST resolves to).
	Addr netip.Addr
	// Reason is one of the Reason constants.
	Reason string
}

func (r *Refusal) Error() string {
	var why string
	switch r.Reason {
	case ReasonNotKnown:
		why = "the virtual cluster's pods and services are not known yet (its syncer is starting); try again in a moment"
	case ReasonNotOwned:
		why = fmt.Sprintf("%s is not a pod or service of this virtual cluster", r.Addr)
	default:
		why = fmt.Sprintf("%s is %s, not a pod or service of this virtual cluster", r.Addr, classNames[r.Reason])
	}
	return fmt.Sprintf("egress to %s refused: %s; an admin may allow it with %s", r.Target, why, AllowKey)
}

var classNames = map[string]string{
	ReasonLoopback:    "a loopback address",
	ReasonLinkLocal:   "a link-local address",
	ReasonMulticast:   "a multicast address",
	ReasonUnspecified: "an unspecified address",
	ReasonLocal:       "an address of the machine the virtual cluster runs on",
}

// classRanges are the ranges of the address classes refused whatever the
// cluster owns. The machine's own addresses are a class of single addresses.
var classRanges = map[string][]netip.Prefix{
	ReasonLoopback:    {netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
	ReasonLinkLocal:   {netip.MustParsePrefix("169.254.0.0/16"), netip.MustParsePrefix("fe80::/10")},
	ReasonMulticast:   {netip.MustParsePrefix("224.0.0.0/4"), netip.MustParsePrefix("ff00::/8")},
	ReasonUnspecified: {netip.MustParsePrefix("0.0.0.0/8"), netip.MustParsePrefix("::/128")},
}

// Check returns nil if the virtual control plane may dial addr for target
// (what was asked for: addr itself, or a name that resolved to it), else
// the refusal.
func (r Rules) Check(target string, addr netip.AddrPort) *Refusal {
	ip := addr.Addr().Unmap().WithZone("")
	refuse := func(reason string) *Refusal { return &Refusal{Target: target, Addr: ip, Reason: reason} }
	if !ip.IsValid() {
		return refuse(ReasonUnspecified)
	}
	if r.Kubelet.IsValid() && r.Kubelet.Addr().Unmap() == ip && r.Kubelet.Port() == addr.Port() {
		return nil
	}
	if class, ranges := r.class(ip); class != "" {
		for _, p := range r.AllowedCIDRs {
			if p.Contains(ip) && within(p, ranges) {
				return nil
			}
		}
		return refuse(class)
	}
	for _, p := range r.AllowedCIDRs {
		if p.Contains(ip) {
			return nil
		}
	}
	if r.Owned == nil {
		return refuse(ReasonNotKnown)
	}
	if r.Owned(ip) {
		return nil
	}
	return refuse(ReasonNotOwned)
}

// class names the always-refused class ip is in, with its ranges, or "".
func (r Rules) class(ip netip.Addr) (string, []netip.Prefix) {
	for _, c := range []string{ReasonLoopback, ReasonLinkLocal, ReasonMulticast, ReasonUnspecified} {
		for _, p := range classRanges[c] {
			if p.Contains(ip) {
				return c, classRanges[c]
			}
		}
	}
	if r.Local != nil && r.Local(ip) {
		return ReasonLocal, []netip.Prefix{netip.PrefixFrom(ip, ip.BitLen())}
	}
	return "", nil
}

// within reports whether prefix p lies wholly inside one of ranges.
func within(p netip.Prefix, ranges []netip.Prefix) bool {
	for _, r := range ranges {
		if r.Bits() <= p.Bits() && r.Contains(p.Addr()) {
			return true
		}
	}
	return false
}
