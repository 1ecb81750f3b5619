package isolation

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// Annotation patterns are an exact key ("cert-manager.io/cluster-issuer")
// or a prefix ending in "*" ("cert-manager.io/*"). A pattern with "*"
// never matches a key ending in "-snippet", which ingress controllers
// paste into their configuration: only an exact pattern lets one through.

// DefaultIngressAnnotations pass to host ingresses without an admin's
// allow-list: the ingress class, cert-manager's (so the host's cert-manager
// issues certificates) and the ingress controller's TLS redirect and
// backend protocol switches. Snippets, auth and proxy settings are not
// among them: they make the shared controller run or call what the tenant
// names.
var DefaultIngressAnnotations = []string{
	"kubernetes.io/ingress.class",
	"cert-manager.io/*",
	"acme.cert-manager.io/*",
	"nginx.ingress.kubernetes.io/ssl-redirect",
	"nginx.ingress.kubernetes.io/force-ssl-redirect",
	"nginx.ingress.kubernetes.io/backend-protocol",
}

// DefaultTolerations are the taint keys pods may tolerate without an
// admin's allow-list: the node condition taints Kubernetes itself sets and
// its controllers tolerate (DaemonSets, the default toleration seconds).
var DefaultTolerations = []string{
	"node.kubernetes.io/not-ready",
	"node.kubernetes.io/unreachable",
	"node.kubernetes.io/disk-pressure",
	"node.kubernetes.io/memory-pressure",
	"node.kubernetes.io/pid-pressure",
	"node.kubernetes.io/unschedulable",
	"node.kubernetes.io/network-unavailable",
}

// BaseAnnotation reports whether annotation key reaches the host with no
// allow-list: a key with no prefix, or a prefix that is not a DNS domain
// ("checksum/config"), describes the object to the tenant's own tools, and
// kubectl's keys only to kubectl. A domain-prefixed key may steer a host
// controller (CNI, service mesh, secret injectors, cloud load balancers,
// external-dns, autoscalers), so it needs an admin's allow-list.
func BaseAnnotation(key string) bool {
	prefix, _, ok := strings.Cut(key, "/")
	return !ok || !strings.Contains(prefix, ".") || prefix == "kubectl.kubernetes.io"
}

// patternMatches reports whether annotation pattern p matches key.
func patternMatches(p, key string) bool {
	if prefix, wild := strings.CutSuffix(p, "*"); wild {
		return strings.HasPrefix(key, prefix) && !strings.HasSuffix(key, "-snippet")
	}
	return p == key
}

// AnnotationAllowed reports whether key passes the base rule or one of the
// pattern lists.
func AnnotationAllowed(key string, lists ...[]string) bool {
	if BaseAnnotation(key) {
		return true
	}
	for _, l := range lists {
		for _, p := range l {
			if patternMatches(p, key) {
				return true
			}
		}
	}
	return false
}

// FilterAnnotations returns the annotations of in that AnnotationAllowed
// passes, and the sorted keys it dropped.
func FilterAnnotations(in map[string]string, lists ...[]string) (map[string]string, []string) {
	out := make(map[string]string, len(in))
	var dropped []string
	for k, v := range in {
		if AnnotationAllowed(k, lists...) {
			out[k] = v
		} else {
			dropped = append(dropped, k)
		}
	}
	sort.Strings(dropped)
	return out, dropped
}

// checkAnnotationPattern returns what is wrong with an annotation pattern.
func checkAnnotationPattern(p string) string {
	body, wild := strings.CutSuffix(p, "*")
	switch {
	case p == "" || p == "*":
		return `a pattern names a key or a prefix ("example.com/*"); "*" alone would let every annotation through`
	case strings.Contains(body, "*"):
		return `a "*" only at the end ("example.com/*")`
	case !wild && strings.Count(p, "/") > 1:
		return "not an annotation key"
	}
	return ""
}

// Vars are what {name} and {namespace} in host patterns stand for: the
// virtual cluster's name and its host namespace.
type Vars struct {
	Name, Namespace string
}

// GatewayAllowed reports whether a route may attach to host Gateway
// namespace/name: one of allowed names it.
func GatewayAllowed(namespace, name string, allowed []string, vars Vars) bool {
	for _, a := range allowed {
		if vars.expand(a) == strings.ToLower(namespace+"/"+name) {
			return true
		}
	}
	return false
}

func (v Vars) expand(pattern string) string {
	return strings.NewReplacer("{name}", v.Name, "{namespace}", v.Namespace).Replace(strings.ToLower(pattern))
}

// hostCovered reports whether host h (itself possibly "*.x.example.com")
// is within pattern p: "*.example.com" covers every name below
// example.com, any depth; a name without "*" covers only itself.
func hostCovered(h, p string) bool {
	h = strings.ToLower(h)
	if d, wild := strings.CutPrefix(p, "*."); wild {
		return strings.HasSuffix(h, "."+d)
	}
	return h == p
}

// HostAllowed reports whether ingress host h is within one of patterns;
// no patterns allow any host.
func HostAllowed(h string, patterns []string, vars Vars) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if hostCovered(h, vars.expand(p)) {
			return true
		}
	}
	return false
}

// TolerationAllowed reports whether a toleration of taint key may reach
// the host: a node condition taint or a key the admin allows. An empty key
// (tolerate every taint) passes only where the admin allows "*".
func TolerationAllowed(key string, allowed []string) bool {
	for _, a := range allowed {
		if a == "*" || a == key && key != "" {
			return true
		}
	}
	for _, d := range DefaultTolerations {
		if d == key {
			return true
		}
	}
	return false
}

// ParseCIDRs parses an admin's list of CIDRs (10.0.0.0/8, fd00::/64); a
// bare address needs its /32 or /128. IPv4 CIDRs written in IPv6 form are
// read as IPv4.
func ParseCIDRs(list []string) (CIDRs, error) {
	var out CIDRs
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			if a, aerr := netip.ParseAddr(s); aerr == nil {
				return nil, fmt.Errorf("%q is an address, not a CIDR: write %s/%d", s, a, a.BitLen())
			}
			return nil, fmt.Errorf("%q is not a CIDR (example: 10.20.0.0/16)", s)
		}
		if p.Addr().Is4In6() {
			if p.Bits() < 96 {
				return nil, fmt.Errorf("%q mixes IPv4 and IPv6; write the IPv4 CIDR", s)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// CIDRs are parsed allowed ranges.
type CIDRs []netip.Prefix

// Contain reports whether ip is in one of the ranges.
func (c CIDRs) Contain(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range c {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// within reports whether range p lies inside one of the ranges.
func (c CIDRs) within(p netip.Prefix) bool {
	for _, b := range c {
		if b.Bits() <= p.Bits() && b.Contains(p.Addr()) {
			return true
		}
	}
	return false
}
