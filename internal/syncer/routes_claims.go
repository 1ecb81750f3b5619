package syncer

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"

	"github.com/sublet-dev/sublet/internal/syncer/kinds"
	"github.com/sublet-dev/sublet/internal/translate"
)

// A Gateway shared by several host namespaces merges the rules of every
// route with the same host name: a route of one tenant could take paths
// of another's host name. So, as for ingresses, a host name a route of
// the same kind in another host namespace already claims on the same
// Gateway, itself or by a wildcard covering it, does not reach the host
// with this cluster's route: it is left out (the route is refused if none
// is left). A route without hostnames claims every name of its Gateway
// (host name ""). The older claim wins; one the host admin made always
// does.

// indexRouteClaims indexes routes by the "GATEWAY-NS/GATEWAY|hostname"
// they claim.
const indexRouteClaims = "sublet-route-claims"

// routeClaimKeys are the claims of route obj: each Gateway parent (its
// namespace defaulting to the route's) with each host name, lower case.
func routeClaimKeys(obj interface{}) ([]string, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, nil
	}
	spec, _ := u.Object["spec"].(map[string]interface{})
	hosts := []string{""}
	if names, _ := spec["hostnames"].([]interface{}); len(names) > 0 {
		hosts = hosts[:0]
		for _, n := range names {
			s, _ := n.(string)
			hosts = append(hosts, strings.ToLower(s))
		}
	}
	var keys []string
	parents, _ := spec["parentRefs"].([]interface{})
	for _, p := range parents {
		ref, _ := p.(map[string]interface{})
		if str(ref, "group", kinds.GatewayGroup) != kinds.GatewayGroup || str(ref, "kind", "Gateway") != "Gateway" {
			continue
		}
		gw := str(ref, "namespace", u.GetNamespace()) + "/" + str(ref, "name", "")
		for _, h := range hosts {
			keys = append(keys, gw+"|"+h)
		}
	}
	return keys, nil
}

// routeClaims knows the host names every host route of one kind claims.
type routeClaims struct {
	all cache.SharedIndexInformer // set by also, before the informers start
}

// also indexes the kind's host routes of every namespace and its virtual
// routes by claim, and returns the trigger that syncs the virtual routes
// of a claim again when a host route claiming it changes.
func (rc *routeClaims) also(sides dynamicSides) ([]Runnable, []trigger) {
	rc.all = sides.hostAll()
	for _, inf := range []cache.SharedIndexInformer{rc.all, sides.virtual} {
		_ = inf.AddIndexers(cache.Indexers{indexRouteClaims: routeClaimKeys})
	}
	virtual := sides.virtual.GetIndexer()
	return nil, []trigger{{informer: rc.all, keys: func(obj interface{}) []string {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		claims, _ := routeClaimKeys(obj)
		var keys []string
		for _, cl := range claims {
			k, _ := virtual.IndexKeys(indexRouteClaims, cl)
			keys = append(keys, k...)
		}
		return keys
	}}}
}

// restrict is restrictRoute, then leaves out the host names other host
// namespaces' routes claim on the same Gateway.
func (rc *routeClaims) restrict(c *Context, v, h *unstructured.Unstructured) (restrictions, bool, error) {
	r, ok, err := restrictRoute(c, v, h)
	if !ok || err != nil {
		return r, ok, err
	}
	if !rc.all.HasSynced() {
		return nil, false, fmt.Errorf("waiting for the host's routes of every namespace (the syncer needs to list and watch them cluster-wide)")
	}
	var ours metav1.Object
	if obj, found, _ := rc.all.GetIndexer().GetByKey(h.GetNamespace() + "/" + h.GetName()); found {
		ours, _ = obj.(metav1.Object)
	}
	spec := h.Object["spec"].(map[string]interface{})
	claims, _ := routeClaimKeys(h)
	claimed := func(host string) bool {
		for _, cl := range claims {
			gw, name, _ := strings.Cut(cl, "|")
			if name != host {
				continue
			}
			for _, n := range append([]string{host}, coveringWildcards(host)...) {
				others, _ := rc.all.GetIndexer().ByIndex(indexRouteClaims, gw+"|"+n)
				if claimedBy(ours, h.GetNamespace(), others) != nil {
					return true
				}
			}
		}
		return false
	}
	names, _ := spec["hostnames"].([]interface{})
	if len(names) == 0 {
		if claimed("") {
			r.add("no hostnames: the route would serve every name of its Gateway, and a route of another host namespace does already; give it hostnames")
			return r, false, nil
		}
		return r, true, nil
	}
	var kept []interface{}
	var taken []string
	for _, n := range names {
		name, _ := n.(string)
		if claimed(strings.ToLower(name)) {
			taken = append(taken, fmt.Sprintf("%q", name))
		} else {
			kept = append(kept, n)
		}
	}
	if len(taken) > 0 {
		r.add("hostnames %s (served on the same Gateway for another host namespace); choose another host name", strings.Join(taken, ", "))
	}
	if len(kept) == 0 {
		return r, false, nil // never a route without hostnames: it would serve every name
	}
	spec["hostnames"] = kept
	return r, true, nil
}

// coveringWildcards are the wildcard host names that cover host name h
// (in Gateway API a wildcard covers names of any depth below it): for
// a.b.c and *.b.c, *.c. A route with a more specific name takes those
// names from a route with the wildcard, so the wildcard's claim holds
// them too.
func coveringWildcards(h string) []string {
	var out []string
	rest := strings.TrimPrefix(h, "*.")
	if rest == h && h != "" {
		_, rest, _ = strings.Cut(h, ".")
		if rest != "" {
			out = append(out, "*."+rest)
		}
	}
	for {
		_, next, ok := strings.Cut(rest, ".")
		if !ok || next == "" {
			return out
		}
		out = append(out, "*."+next)
		rest = next
	}
}

// claimedBy is the object among others (all claiming what ours, a host
// copy in hostNS, claims or would claim) that keeps the claim from being
// ours, or nil: another object wins if Sublet did not make it (a host
// admin's), or if it is older than our copy (or we have none yet); ties
// go by namespace and name. Objects of hostNS are the team's own.
func claimedBy(ours metav1.Object, hostNS string, others []interface{}) metav1.Object {
	var winner metav1.Object
	for _, obj := range others {
		other, ok := obj.(metav1.Object)
		if !ok || other.GetNamespace() == hostNS || other.GetDeletionTimestamp() != nil {
			continue
		}
		if ours != nil && other.GetLabels()[translate.LabelCopyOf] != "" && older(ours, other) {
			continue
		}
		if winner == nil || older(other, winner) {
			winner = other
		}
	}
	return winner
}
