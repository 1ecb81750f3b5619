package values

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/sublet-dev/sublet/internal/isolation"
)

// podSecurityOrder ranks the Pod Security levels from tightest to loosest.
var podSecurityOrder = map[string]int{"restricted": 0, "baseline": 1, "privileged": 2}

// LooserThan lists where isolation i (a VirtualCluster's effective values)
// allows more than base (the effective values of the cluster default and
// the template alone). Tightening is free: a stricter Pod Security level,
// a guard rail turned on, lower quotas and limit-range defaults, fewer
// namespaces let in, narrower policies. vars expand host patterns.
func (i Isolation) LooserThan(base Isolation, vars isolation.Vars) isolation.Loosenings {
	var ls isolation.Loosenings
	if own, b := i.PodSecurityLevel(), base.PodSecurityLevel(); podSecurityOrder[own] > podSecurityOrder[b] {
		ls.Add("isolation.podSecurityStandard", own, b)
	}
	rails := []struct {
		name      string
		own, base bool
		ownQ      map[string]string
		baseQ     map[string]string
	}{
		{"resourceQuota", i.Enabled || i.ResourceQuota.Enabled, base.Enabled || base.ResourceQuota.Enabled,
			overlay(DefaultQuota, i.ResourceQuota.Quota), overlay(DefaultQuota, base.ResourceQuota.Quota)},
		{"limitRange", i.Enabled || i.LimitRange.Enabled, base.Enabled || base.LimitRange.Enabled, nil, nil},
		{"networkPolicy", i.Enabled || i.NetworkPolicy.Enabled, base.Enabled || base.NetworkPolicy.Enabled, nil, nil},
	}
	for _, r := range rails {
		if !r.base {
			continue
		}
		if !r.own {
			ls.Add("isolation."+r.name+".enabled", "false", "true (also set by isolation.enabled)")
			continue
		}
		ls = append(ls, notRaised("isolation."+r.name+".quota", r.ownQ, r.baseQ)...)
	}
	if base.Enabled || base.LimitRange.Enabled {
		ls = append(ls, notRaised("isolation.limitRange.default", overlay(DefaultLimit, i.LimitRange.Default), overlay(DefaultLimit, base.LimitRange.Default))...)
		ls = append(ls, notRaised("isolation.limitRange.defaultRequest", overlay(DefaultLimitRequest, i.LimitRange.DefaultRequest), overlay(DefaultLimitRequest, base.LimitRange.DefaultRequest))...)
	}
	if base.Enabled || base.NetworkPolicy.Enabled {
		own, b := i.NetworkPolicy.AllowIngressFromNamespaces, base.NetworkPolicy.AllowIngressFromNamespaces
		if own == nil {
			own = DefaultIngressNamespaces
		}
		if b == nil {
			b = DefaultIngressNamespaces
		}
		for _, ns := range own {
			if !slices.Contains(b, ns) {
				ls.Add("isolation.networkPolicy.allowIngressFromNamespaces", fmt.Sprintf("%q", ns), "["+strings.Join(b, ", ")+"]")
			}
		}
	}
	return append(ls, i.Policy.LooserThan(base.Policy, vars)...)
}

// overlay is defaults with own's quantities over them.
func overlay(defaults map[string]string, own map[string]Quantity) map[string]string {
	out := make(map[string]string, len(defaults)+len(own))
	for k, v := range defaults {
		out[k] = v
	}
	for k, v := range own {
		out[k] = string(v)
	}
	return out
}

// notRaised lists the quantities of own above base's (a key base does not
// limit may take any value).
func notRaised(path string, own, base map[string]string) isolation.Loosenings {
	var ls isolation.Loosenings
	keys := make([]string, 0, len(base))
	for k := range base {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b, errB := resource.ParseQuantity(base[k])
		o, errO := resource.ParseQuantity(own[k])
		if errB == nil && errO == nil && o.Cmp(b) > 0 {
			ls.Add(path+"."+k, own[k], base[k])
		}
	}
	return ls
}
