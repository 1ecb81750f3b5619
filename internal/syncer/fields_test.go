package syncer

import (
	"reflect"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// What the syncer does with each field of every synced kind on the way to
// the host, besides PodSpec (podspec_test.go): a decision covers the field
// and everything below it, and each kind's golden list pins the fields
// that existed when the decisions were made, so a Kubernetes upgrade that
// adds a field fails TestSyncedFieldsHaveDecisions until someone decides.
const (
	restricted = "kept where the cluster's isolation policy allows it, else left out with an event (isolation.*)"
	hostOwned  = "cleared: the host sets it"
	neverSent  = "never copied to the host, with an event"
)

// syncedKinds are the host-facing parts of each synced kind: the type whose
// fields reach the host, and the decisions.
var syncedKinds = []struct {
	name      string
	typ       reflect.Type
	decisions map[string]string
}{
	{"objectmeta", reflect.TypeOf(metav1.ObjectMeta{}), map[string]string{
		"Name": translated, "Namespace": translated, "Labels": translated, // under vl.sublet.dev/ keys, plus the owner labels
		"Annotations":  restricted, // the base rule (no domain-prefixed key) and the kind's allow-list; owner annotations added
		"GenerateName": hostOwned, "SelfLink": hostOwned, "UID": hostOwned, "ResourceVersion": hostOwned, "Generation": hostOwned,
		"CreationTimestamp": hostOwned, "DeletionTimestamp": hostOwned, "DeletionGracePeriodSeconds": hostOwned,
		"OwnerReferences": hostOwned, "Finalizers": hostOwned, "ManagedFields": hostOwned,
	}},
	{"service", reflect.TypeOf(corev1.ServiceSpec{}), map[string]string{
		"Ports":            kept,
		"Ports[].NodePort": hostOwned, // copied back where the host opens node ports
		"Selector":         translated,
		"ClusterIP":        kept, // asked for; the host's wins and the virtual service adopts it
		"ClusterIPs":       kept,
		"Type":             restricted, // LoadBalancer, NodePort: allowLoadBalancer, allowNodePort
		"ExternalIPs":      neverSent,  // CVE-2020-8554
		"SessionAffinity":  kept, "SessionAffinityConfig": kept, "PublishNotReadyAddresses": kept,
		"LoadBalancerIP": restricted, "LoadBalancerSourceRanges": restricted, "LoadBalancerClass": restricted,
		"AllocateLoadBalancerNodePorts": restricted, "ExternalTrafficPolicy": restricted,
		"ExternalName":        restricted, // names in the host cluster or addresses: allowExternalNameInCluster
		"HealthCheckNodePort": hostOwned,
		"IPFamilies":          kept, "IPFamilyPolicy": kept, "InternalTrafficPolicy": kept, "TrafficDistribution": kept,
	}},
	{"endpoints", reflect.TypeOf(corev1.EndpointSubset{}), map[string]string{
		"Addresses[].IP":                restricted, // this cluster's own pods, allowedCIDRs
		"NotReadyAddresses[].IP":        restricted,
		"Addresses[].TargetRef":         translated,
		"NotReadyAddresses[].TargetRef": translated,
		"Addresses[].Hostname":          kept, "NotReadyAddresses[].Hostname": kept,
		"Addresses[].NodeName": kept, "NotReadyAddresses[].NodeName": kept, // informational: which node
		"Ports": kept,
	}},
	{"endpointslice", reflect.TypeOf(discoveryv1.EndpointSlice{}), map[string]string{
		"TypeMeta": hostOwned, "ObjectMeta": translated, // objectmeta above
		"AddressType":                    restricted, // FQDN slices are not copied
		"Endpoints[].Addresses":          restricted,
		"Endpoints[].TargetRef":          translated,
		"Endpoints[].Conditions":         kept,
		"Endpoints[].Hostname":           kept,
		"Endpoints[].NodeName":           kept,
		"Endpoints[].Zone":               kept,
		"Endpoints[].Hints":              kept,
		"Endpoints[].DeprecatedTopology": kept,
		"Ports":                          kept,
	}},
	{"ingress", reflect.TypeOf(networkingv1.IngressSpec{}), map[string]string{
		"IngressClassName":                      kept,       // the host's choice of controller
		"DefaultBackend":                        restricted, // claims every host name: host "" (allowedHosts, other namespaces)
		"TLS[].Hosts":                           restricted,
		"TLS[].SecretName":                      translated,
		"Rules[].Host":                          restricted, // allowedHosts, not served for another host namespace
		"Rules[].HTTP.Paths[].Path":             kept,
		"Rules[].HTTP.Paths[].PathType":         kept,
		"Rules[].HTTP.Paths[].Backend.Service":  translated,
		"Rules[].HTTP.Paths[].Backend.Resource": cleared, // names a virtual object: the path is dropped
	}},
	{"persistentvolumeclaim", reflect.TypeOf(corev1.PersistentVolumeClaimSpec{}), map[string]string{
		"AccessModes": kept, "Resources": kept, "VolumeMode": kept,
		"StorageClassName":          kept, // the host's classes, by name, as tenants of a real cluster use them
		"VolumeAttributesClassName": kept,
		"Selector":                  cleared,    // would pick host PVs
		"VolumeName":                cleared,    // would bind a host PV by name
		"DataSource":                translated, // the tenant's own claims only; else cleared
		"DataSourceRef":             translated,
	}},
	{"configmap", reflect.TypeOf(corev1.ConfigMap{}), map[string]string{
		"TypeMeta": hostOwned, "ObjectMeta": translated, "Data": kept, "BinaryData": kept, "Immutable": kept,
	}},
	{"secret", reflect.TypeOf(corev1.Secret{}), map[string]string{
		"TypeMeta": hostOwned, "ObjectMeta": translated, "Data": kept, "StringData": kept, "Immutable": kept,
		"Type": translated, // a service-account token becomes Opaque: the host's token controller never fills it
	}},
	{"networkpolicy", reflect.TypeOf(networkingv1.NetworkPolicySpec{}), map[string]string{
		// Every selector is confined to this cluster's host pods; a
		// namespace selector picks virtual namespaces (translate.HostNetworkPolicy).
		"PodSelector":                        translated,
		"Ingress[].From[].PodSelector":       translated,
		"Ingress[].From[].NamespaceSelector": translated,
		"Egress[].To[].PodSelector":          translated,
		"Egress[].To[].NamespaceSelector":    translated,
		// Addresses, and rules without peers (everyone): as written, or,
		// with the isolation NetworkPolicy on, left out with an event and
		// the cluster's own pods (restrictNetworkPolicy).
		"Ingress[].From[].IPBlock": restricted,
		"Egress[].To[].IPBlock":    restricted,
		"Ingress[].Ports":          kept, "Egress[].Ports": kept, "PolicyTypes": kept,
	}},
	{"httproute", reflect.TypeOf(gatewayv1.HTTPRouteSpec{}), withDecisions(routeCommon, map[string]string{
		"Hostnames":       restricted, // within isolation.ingresses.allowedHosts, else refused
		"Rules[].Filters": restricted, // ExtensionRef refuses the route; RequestMirror's backend translated
		"Rules[].Matches": kept, "Rules[].Timeouts": kept, "Rules[].Retry": kept, "Rules[].SessionPersistence": kept,
	})},
	{"grpcroute", reflect.TypeOf(gatewayv1.GRPCRouteSpec{}), withDecisions(routeCommon, map[string]string{
		"Hostnames":       restricted,
		"Rules[].Filters": restricted,
		"Rules[].Matches": kept, "Rules[].SessionPersistence": kept,
	})},
	{"tlsroute", reflect.TypeOf(gatewayv1.TLSRouteSpec{}), withDecisions(routeCommon, map[string]string{
		"Hostnames": restricted,
	})},
	{"poddisruptionbudget", reflect.TypeOf(policyv1.PodDisruptionBudgetSpec{}), map[string]string{
		"MinAvailable": kept, "MaxUnavailable": kept, "UnhealthyPodEvictionPolicy": kept,
		"Selector": translated,
	}},
}

// routeCommon are the decisions every Gateway API route kind shares.
var routeCommon = map[string]string{
	"ParentRefs":          restricted, // isolation.gateways.allowedParents; the route is refused if none is left
	"UseDefaultGateways":  neverSent,  // experimental: would attach to the host's default Gateways
	"Rules[].BackendRefs": translated, // Services of the route's namespace, as host copies; else refused (ExtensionRef filters too)
	"Rules[].Name":        kept,
}

// withDecisions is a copy of base with more decisions.
func withDecisions(base, more map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range more {
		out[k] = v
	}
	return out
}

// kindDecision finds the decision recorded for path or an ancestor of it.
func kindDecision(decisions map[string]string, path string) (string, bool) {
	for p := path; p != ""; {
		for strings.HasSuffix(p, "[]") {
			p = strings.TrimSuffix(p, "[]")
		}
		if d, ok := decisions[p]; ok {
			return d, true
		}
		i := strings.LastIndex(p, ".")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return "", false
}

// fieldPaths lists every field path of struct type t: its own fields
// whatever their package, and below them what podSpecPaths walks.
func fieldPaths(t reflect.Type) []string {
	var paths []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Name
		if f.Anonymous && strings.HasPrefix(f.Type.PkgPath(), "sigs.k8s.io/gateway-api/") { // inlined: its fields are the route's own
			name = ""
		}
		podSpecPaths(f.Type, name, &paths, map[reflect.Type]bool{t: true})
	}
	sort.Strings(paths)
	return paths
}

func TestSyncedFieldsHaveDecisions(t *testing.T) {
	for _, k := range syncedKinds {
		t.Run(k.name, func(t *testing.T) {
			paths := fieldPaths(k.typ)
			checkFieldsGolden(t, k.name, k.typ.String(), "syncedKinds and the kind's translation", paths)
			var undecided []string
			for _, p := range paths {
				if _, ok := kindDecision(k.decisions, p); !ok && !hasDecidedChildren(k.decisions, p) {
					undecided = append(undecided, p)
				}
			}
			if len(undecided) > 0 {
				t.Errorf("%s fields with no decision recorded in syncedKinds: %v", k.typ, undecided)
			}
		})
	}
}

// hasDecidedChildren reports whether path is a list or struct decided field
// by field below it.
func hasDecidedChildren(decisions map[string]string, path string) bool {
	for d := range decisions {
		if strings.HasPrefix(d, strings.TrimSuffix(path, "[]")+".") || strings.HasPrefix(d, path+".") {
			return true
		}
	}
	return false
}
