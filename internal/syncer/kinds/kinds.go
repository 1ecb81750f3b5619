// Package kinds is the table of the kinds a virtual cluster's syncer
// handles: one row per kind, with its name in values and flags, whether it
// is on by default, the host resource it works on, the host rights it needs
// and what deleting a virtual cluster does to its host objects. Everything
// that depends on the list of kinds derives from this table: the syncer's
// selection, the syncer's host Role (the agent's and the chart's), the
// cleanup on delete, the kinds the events syncer retells events about, and
// the names values accept.
//
// It is a leaf: no engine, no clients, so values and the agent can use it
// without linking the syncer.
package kinds

import (
	"fmt"
	"sort"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Names of the kinds, as values (sync.NAME.enabled) and flags (--sync,
// --disable-sync-resources) spell them.
const (
	Pods                   = "pods"
	Services               = "services"
	ConfigMaps             = "configmaps"
	Secrets                = "secrets"
	PersistentVolumeClaims = "persistentvolumeclaims"
	Ingresses              = "ingresses"
	Endpoints              = "endpoints"
	EndpointSlices         = "endpointslices"
	Nodes                  = "nodes"
	Events                 = "events"
	PodDisruptionBudgets   = "poddisruptionbudgets"
	NetworkPolicies        = "networkpolicies"
	// Gateway API routes, served when the host has their CRDs.
	HTTPRoutes = "httproutes"
	GRPCRoutes = "grpcroutes"
	TLSRoutes  = "tlsroutes"
	// The host's classes, copied into the virtual cluster read-only.
	StorageClasses  = "storageclasses"
	IngressClasses  = "ingressclasses"
	PriorityClasses = "priorityclasses"
	RuntimeClasses  = "runtimeclasses"
	CSIDrivers      = "csidrivers"
	GatewayClasses  = "gatewayclasses"
	// The host Gateways a cluster's routes may attach to, copied in
	// read-only (their status carries the addresses).
	Gateways = "gateways"
)

// DefaultPodSecurityStandard is the Pod Security level the pods syncer
// checks pods against when values name none: an admin sets privileged
// explicitly.
const DefaultPodSecurityStandard = "baseline"

// Kind is one row of the table.
type Kind struct {
	// Name is the kind's name in values and flags.
	Name string
	// Default: synced unless turned off.
	Default bool
	// Host is the host resource the syncer reads and writes.
	Host schema.GroupVersionResource
	// Kind is the host objects' kind (an event's involvedObject.kind).
	Kind string
	// ClusterScoped host objects need cluster-wide rights (a ClusterRole);
	// all others are in the virtual cluster's host namespace.
	ClusterScoped bool
	// ClusterRead: the syncer also reads this kind in every host namespace
	// (ingresses: the host names other namespaces serve).
	ClusterRead bool
	// Verbs are the host verbs the syncer needs on Host.
	Verbs []string
	// Subresources of Host the syncer needs, with their verbs.
	Subresources []Subresource
	// DeleteWithCluster: deleting the virtual cluster deletes its host
	// objects of this kind (those labelled as its own).
	DeleteWithCluster bool
	// CRD, for a kind the host serves through a CustomResourceDefinition,
	// names it: the syncer reads it on the host and installs it in the
	// virtual cluster; without it on the host the kind is not synced.
	CRD string
	// FromHost: the host's objects of this kind are copied into the
	// virtual cluster under the same names, and are read-only there (the
	// virtual API server refuses tenants' writes to the resource).
	// Cluster-scoped or read cluster-wide (ClusterRead), read-only on the
	// host.
	FromHost bool
	// HostEvents: host events about this virtual cluster's host objects of
	// this kind are retold in the virtual cluster, about the virtual
	// objects they copy.
	HostEvents bool
	// NoStatus: the kind has no status subresource, so no status is
	// copied back (a custom resource's CRD says).
	NoStatus bool
	// Off is the value that turns the row off, for messages; empty for
	// sync.NAME.enabled: false.
	Off string
}

// OffValue is the value that turns the row off.
func (k Kind) OffValue() string {
	if k.Off != "" {
		return k.Off
	}
	return "sync." + k.Name + ".enabled: false"
}

// Subresource is a subresource of a kind's host resource and the verbs the
// syncer needs on it.
type Subresource struct {
	Name  string
	Verbs []string
}

// Verb sets. Functions, not variables: every row gets a slice of its own.

func read() []string { return []string{"get", "list", "watch"} }

// write is what a syncer that keeps host copies needs.
func write() []string { return []string{"get", "list", "watch", "create", "update", "patch", "delete"} }

// stream is what the kubelet proxy needs for logs, exec, attach and
// port-forward.
func stream() []string { return []string{"get", "create"} }

// proxy is what service and pod proxying needs (any HTTP method).
func proxy() []string { return []string{"get", "create", "update", "patch", "delete"} }

func core(resource string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Version: "v1", Resource: resource}
}

// All returns the table, in the order the syncers start. Adding a kind is a
// row here and its syncer in package syncer.
func All() []Kind {
	return []Kind{
		{Name: Pods, Default: true, Host: core("pods"), Kind: "Pod", Verbs: write(), DeleteWithCluster: true, HostEvents: true,
			Subresources: []Subresource{
				{"log", stream()}, {"exec", stream()}, {"attach", stream()}, {"portforward", stream()}, {"proxy", proxy()},
			}},
		{Name: Services, Default: true, Host: core("services"), Kind: "Service", Verbs: write(), DeleteWithCluster: true, HostEvents: true,
			Subresources: []Subresource{{"proxy", proxy()}}},
		{Name: ConfigMaps, Default: true, Host: core("configmaps"), Kind: "ConfigMap", Verbs: write(), DeleteWithCluster: true},
		{Name: Secrets, Default: true, Host: core("secrets"), Kind: "Secret", Verbs: write(), DeleteWithCluster: true},
		{Name: PersistentVolumeClaims, Default: true, Host: core("persistentvolumeclaims"), Kind: "PersistentVolumeClaim", Verbs: write(),
			DeleteWithCluster: true, HostEvents: true},
		{Name: Ingresses, Default: true, Host: schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "ingresses"},
			Kind: "Ingress", Verbs: write(), DeleteWithCluster: true, ClusterRead: true},
		{Name: Endpoints, Default: true, Host: core("endpoints"), Kind: "Endpoints", Verbs: write(), DeleteWithCluster: true},
		{Name: EndpointSlices, Default: true, Host: schema.GroupVersionResource{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"},
			Kind: "EndpointSlice", Verbs: write(), DeleteWithCluster: true},
		{Name: Nodes, Default: true, Host: core("nodes"), Kind: "Node", ClusterScoped: true, Verbs: read()},
		// The events syncer only reads host events; the write verbs are
		// the rights the syncer has always had.
		{Name: Events, Default: true, Host: core("events"), Kind: "Event", Verbs: write()},
		{Name: PodDisruptionBudgets, Host: schema.GroupVersionResource{Group: "policy", Version: "v1", Resource: "poddisruptionbudgets"},
			Kind: "PodDisruptionBudget", Verbs: write(), DeleteWithCluster: true, HostEvents: true},
		{Name: NetworkPolicies, Default: true, Host: schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"},
			Kind: "NetworkPolicy", Verbs: write(), DeleteWithCluster: true},
		gatewayRoute(HTTPRoutes, "HTTPRoute"),
		gatewayRoute(GRPCRoutes, "GRPCRoute"),
		gatewayRoute(TLSRoutes, "TLSRoute"),
		fromHost(StorageClasses, "storage.k8s.io", "StorageClass"),
		fromHost(IngressClasses, "networking.k8s.io", "IngressClass"),
		fromHost(PriorityClasses, "scheduling.k8s.io", "PriorityClass"),
		fromHost(RuntimeClasses, "node.k8s.io", "RuntimeClass"),
		fromHost(CSIDrivers, "storage.k8s.io", "CSIDriver"),
		withCRD(fromHost(GatewayClasses, GatewayGroup, "GatewayClass")),
		// Namespaced: read in every host namespace, copied only as the
		// isolation policy's allowed parents.
		{Name: Gateways, Default: true, Host: schema.GroupVersionResource{Group: GatewayGroup, Version: "v1", Resource: Gateways},
			Kind: "Gateway", CRD: Gateways + "." + GatewayGroup, FromHost: true, ClusterRead: true, Verbs: read()},
	}
}

// GatewayGroup is the Gateway API's group.
const GatewayGroup = "gateway.networking.k8s.io"

// gatewayRoute is the row of a Gateway API route (standard channel): read
// in every host namespace too, for the host names other namespaces' routes
// claim.
func gatewayRoute(name, kind string) Kind {
	return Kind{Name: name, Default: true, Host: schema.GroupVersionResource{Group: GatewayGroup, Version: "v1", Resource: name},
		Kind: kind, CRD: name + "." + GatewayGroup, Verbs: write(), DeleteWithCluster: true, ClusterRead: true}
}

// withCRD is row k of a kind the host serves through a CRD named after it.
func withCRD(k Kind) Kind {
	k.CRD = k.Host.Resource + "." + k.Host.Group
	return k
}

// fromHost is the row of a host class: on by default, read cluster-wide on
// the host, read-only in the virtual cluster.
func fromHost(name, group, kind string) Kind {
	return Kind{Name: name, Default: true, Host: schema.GroupVersionResource{Group: group, Version: "v1", Resource: name},
		Kind: kind, ClusterScoped: true, FromHost: true, Verbs: read()}
}

// Names returns every kind's name, sorted.
func Names() []string {
	var out []string
	for _, k := range All() {
		out = append(out, k.Name)
	}
	sort.Strings(out)
	return out
}

// Selection picks kinds by name: the defaults, minus disabled, plus
// enabled. An unknown name is an error listing the known ones.
func Selection(enable, disable []string) (map[string]bool, error) {
	sel := map[string]bool{}
	for _, k := range All() {
		sel[k.Name] = k.Default
	}
	for _, lists := range []struct {
		names []string
		on    bool
	}{{enable, true}, {disable, false}} {
		for _, n := range lists.names {
			n = strings.TrimSpace(n)
			if n == "" {
				continue
			}
			if _, known := sel[n]; !known {
				return nil, fmt.Errorf("unknown resource %q: known are %s", n, strings.Join(Names(), ", "))
			}
			sel[n] = lists.on
		}
	}
	return sel, nil
}

// ForParents turns the Gateways row of selection sel off for a cluster
// whose routes may attach to no host Gateway (allowedParents of them):
// the host's Gateways come only where routes use them; elsewhere the kind
// stays the tenant's own.
func ForParents(sel map[string]bool, allowedParents int) {
	sel[Gateways] = sel[Gateways] && allowedParents > 0
}

// FromHostNames are the names of the kinds copied from the host, in
// table order.
func FromHostNames() []string {
	var out []string
	for _, k := range All() {
		if k.FromHost {
			out = append(out, k.Name)
		}
	}
	return out
}

// HostRules are the rights the syncer needs in its host namespace: those of
// every namespaced kind, whether selected or not, so values can turn a kind
// on without new rights.
func HostRules() []rbacv1.PolicyRule { return rules(false) }

// HostClusterRules are the cluster-wide rights the syncer needs: those of
// the cluster-scoped kinds, and reading the kinds it reads everywhere.
func HostClusterRules() []rbacv1.PolicyRule { return rules(true) }

// rules groups the resources (and subresources) of the kinds of one scope
// into one rule per API group and set of verbs, in table order.
func rules(clusterScoped bool) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	add := func(group, resource string, verbs []string) {
		for i := range out {
			if out[i].APIGroups[0] == group && strings.Join(out[i].Verbs, ",") == strings.Join(verbs, ",") {
				out[i].Resources = append(out[i].Resources, resource)
				return
			}
		}
		out = append(out, rbacv1.PolicyRule{APIGroups: []string{group}, Resources: []string{resource}, Verbs: append([]string(nil), verbs...)})
	}
	var crds []string
	for _, k := range All() {
		if k.CRD != "" {
			crds = append(crds, k.CRD)
		}
		if clusterScoped && k.ClusterRead && !k.ClusterScoped {
			add(k.Host.Group, k.Host.Resource, read())
		}
		if k.ClusterScoped != clusterScoped || !clusterScoped && k.FromHost {
			continue // a namespaced kind copied from the host is read cluster-wide only
		}
		add(k.Host.Group, k.Host.Resource, k.Verbs)
		for _, s := range k.Subresources {
			add(k.Host.Group, k.Host.Resource+"/"+s.Name, s.Verbs)
		}
	}
	if clusterScoped && len(crds) > 0 {
		// By name: get, and list and watch with a metadata.name field
		// selector (to follow the host's changes).
		out = append(out, rbacv1.PolicyRule{APIGroups: []string{"apiextensions.k8s.io"}, Resources: []string{"customresourcedefinitions"},
			ResourceNames: crds, Verbs: read()})
	}
	return out
}
