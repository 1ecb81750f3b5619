// Package isolation holds the policies that decide what of a tenant's
// objects reaches the host, beyond Pod Security: which service types,
// endpoint addresses, ingress host names, annotations, tolerations and
// egress destinations. A Policy is the part of a virtual cluster's
// `isolation` values that the syncer and the egress guard enforce; its
// zero value is the safe default, and only the host admin (cluster default
// and templates) loosens it. Pure functions, no clients.
package isolation

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sjson "sigs.k8s.io/json"
)

// Policy is what the syncer and the egress guard enforce. The README's
// "Values reference" documents every key under isolation.
type Policy struct {
	Services  ServicePolicy  `json:"services,omitzero"`
	Endpoints EndpointPolicy `json:"endpoints,omitzero"`
	Ingresses IngressPolicy  `json:"ingresses,omitzero"`
	Pods      PodPolicy      `json:"pods,omitzero"`
	Egress    EgressPolicy   `json:"egress,omitzero"`
	Gateways  GatewayPolicy  `json:"gateways,omitzero"`
}

// GatewayPolicy decides which of the host's Gateways the cluster's
// Gateway API routes may attach to. A Gateway is shared like an ingress
// controller: a route attached to it serves its host names for everyone,
// so by default a route reaches no Gateway and is not copied.
type GatewayPolicy struct {
	// AllowedParents are host Gateways as NAMESPACE/NAME
	// ("shared/public-gateway"); {namespace} stands for the cluster's
	// host namespace.
	AllowedParents []string `json:"allowedParents,omitempty"`
}

// ServicePolicy decides how a virtual Service reaches the host. Without
// it a host copy is a ClusterIP (or headless, or ExternalName) service:
// externalIPs are never copied (anyone could capture traffic for any
// address, the CVE-2020-8554 class).
type ServicePolicy struct {
	// AllowLoadBalancer: type LoadBalancer (and its loadBalancerIP and
	// source ranges) reaches the host; else the host copy is ClusterIP.
	AllowLoadBalancer bool `json:"allowLoadBalancer,omitempty"`
	// LoadBalancerClasses a LoadBalancer service may name; a class not
	// listed makes the host copy ClusterIP.
	LoadBalancerClasses []string `json:"loadBalancerClasses,omitempty"`
	// AllowNodePort: node ports are opened on the host's nodes (type
	// NodePort, and LoadBalancer's node ports); else NodePort becomes
	// ClusterIP and load balancers get no node ports.
	AllowNodePort bool `json:"allowNodePort,omitempty"`
	// AllowExternalNameInCluster: an ExternalName may name a host cluster
	// service (NAME.NS.svc…) or an IP; else such services stay virtual.
	AllowExternalNameInCluster bool `json:"allowExternalNameInCluster,omitempty"`
	// AllowedAnnotations are annotation patterns copied to host services
	// beyond the base rule (cloud load-balancer settings, external-dns).
	AllowedAnnotations []string `json:"allowedAnnotations,omitempty"`
}

// EndpointPolicy decides which addresses tenant-written Endpoints and
// EndpointSlices (of services without selector) may name on the host.
// Without it only the IPs of this virtual cluster's own host pods pass
// (the host's ingress controller or proxy would otherwise become a
// confused deputy toward any address, the CVE-2021-25740 class).
type EndpointPolicy struct {
	AllowedCIDRs []string `json:"allowedCIDRs,omitempty"`
}

// IngressPolicy decides which host names and annotations of a virtual
// Ingress reach the host's ingress controller.
type IngressPolicy struct {
	// AllowedHosts are host name patterns ("app.example.com",
	// "*.{name}.apps.example.com"); empty allows any host that no other
	// host namespace serves.
	AllowedHosts []string `json:"allowedHosts,omitempty"`
	// AllowedAnnotations extend DefaultIngressAnnotations.
	AllowedAnnotations []string `json:"allowedAnnotations,omitempty"`
}

// PodPolicy decides the host-facing metadata and scheduling of host pods.
type PodPolicy struct {
	// AllowedAnnotations are annotation patterns copied to host pods
	// beyond the base rule (CNI, service mesh, secret injectors).
	AllowedAnnotations []string `json:"allowedAnnotations,omitempty"`
	// AllowedTolerations are taint keys pods may tolerate beyond the
	// node condition taints (DefaultTolerations); "*" allows any
	// toleration, an empty key with operator Exists included.
	AllowedTolerations []string `json:"allowedTolerations,omitempty"`
	// NodeSelector is added to every host pod's nodeSelector (it wins
	// over the tenant's own keys): the host nodes tenants may use.
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// AllowedCSIDrivers may serve inline CSI volumes of pods: the driver
	// acts on the volume attributes the tenant writes, on the host's node.
	AllowedCSIDrivers []string `json:"allowedCSIDrivers,omitempty"`
}

