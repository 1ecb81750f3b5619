package egress

import (
	"net/netip"
	"strings"
	"testing"
)

func TestRulesCheck(t *testing.T) {
	machine := netip.MustParseAddr("192.0.2.2")
	local := func(a netip.Addr) bool { return a == machine }
	owned := func(a netip.Addr) bool {
		return a == netip.MustParseAddr("10.244.0.7") || a == netip.MustParseAddr("10.96.4.5") || a == netip.MustParseAddr("fd00::7")
	}
	base := Rules{Kubelet: netip.MustParseAddrPort("192.0.2.2:40123"), Local: local, Owned: owned}
	withCIDRs := func(cidrs ...string) Rules {
		r := base
		for _, c := range cidrs {
			r.AllowedCIDRs = append(r.AllowedCIDRs, netip.MustParsePrefix(c))
		}
		return r
	}
	unsynced := base
	unsynced.Owned = nil
	warm := Rules{Local: local} // a warm control plane: nothing known yet

	for _, tc := range []struct {
		name   string
		rules  Rules
		addr   string
		reason string // "" = allowed
	}{
		{"own pod", base, "10.244.0.7:8443", ""},
		{"own service", base, "10.96.4.5:443", ""},
		{"own pod, IPv6", base, "[fd00::7]:443", ""},
		{"another cluster's pod", base, "10.244.0.8:8443", ReasonNotOwned},
		{"the host's API server service", base, "10.96.0.1:443", ReasonNotOwned},
		{"a public address", base, "203.0.113.9:443", ReasonNotOwned},
		{"the kubelet proxy", base, "192.0.2.2:40123", ""},
		{"the kubelet proxy's address, another port", base, "192.0.2.2:10250", ReasonLocal},
		{"loopback", base, "127.0.0.1:9999", ReasonLoopback},
		{"loopback elsewhere in 127/8", base, "127.8.9.10:9999", ReasonLoopback},
		{"IPv6 loopback", base, "[::1]:9999", ReasonLoopback},
		{"IPv4-mapped loopback", base, "[::ffff:127.0.0.1]:9999", ReasonLoopback},
		{"cloud metadata", base, "169.254.169.254:80", ReasonLinkLocal},
		{"IPv6 link-local with zone", base, "[fe80::1%eth0]:80", ReasonLinkLocal},
		{"multicast", base, "224.0.0.251:5353", ReasonMulticast},
		{"unspecified", base, "0.0.0.0:6443", ReasonUnspecified},
		{"IPv6 unspecified", base, "[::]:6443", ReasonUnspecified},
		{"this machine", base, "192.0.2.2:22", ReasonLocal},
		{"a loopback pod address is still loopback", Rules{Owned: func(netip.Addr) bool { return true }}, "127.0.0.1:80", ReasonLoopback},
		{"admin CIDR", withCIDRs("203.0.113.0/24"), "203.0.113.9:443", ""},
		{"admin CIDR names loopback", withCIDRs("127.0.0.1/32"), "127.0.0.1:9999", ""},
		{"admin loopback CIDR, another loopback address", withCIDRs("127.0.0.1/32"), "127.0.0.2:9999", ReasonLoopback},
		{"admin 0.0.0.0/0 opens the world", withCIDRs("0.0.0.0/0"), "203.0.113.9:443", ""},
		{"admin 0.0.0.0/0 does not open loopback", withCIDRs("0.0.0.0/0"), "127.0.0.1:9999", ReasonLoopback},
		{"admin 0.0.0.0/0 does not open metadata", withCIDRs("0.0.0.0/0"), "169.254.169.254:80", ReasonLinkLocal},
		{"admin 0.0.0.0/0 does not open this machine", withCIDRs("0.0.0.0/0"), "192.0.2.2:22", ReasonLocal},
		{"admin LAN CIDR does not open this machine", withCIDRs("192.0.2.0/24"), "192.0.2.2:22", ReasonLocal},
		{"admin CIDR names this machine", withCIDRs("192.0.2.2/32"), "192.0.2.2:22", ""},
		{"admin CIDR names the metadata address", withCIDRs("169.254.169.254/32"), "169.254.169.254:80", ""},
		{"admin CIDR before the syncer knows", func() Rules { r := withCIDRs("203.0.113.0/24"); r.Owned = nil; return r }(), "203.0.113.9:443", ""},
		{"before the syncer knows", unsynced, "10.244.0.7:8443", ReasonNotKnown},
		{"kubelet proxy before the syncer knows", unsynced, "192.0.2.2:40123", ""},
		{"warm control plane", warm, "10.244.0.7:8443", ReasonNotKnown},
		{"warm control plane, loopback", warm, "127.0.0.1:9999", ReasonLoopback},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ap := netip.MustParseAddrPort(tc.addr)
			got := tc.rules.Check(tc.addr, ap)
			switch {
			case tc.reason == "" && got != nil:
				t.Errorf("refused (%v), want allowed", got)
			case tc.reason != "" && got == nil:
				t.Errorf("allowed, want refused for %s", tc.reason)
			case tc.reason != "" && got.Reason != tc.reason:
				t.Errorf("refused for %s (%v), want %s", got.Reason, got, tc.reason)
			}
		})
	}
}

func TestRefusalMessage(t *testing.T) {
	for _, tc := range []struct {
		r    Refusal
		want string
	}{
		{Refusal{Target: "127.0.0.1:9999", Addr: netip.MustParseAddr("127.0.0.1"), Reason: ReasonLoopback},
			"egress to 127.0.0.1:9999 refused: 127.0.0.1 is a loopback address, not a pod or service of this virtual cluster; an admin may allow it with isolation.egress.allowedCIDRs"},
		{Refusal{Target: "10.96.0.1:443", Addr: netip.MustParseAddr("10.96.0.1"), Reason: ReasonNotOwned},
			"egress to 10.96.0.1:443 refused: 10.96.0.1 is not a pod or service of this virtual cluster; an admin may allow it with isolation.egress.allowedCIDRs"},
		{Refusal{Target: "localhost:8443", Addr: netip.MustParseAddr("::1"), Reason: ReasonLoopback},
			"egress to localhost:8443 refused: ::1 is a loopback address"},
		{Refusal{Target: "10.244.0.7:80", Addr: netip.MustParseAddr("10.244.0.7"), Reason: ReasonNotKnown},
			"egress to 10.244.0.7:80 refused: the virtual cluster's pods and services are not known yet"},
	} {
		if got := tc.r.Error(); !strings.HasPrefix(got, tc.want) {
			t.Errorf("message\n  %s\nwant it to start with\n  %s", got, tc.want)
		}
	}
}
