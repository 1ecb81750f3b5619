package isolation

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
)

// Loosening is one isolation setting that a layer of values makes looser
// than the layers below it (the cluster default and a template).
type Loosening struct {
	// Path is the setting, e.g. isolation.podSecurityStandard.
	Path string
	// Own and Base describe the layer's value and the one below it.
	Own, Base string
}

func (l Loosening) String() string {
	return fmt.Sprintf("%s: %s is looser than %s", l.Path, l.Own, l.Base)
}

// Loosenings collects the settings of a comparison.
type Loosenings []Loosening

// Add records a loosening of path.
func (ls *Loosenings) Add(path, own, base string) {
	*ls = append(*ls, Loosening{Path: path, Own: own, Base: base})
}

// Flag records path if own turns on what base leaves off.
func (ls *Loosenings) Flag(path string, own, base bool) {
	if own && !base {
		ls.Add(path, "true", "false")
	}
}

// LooserThan lists where p allows more than base does. Lists of patterns
// and ranges may only narrow: every entry of p must lie within an entry of
// base. vars expand host patterns.
func (p Policy) LooserThan(base Policy, vars Vars) Loosenings {
	var ls Loosenings
	const prefix = "isolation."
	s, bs := p.Services, base.Services
	ls.Flag(prefix+"services.allowLoadBalancer", s.AllowLoadBalancer, bs.AllowLoadBalancer)
	ls.Flag(prefix+"services.allowNodePort", s.AllowNodePort, bs.AllowNodePort)
	ls.Flag(prefix+"services.allowExternalNameInCluster", s.AllowExternalNameInCluster, bs.AllowExternalNameInCluster)
	ls.subset(prefix+"services.loadBalancerClasses", s.LoadBalancerClasses, bs.LoadBalancerClasses, func(own, b string) bool { return own == b })
	ls.subset(prefix+"services.allowedAnnotations", s.AllowedAnnotations, bs.AllowedAnnotations, patternWithin)
	ls.subset(prefix+"ingresses.allowedAnnotations", p.Ingresses.AllowedAnnotations, base.Ingresses.AllowedAnnotations, patternWithin)
	ls.subset(prefix+"pods.allowedAnnotations", p.Pods.AllowedAnnotations, base.Pods.AllowedAnnotations, patternWithin)
	ls.cidrs(prefix+"endpoints.allowedCIDRs", p.Endpoints.AllowedCIDRs, base.Endpoints.AllowedCIDRs)
	ls.cidrs(prefix+"egress.allowedCIDRs", p.Egress.AllowedCIDRs, base.Egress.AllowedCIDRs)

	hosts, bHosts := p.Ingresses.AllowedHosts, base.Ingresses.AllowedHosts
	if len(bHosts) > 0 {
		if len(hosts) == 0 {
			ls.Add(prefix+"ingresses.allowedHosts", "[] (any host)", "["+strings.Join(bHosts, ", ")+"]")
		}
		ls.subset(prefix+"ingresses.allowedHosts", hosts, bHosts, func(own, b string) bool {
			return hostPatternWithin(vars.expand(own), vars.expand(b))
		})
	}

	ls.subset(prefix+"gateways.allowedParents", p.Gateways.AllowedParents, base.Gateways.AllowedParents, func(own, b string) bool {
		return vars.expand(own) == vars.expand(b)
	})
	ls.subset(prefix+"pods.allowedCSIDrivers", p.Pods.AllowedCSIDrivers, base.Pods.AllowedCSIDrivers, func(own, b string) bool { return own == b })
	tol, bTol := p.Pods.AllowedTolerations, base.Pods.AllowedTolerations
	if !slices.Contains(bTol, "*") {
		ls.subset(prefix+"pods.allowedTolerations", tol, bTol, func(own, b string) bool { return own == b })
	}
	for _, k := range slices.Sorted(maps.Keys(base.Pods.NodeSelector)) {
		if v, ok := p.Pods.NodeSelector[k]; !ok || v != base.Pods.NodeSelector[k] {
			ls.Add(prefix+"pods.nodeSelector."+k, fmt.Sprintf("%q", v), fmt.Sprintf("%q", base.Pods.NodeSelector[k]))
		}
	}
	return ls
}

// subset records each entry of own that no entry of base covers.
func (ls *Loosenings) subset(path string, own, base []string, within func(own, base string) bool) {
	for _, o := range own {
		covered := false
		for _, b := range base {
			if within(o, b) {
				covered = true
				break
			}
		}
		if !covered {
			ls.Add(path, fmt.Sprintf("%q", o), describeList(base))
		}
	}
}

func (ls *Loosenings) cidrs(path string, own, base []string) {
	allowed, _ := ParseCIDRs(base)
	for _, o := range own {
		n, err := ParseCIDRs([]string{o})
		if err != nil || len(n) != 1 || !allowed.within(n[0]) {
			ls.Add(path, fmt.Sprintf("%q", o), describeList(base))
		}
	}
}

func describeList(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	s := append([]string(nil), l...)
	sort.Strings(s)
	return "[" + strings.Join(s, ", ") + "]"
}

// patternWithin reports whether every key annotation pattern own matches
// is matched by pattern base.
func patternWithin(own, base string) bool {
	if own == base {
		return true
	}
	bPrefix, bWild := strings.CutSuffix(base, "*")
	if !bWild {
		return false
	}
	oPrefix, oWild := strings.CutSuffix(own, "*")
	if !oWild {
		return patternMatches(base, own)
	}
	return strings.HasPrefix(oPrefix, bPrefix)
}

// hostPatternWithin reports whether every host own covers is covered by
// base (both expanded).
func hostPatternWithin(own, base string) bool {
	if own == base {
		return true
	}
	if d, wild := strings.CutPrefix(own, "*."); wild {
		e, bWild := strings.CutPrefix(base, "*.")
		return bWild && (d == e || strings.HasSuffix(d, "."+e))
	}
	return hostCovered(own, base)
}
