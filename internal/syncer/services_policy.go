package syncer

import (
	"net"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// restrictService applies the cluster's service policy to host copy h
// (decisions: services_fields_test.go). ExternalIPs never reach the host:
// any address's traffic could be captured (the CVE-2020-8554 class). Load
// balancers and node ports open the host to the outside and cost the admin
// money, so they are served as ClusterIP unless the admin allows them. An
// ExternalName that names a service of the host cluster, or an address,
// would make the host's ingress controller or proxies reach it for the
// tenant: no host copy is made unless allowed. It reports false if h may
// not exist.
func restrictService(c *Context, h *corev1.Service, r *restrictions) bool {
	p := c.Policy.Services
	if len(h.Spec.ExternalIPs) > 0 {
		r.add("externalIPs %s (never copied: they would capture the host's traffic for those addresses)", strings.Join(h.Spec.ExternalIPs, ", "))
		h.Spec.ExternalIPs = nil
	}
	switch h.Spec.Type {
	case corev1.ServiceTypeExternalName:
		if !p.AllowExternalNameInCluster && inHostCluster(h.Spec.ExternalName, c.Pods.ClusterDomain) {
			r.add("externalName %q names a service of the host cluster or an address, which the host's ingress controller and proxies would reach for this cluster; "+
				"an admin may allow it with isolation.services.allowExternalNameInCluster", h.Spec.ExternalName)
			return false
		}
	case corev1.ServiceTypeLoadBalancer:
		switch {
		case !p.AllowLoadBalancer:
			r.add("type LoadBalancer (served as ClusterIP on the host; an admin may allow load balancers with isolation.services.allowLoadBalancer)")
			toClusterIP(h)
		case h.Spec.LoadBalancerClass != nil && !slices.Contains(p.LoadBalancerClasses, *h.Spec.LoadBalancerClass):
			r.add("loadBalancerClass %q (served as ClusterIP on the host; an admin may allow the class with isolation.services.loadBalancerClasses)", *h.Spec.LoadBalancerClass)
			toClusterIP(h)
		case !p.AllowNodePort:
			h.Spec.AllocateLoadBalancerNodePorts = ptr.To(false)
		}
	case corev1.ServiceTypeNodePort:
		if !p.AllowNodePort {
			r.add("type NodePort (served as ClusterIP on the host; an admin may allow node ports with isolation.services.allowNodePort)")
			toClusterIP(h)
		}
	}
	return true
}

// toClusterIP makes h a ClusterIP service, without what only externally
// reachable services may have.
func toClusterIP(h *corev1.Service) {
	h.Spec.Type = corev1.ServiceTypeClusterIP
	h.Spec.LoadBalancerClass, h.Spec.LoadBalancerIP, h.Spec.LoadBalancerSourceRanges = nil, "", nil
	h.Spec.AllocateLoadBalancerNodePorts, h.Spec.ExternalTrafficPolicy, h.Spec.HealthCheckNodePort = nil, "", 0
}

// inHostCluster reports whether an ExternalName resolves inside the host
// cluster (a service name of any namespace: single labels resolve in the
// host namespace's search path, NAME.NS.svc and names under the cluster
// domain) or is an address.
func inHostCluster(name, clusterDomain string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if clusterDomain == "" {
		clusterDomain = "cluster.local"
	}
	switch {
	case net.ParseIP(name) != nil, !strings.Contains(name, "."):
		return true
	case strings.HasSuffix(name, ".svc"), strings.Contains(name, ".svc."):
		return true
	case name == clusterDomain, strings.HasSuffix(name, "."+clusterDomain):
		return true
	}
	return false
}