// EgressPolicy decides where the virtual control plane may dial
// (webhooks, aggregated APIs, node proxy) beyond its own host pods and
// services.
type EgressPolicy struct {
	AllowedCIDRs []string `json:"allowedCIDRs,omitempty"`
}

// IsZero reports whether p is the default policy.
func (p Policy) IsZero() bool {
	b, _ := json.Marshal(p)
	return string(b) == "{}"
}

// String is p as compact JSON, the form `vcluster run --isolation-policy`
// takes.
func (p Policy) String() string {
	b, _ := json.Marshal(p)
	return string(b)
}

// Parse reads a policy from JSON strictly (unknown keys are errors) and
// validates it.
func Parse(doc string) (Policy, error) {
	var p Policy
	if strings.TrimSpace(doc) == "" {
		return p, nil
	}
	strict, err := sjson.UnmarshalStrict([]byte(doc), &p)
	if err != nil {
		return p, fmt.Errorf("isolation policy: %w", err)
	}
	if len(strict) > 0 {
		var msgs []string
		for _, e := range strict {
			msgs = append(msgs, e.Error())
		}
		return p, fmt.Errorf("isolation policy: %s", strings.Join(msgs, "; "))
	}
	if errs := p.Validate(field.NewPath("isolation")); len(errs) > 0 {
		return p, errs.ToAggregate()
	}
	return p, nil
}

// Validate checks p's CIDRs, patterns and labels; paths start at base.
func (p Policy) Validate(base *field.Path) field.ErrorList {
	var errs field.ErrorList
	cidrs := func(path *field.Path, list []string) {
		for i, c := range list {
			if _, err := ParseCIDRs([]string{c}); err != nil {
				errs = append(errs, field.Invalid(path.Index(i), c, err.Error()))
			}
		}
	}
	patterns := func(path *field.Path, list []string) {
		for i, a := range list {
			if msg := checkAnnotationPattern(a); msg != "" {
				errs = append(errs, field.Invalid(path.Index(i), a, msg))
			}
		}
	}
	cidrs(base.Child("endpoints", "allowedCIDRs"), p.Endpoints.AllowedCIDRs)
	cidrs(base.Child("egress", "allowedCIDRs"), p.Egress.AllowedCIDRs)
	patterns(base.Child("services", "allowedAnnotations"), p.Services.AllowedAnnotations)
	patterns(base.Child("ingresses", "allowedAnnotations"), p.Ingresses.AllowedAnnotations)
	patterns(base.Child("pods", "allowedAnnotations"), p.Pods.AllowedAnnotations)
	for i, c := range p.Services.LoadBalancerClasses {
		if msgs := validation.IsQualifiedName(c); len(msgs) > 0 {
			errs = append(errs, field.Invalid(base.Child("services", "loadBalancerClasses").Index(i), c, strings.Join(msgs, "; ")))
		}
	}
	for i, h := range p.Ingresses.AllowedHosts {
		if msg := checkHostPattern(h); msg != "" {
			errs = append(errs, field.Invalid(base.Child("ingresses", "allowedHosts").Index(i), h, msg))
		}
	}
	for i, g := range p.Gateways.AllowedParents {
		ns, name, ok := strings.Cut(strings.ReplaceAll(g, "{namespace}", "x"), "/")
		if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
			errs = append(errs, field.Invalid(base.Child("gateways", "allowedParents").Index(i), g, "not NAMESPACE/NAME of a Gateway (shared/public-gateway)"))
		}
	}
	for i, d := range p.Pods.AllowedCSIDrivers {
		if msgs := validation.IsDNS1123Subdomain(d); len(msgs) > 0 {
			errs = append(errs, field.Invalid(base.Child("pods", "allowedCSIDrivers").Index(i), d, "not a CSI driver name"))
		}
	}
	for i, k := range p.Pods.AllowedTolerations {
		if k == "*" {
			continue
		}
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			errs = append(errs, field.Invalid(base.Child("pods", "allowedTolerations").Index(i), k, "not a taint key, or \"*\""))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(p.Pods.NodeSelector)) {
		path := base.Child("pods", "nodeSelector").Key(k)
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			errs = append(errs, field.Invalid(path, k, "not a label key: "+strings.Join(msgs, "; ")))
		}
		if msgs := validation.IsValidLabelValue(p.Pods.NodeSelector[k]); len(msgs) > 0 {
			errs = append(errs, field.Invalid(path, p.Pods.NodeSelector[k], "not a label value: "+strings.Join(msgs, "; ")))
		}
	}
	return errs
}

// checkHostPattern returns what is wrong with an allowed-host pattern.
func checkHostPattern(h string) string {
	name := strings.TrimPrefix(h, "*.")
	name = strings.NewReplacer("{name}", "x", "{namespace}", "x").Replace(name)
	if strings.Contains(name, "*") {
		return `a "*" only as the first label ("*.apps.example.com")`
	}
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return "not a host name pattern: " + strings.Join(msgs, "; ")
	}
	return ""
}
