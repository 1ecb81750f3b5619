package syncer

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sublet-dev/sublet/internal/isolation"
	"github.com/sublet-dev/sublet/internal/syncer/kinds"
)

// Gateway API routes (HTTPRoute, GRPCRoute, TLSRoute) reach the host as
// an Ingress does, with the same spec shape for all three:
//   - parentRefs: only the host's Gateways the admin lists for the
//     cluster (isolation.gateways.allowedParents); a parent the cluster may
//     not attach to is left out, and a route left with none is not copied;
//   - hostnames: within isolation.ingresses.allowedHosts, if it lists
//     patterns (no hostnames, every name of the Gateway, is then refused);
//   - backendRefs (and request mirrors): Services of the route's own
//     virtual namespace, named as their host copies; a backend of another
//     kind or namespace refuses the route;
//   - filters: those of the standard channel that name nothing pass, a
//     request mirror's and an external auth service's backendRef is
//     translated as a backend; ExtensionRef (it names an object of the
//     host's Gateway implementation) and types the syncer does not know
//     refuse the route;
//   - status (the Gateway controller's acceptance and resolved references)
//     comes back.
//
// ReferenceGrants are not copied: on the host every route and backend of
// the cluster is in one namespace, and a copy would grant other host
// namespaces access to it.

// restrictRoute applies the route policy to host copy h of route v.
func restrictRoute(c *Context, v, h *unstructured.Unstructured) (restrictions, bool, error) {
	var r restrictions
	spec, _ := h.Object["spec"].(map[string]interface{})
	if spec == nil {
		r.add("no spec")
		return r, false, nil
	}
	if d, ok := spec["useDefaultGateways"]; ok {
		// Experimental channel: it would attach the route to the host's
		// default Gateways, whatever parentRefs say.
		r.add("useDefaultGateways %v (a route attaches only to the Gateways of isolation.gateways.allowedParents)", d)
		delete(spec, "useDefaultGateways")
	}
	vars := isolation.Vars{Name: c.Translator.VCluster, Namespace: c.Translator.HostNamespace}
	if !routeParents(c, spec, vars, &r) {
		return r, false, nil
	}
	if err := routeHostnames(c, spec, vars); err != nil {
		r.add("%s", err.Error())
		return r, false, nil
	}
	if err := routeBackends(c, v.GetNamespace(), spec); err != nil {
		r.add("%s", err.Error())
		return r, false, nil
	}
	return r, true, nil
}

// routeParents keeps the parentRefs the cluster may attach to; false if
// none is left.
func routeParents(c *Context, spec map[string]interface{}, vars isolation.Vars, r *restrictions) bool {
	allowed := c.Policy.Gateways.AllowedParents
	var kept []interface{}
	parents, _ := spec["parentRefs"].([]interface{})
	for _, p := range parents {
		ref, _ := p.(map[string]interface{})
		group, kind := str(ref, "group", kinds.GatewayGroup), str(ref, "kind", "Gateway")
		ns, name := str(ref, "namespace", ""), str(ref, "name", "")
		switch {
		case group != kinds.GatewayGroup || kind != "Gateway":
			r.add("parentRef %s %s (a route attaches only to Gateways of the host)", kind, name)
		case ns == "":
			r.add("parentRef %s names no namespace (name a Gateway of the host as namespace and name, among isolation.gateways.allowedParents: %s)", name, listOrNone(allowed))
		case !isolation.GatewayAllowed(ns, name, allowed, vars):
			r.add("parentRef %s/%s (not a Gateway this virtual cluster may attach to; isolation.gateways.allowedParents: %s)", ns, name, listOrNone(allowed))
		default:
			kept = append(kept, p)
		}
	}
	if len(kept) == 0 {
		r.add("no parentRef this virtual cluster may attach to: the route is not copied to the host")
		return false
	}
	spec["parentRefs"] = kept
	return true
}

// routeHostnames checks the route's host names against the allowed-host
// patterns of ingresses.
func routeHostnames(c *Context, spec map[string]interface{}, vars isolation.Vars) error {
	patterns := c.Policy.Ingresses.AllowedHosts
	if len(patterns) == 0 {
		return nil
	}
	names, _ := spec["hostnames"].([]interface{})
	if len(names) == 0 {
		return fmt.Errorf("no hostnames: the route would serve every name of its Gateway; give hostnames within isolation.ingresses.allowedHosts: %s", listOrNone(patterns))
	}
	for _, n := range names {
		name, _ := n.(string)
		if !isolation.HostAllowed(name, patterns, vars) {
			return fmt.Errorf("hostname %q is outside isolation.ingresses.allowedHosts: %s", name, listOrNone(patterns))
		}
	}
	return nil
}

// routeBackends names the route's backends as their host copies.
func routeBackends(c *Context, vNamespace string, spec map[string]interface{}) error {
	rules, _ := spec["rules"].([]interface{})
	for i, rule := range rules {
		rm, _ := rule.(map[string]interface{})
		if err := routeFilters(c, vNamespace, rm["filters"], fmt.Sprintf("rules[%d]", i)); err != nil {
			return err
		}
		refs, _ := rm["backendRefs"].([]interface{})
		for j, ref := range refs {
			where := fmt.Sprintf("rules[%d].backendRefs[%d]", i, j)
			bm, _ := ref.(map[string]interface{})
			if err := routeBackend(c, vNamespace, bm, where); err != nil {
				return err
			}
			if err := routeFilters(c, vNamespace, bm["filters"], where); err != nil {
				return err
			}
		}
	}
	return nil
}

func routeFilters(c *Context, vNamespace string, filters interface{}, where string) error {
	list, _ := filters.([]interface{})
	for i, f := range list {
		fm, _ := f.(map[string]interface{})
		switch typ := str(fm, "type", ""); typ {
		case "RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite", "CORS":
		case "RequestMirror", "ExternalAuth":
			// Both send requests to a backend the filter names.
			field := strings.ToLower(typ[:1]) + typ[1:]
			sub, _ := fm[field].(map[string]interface{})
			ref, _ := sub["backendRef"].(map[string]interface{})
			if err := routeBackend(c, vNamespace, ref, fmt.Sprintf("%s.filters[%d].%s.backendRef", where, i, field)); err != nil {
				return err
			}
		case "ExtensionRef":
			return fmt.Errorf("%s.filters[%d]: ExtensionRef names an object of the host's Gateway implementation; it is not copied", where, i)
		default:
			return fmt.Errorf("%s.filters[%d]: filter type %q is not one the syncer knows what it reaches; it is not copied", where, i, typ)
		}
	}
	return nil
}

// routeBackend names backend ref as the host copy of a Service of the
// route's virtual namespace.
func routeBackend(c *Context, vNamespace string, ref map[string]interface{}, where string) error {
	if ref == nil {
		return nil
	}
	group, kind, name := str(ref, "group", ""), str(ref, "kind", "Service"), str(ref, "name", "")
	if group != "" || kind != "Service" {
		return fmt.Errorf("%s: %s %q is not a Service (a route reaches only this virtual cluster's Services)", where, kind, name)
	}
	if ns := str(ref, "namespace", vNamespace); ns != vNamespace {
		return fmt.Errorf("%s: Service %s/%s is in another namespace (a route reaches only Services of its own namespace)", where, ns, name)
	}
	ref["name"] = c.Translator.HostName(vNamespace, name)
	delete(ref, "namespace")
	return nil
}

// str is field key of m as a string, def if unset or empty.
func str(m map[string]interface{}, key, def string) string {
	if s, _ := m[key].(string); s != "" {
		return s
	}
	return def
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return "[" + strings.Join(l, ", ") + "]"
}
