package syncer

import (
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/sublet-dev/sublet/internal/isolation"
)

// Endpoints and EndpointSlices a tenant writes for a service without
// selector reach the host's ingress controller and proxies, which connect
// to the addresses they name: a confused deputy toward any address (the
// CVE-2021-25740 class). Only the IPs of this virtual cluster's own host
// pods pass, and ranges the admin allows (isolation.endpoints.allowedCIDRs).

// indexEndpointsIPs indexes virtual endpoints and slices by the IPs they
// name: a host pod that gets or loses an IP re-syncs them.
const indexEndpointsIPs = "sublet-endpoints-ips"

// podIPs are the IPs in a pod's status.
func podIPs(obj interface{}) []string {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return nil
	}
	ips := []string{p.Status.PodIP}
	for _, ip := range p.Status.PodIPs {
		ips = append(ips, ip.IP)
	}
	return ips
}

// endpointAddresses decides which addresses of tenant endpoints may reach
// the host: this cluster's own host pods and services (OwnedAddresses, the
// egress guard's view too), and the admin's ranges.
type endpointAddresses struct {
	c       *Context
	allowed isolation.CIDRs
}

func newEndpointAddresses(c *Context) endpointAddresses {
	allowed, _ := isolation.ParseCIDRs(c.Policy.Endpoints.AllowedCIDRs) // validated with the values
	return endpointAddresses{c: c, allowed: allowed}
}

func (e endpointAddresses) ok(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && (e.allowed.Contain(a) || e.c.Addresses.Owns(a))
}

// refusedAddresses records refused addresses.
func refusedAddresses(r *restrictions, refused []string) {
	if len(refused) == 0 {
		return
	}
	sort.Strings(refused)
	r.add("addresses %s (only the IPs of this virtual cluster's own pods are copied; an admin may allow others with isolation.endpoints.allowedCIDRs)",
		strings.Join(refused, ", "))
}

// restrictEndpoints keeps the allowed addresses of h.
func restrictEndpoints(c *Context, _, h *corev1.Endpoints) (restrictions, bool, error) {
	addrs := newEndpointAddresses(c)
	var refused []string
	keep := func(list []corev1.EndpointAddress) []corev1.EndpointAddress {
		var out []corev1.EndpointAddress
		for _, a := range list {
			if addrs.ok(a.IP) {
				out = append(out, a)
			} else {
				refused = append(refused, a.IP)
			}
		}
		return out
	}
	var subsets []corev1.EndpointSubset
	for _, s := range h.Subsets {
		s.Addresses, s.NotReadyAddresses = keep(s.Addresses), keep(s.NotReadyAddresses)
		if len(s.Addresses)+len(s.NotReadyAddresses) > 0 {
			subsets = append(subsets, s)
		}
	}
	h.Subsets = subsets
	var r restrictions
	refusedAddresses(&r, refused)
	return r, true, nil
}

// restrictSlice keeps the allowed addresses of h; a slice of FQDNs is not
// copied (names cannot be checked against this cluster's pods).
func restrictSlice(c *Context, _, h *discoveryv1.EndpointSlice) (restrictions, bool, error) {
	var r restrictions
	if h.AddressType == discoveryv1.AddressTypeFQDN {
		r.add("addressType FQDN (names cannot be checked against this virtual cluster's pods; use IP addresses)")
		return r, false, nil
	}
	allowed := newEndpointAddresses(c)
	var refused []string
	var endpoints []discoveryv1.Endpoint
	for _, e := range h.Endpoints {
		var addrs []string
		for _, a := range e.Addresses {
			if allowed.ok(a) {
				addrs = append(addrs, a)
			} else {
				refused = append(refused, a)
			}
		}
		if len(addrs) > 0 {
			e.Addresses = addrs
			endpoints = append(endpoints, e)
		}
	}
	h.Endpoints = endpoints
	refusedAddresses(&r, refused)
	return r, true, nil
}

// endpointsByIP indexes informer inf (virtual Endpoints or EndpointSlices)
// by the IPs its objects name, and returns the trigger that re-syncs them
// when a host pod of this cluster with one of those IPs changes.
func endpointsByIP(f factories, inf cache.SharedIndexInformer) trigger {
	if _, ok := inf.GetIndexer().GetIndexers()[indexEndpointsIPs]; !ok {
		_ = inf.AddIndexers(cache.Indexers{indexEndpointsIPs: func(obj interface{}) ([]string, error) {
			var ips []string
			switch e := obj.(type) {
			case *corev1.Endpoints:
				for _, s := range e.Subsets {
					for _, list := range [][]corev1.EndpointAddress{s.Addresses, s.NotReadyAddresses} {
						for _, a := range list {
							ips = append(ips, a.IP)
						}
					}
				}
			case *discoveryv1.EndpointSlice:
				for _, ep := range e.Endpoints {
					ips = append(ips, ep.Addresses...)
				}
			}
			return ips, nil
		}})
	}
	return trigger{informer: podInformer(f.host), keys: func(obj interface{}) []string {
		var keys []string
		for _, ip := range podIPs(obj) {
			k, _ := inf.GetIndexer().IndexKeys(indexEndpointsIPs, ip)
			keys = append(keys, k...)
		}
		return keys
	}}
}
