package syncer

import (
	"fmt"
	"sort"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/sublet-dev/sublet/internal/isolation"
)

// A host's ingress controller is shared: a host name one ingress claims is
// served for everyone who sends a request to it, bearer tokens included.
// So a virtual ingress reaches the host only with host names the admin
// allows (isolation.ingresses.allowedHosts, any by default) that no
// ingress of another host namespace serves already, and only with annotations that
// cannot make the controller run or call what the tenant names
// (isolation.DefaultIngressAnnotations, extended by
// isolation.ingresses.allowedAnnotations). A rule without a host, and a
// default backend, claim every host name the controller serves nothing
// else for: they count as host "".

// indexIngressHosts indexes ingresses by the host names they claim.
const indexIngressHosts = "sublet-ingress-hosts"

// ingressHosts are the host names an ingress claims, lower case.
func ingressHosts(obj interface{}) ([]string, error) {
	ing, ok := obj.(*networkingv1.Ingress)
	if !ok {
		return nil, nil
	}
	seen := map[string]bool{}
	if ing.Spec.DefaultBackend != nil {
		seen[""] = true
	}
	for _, r := range ing.Spec.Rules {
		seen[strings.ToLower(r.Host)] = true
	}
	var out []string
	for h := range seen {
		out = append(out, h)
	}
	sort.Strings(out)
	return out, nil
}

// hostClaims finds which host names other ingresses of the host cluster
// serve.
type hostClaims struct {
	all cache.SharedIndexInformer
}

// newHostClaims indexes the cluster-wide host ingress informer by host
// name, and returns the trigger that re-syncs the virtual ingresses naming
// a host name when a host ingress claiming it changes.
func newHostClaims(f factories) (hostClaims, trigger) {
	all := f.hostAll.Networking().V1().Ingresses().Informer()
	for _, inf := range []cache.SharedIndexInformer{all, ingressInformer(f.virtual)} {
		if _, ok := inf.GetIndexer().GetIndexers()[indexIngressHosts]; !ok {
			_ = inf.AddIndexers(cache.Indexers{indexIngressHosts: ingressHosts})
		}
	}
	virtual := ingressInformer(f.virtual).GetIndexer()
	return hostClaims{all: all}, trigger{informer: all, keys: func(obj interface{}) []string {
		hosts, _ := ingressHosts(obj)
		var keys []string
		for _, h := range hosts {
			k, _ := virtual.IndexKeys(indexIngressHosts, h)
			keys = append(keys, k...)
		}
		return keys
	}}
}

// claimant is the ingress of another host namespace that keeps host name
// host from being ours (the host copy hostNS/hostName), or nil: another
// ingress claiming it wins if Sublet did not make it (a host admin's), or
// if it is older than our copy (or we have none yet); ties go by namespace
// and name.
func (hc hostClaims) claimant(c *Context, host, hostNS, hostName string) metav1.Object {
	var ours metav1.Object
	if obj, ok, _ := hc.all.GetIndexer().GetByKey(hostNS + "/" + hostName); ok {
		ours, _ = obj.(metav1.Object)
	}
	objs, _ := hc.all.GetIndexer().ByIndex(indexIngressHosts, host)
	return claimedBy(ours, hostNS, objs)
}

// older orders objects by creation, then namespace and name.
func older(a, b metav1.Object) bool {
	ta, tb := a.GetCreationTimestamp(), b.GetCreationTimestamp()
	if !ta.Equal(&tb) {
		return ta.Before(&tb)
	}
	return a.GetNamespace()+"/"+a.GetName() < b.GetNamespace()+"/"+b.GetName()
}

// restrict applies the ingress policy to host copy h of v.
func (hc hostClaims) restrict(c *Context, v, h *networkingv1.Ingress) (restrictions, bool, error) {
	if !hc.all.HasSynced() {
		return nil, false, fmt.Errorf("waiting for the host's ingresses of every namespace (the syncer needs to list and watch ingresses cluster-wide)")
	}
	var r restrictions
	meta, dropped := hostMetaAllowing(c.Translator, v, isolation.DefaultIngressAnnotations, c.Policy.Ingresses.AllowedAnnotations)
	h.Annotations = meta.Annotations
	r.annotations(dropped, "isolation.ingresses.allowedAnnotations")

	vars := isolation.Vars{Name: c.Translator.VCluster, Namespace: c.Translator.HostNamespace}
	allowed := map[string]bool{}
	var notAllowed, claimed []string
	check := func(host string) bool {
		host = strings.ToLower(host)
		if ok, seen := allowed[host]; seen {
			return ok
		}
		ok := true
		switch {
		case len(c.Policy.Ingresses.AllowedHosts) > 0 && (host == "" || !isolation.HostAllowed(host, c.Policy.Ingresses.AllowedHosts, vars)):
			notAllowed = append(notAllowed, describeHost(host))
			ok = false
		default:
			if hc.claimant(c, host, h.Namespace, h.Name) != nil {
				claimed = append(claimed, fmt.Sprintf("%s (served for another host namespace)", describeHost(host)))
				ok = false
			}
		}
		allowed[host] = ok
		return ok
	}
	if h.Spec.DefaultBackend != nil && !check("") {
		h.Spec.DefaultBackend = nil
	}
	var rules []networkingv1.IngressRule
	for _, rule := range h.Spec.Rules {
		if check(rule.Host) {
			rules = append(rules, rule)
		}
	}
	h.Spec.Rules = rules
	var tls []networkingv1.IngressTLS
	for _, t := range h.Spec.TLS {
		if len(t.Hosts) == 0 {
			tls = append(tls, t)
			continue
		}
		var hosts []string
		for _, host := range t.Hosts {
			if check(host) {
				hosts = append(hosts, host)
			}
		}
		if len(hosts) > 0 {
			t.Hosts = hosts
			tls = append(tls, t)
		}
	}
	h.Spec.TLS = tls
	if len(notAllowed) > 0 {
		r.add("host names %s (not among the host names an admin allows this cluster: %s, isolation.ingresses.allowedHosts)",
			strings.Join(notAllowed, ", "), strings.Join(c.Policy.Ingresses.AllowedHosts, ", "))
	}
	if len(claimed) > 0 {
		r.add("host names %s; choose another host name", strings.Join(claimed, ", "))
	}
	return r, len(h.Spec.Rules) > 0 || h.Spec.DefaultBackend != nil, nil
}

func describeHost(h string) string {
	if h == "" {
		return `"" (a rule without host or a default backend: every host name)`
	}
	return fmt.Sprintf("%q", h)
}
