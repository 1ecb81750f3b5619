package syncer

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/sublet-dev/sublet/internal/isolation"
	"github.com/sublet-dev/sublet/internal/translate"
)

// TestRestrictRoute: a route's host copy attaches only to allowed
// Gateways, serves only allowed host names, and reaches only Services of
// its own namespace under their host names; anything else is left out or
// refuses the route, with what to change.
func TestRestrictRoute(t *testing.T) {
	c := &Context{Translator: translate.Translator{VCluster: "vc", HostNamespace: "team"}, Policy: isolation.Policy{
		Gateways:  isolation.GatewayPolicy{AllowedParents: []string{"shared/public", "{namespace}/own"}},
		Ingresses: isolation.IngressPolicy{AllowedHosts: []string{"*.{name}.example.com"}},
	}}
	const ok = `
parentRefs: [{name: public, namespace: shared, sectionName: https}]
hostnames: [shop.vc.example.com]
rules:
- filters: [{type: RequestMirror, requestMirror: {backendRef: {name: shadow, port: 80}}}]
  backendRefs:
  - {name: web, port: 80, filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x, value: y}]}}]}
  - {name: api, namespace: default, kind: Service, port: 8080}
`
	for _, tc := range []struct {
		name, spec string
		copied     bool
		// want: substrings of the restrictions; spec: of the host spec.
		want, spec2 []string
	}{
		{name: "allowed", spec: ok, copied: true,
			spec2: []string{"name: web-x-default-x-vc", "name: api-x-default-x-vc", "name: shadow-x-default-x-vc", "namespace: shared", "sectionName: https"}},
		{name: "own namespace's gateway by variable", spec: strings.Replace(ok, "name: public, namespace: shared", "name: own, namespace: team", 1), copied: true},
		{name: "unlisted gateway", spec: strings.Replace(ok, "namespace: shared", "namespace: other", 1),
			want: []string{"parentRef other/public", "isolation.gateways.allowedParents: [shared/public, {namespace}/own]", "not copied"}},
		{name: "one of two parents unlisted", spec: strings.Replace(ok, "parentRefs: [", "parentRefs: [{name: x, namespace: other}, ", 1), copied: true,
			want: []string{"parentRef other/x"}},
		{name: "parent without namespace", spec: strings.Replace(ok, ", namespace: shared", "", 1), want: []string{"names no namespace"}},
		{name: "parent not a gateway", spec: strings.Replace(ok, "{name: public,", "{kind: Service, group: \"\", name: public,", 1), want: []string{"parentRef Service public"}},
		{name: "default gateways", spec: ok + "useDefaultGateways: All\n", copied: true, want: []string{"useDefaultGateways All"}},
		{name: "host outside", spec: strings.Replace(ok, "shop.vc.example.com", "shop.other.example.com", 1), want: []string{`hostname "shop.other.example.com"`}},
		{name: "no hostnames", spec: strings.Replace(ok, "hostnames: [shop.vc.example.com]\n", "", 1), want: []string{"no hostnames"}},
		{name: "backend in another namespace", spec: strings.Replace(ok, "namespace: default, kind", "namespace: kube-system, kind", 1),
			want: []string{"rules[0].backendRefs[1]: Service kube-system/api is in another namespace"}},
		{name: "backend not a service", spec: strings.Replace(ok, "kind: Service", "kind: Secret", 1), want: []string{"Secret \"api\" is not a Service"}},
		{name: "mirror elsewhere", spec: strings.Replace(ok, "backendRef: {name: shadow,", "backendRef: {name: shadow, namespace: prod,", 1),
			want: []string{"requestMirror.backendRef: Service prod/shadow"}},
		{name: "external auth elsewhere", spec: strings.Replace(ok, "type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x, value: y}]}", "type: ExternalAuth, externalAuth: {protocol: HTTP, backendRef: {name: auth, namespace: other}}", 1),
			want: []string{"externalAuth.backendRef: Service other/auth is in another namespace"}},
		{name: "external auth here", spec: strings.Replace(ok, "type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x, value: y}]}", "type: ExternalAuth, externalAuth: {protocol: HTTP, backendRef: {name: auth, port: 9000}}", 1),
			copied: true, spec2: []string{"name: auth-x-default-x-vc"}},
		{name: "unknown filter", spec: strings.Replace(ok, "type: RequestHeaderModifier", "type: Telepathy", 1), want: []string{`filter type "Telepathy"`}},
		{name: "extension filter", spec: strings.Replace(ok, "type: RequestHeaderModifier", "type: ExtensionRef, extensionRef: {group: x.io, kind: Plugin, name: p}", 1),
			want: []string{"rules[0].backendRefs[0].filters[0]: ExtensionRef"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var spec map[string]interface{}
			if err := yaml.Unmarshal([]byte(tc.spec), &spec); err != nil {
				t.Fatal(err)
			}
			v := &unstructured.Unstructured{Object: map[string]interface{}{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "spec": spec}}
			v.SetNamespace("default")
			v.SetName("shop")
			h := v.DeepCopy()
			r, copied, err := restrictRoute(c, v, h)
			if err != nil || copied != tc.copied {
				t.Fatalf("copied %v (%v), want %v; restrictions %q", copied, err, tc.copied, r)
			}
			got := strings.Join(r, "\n")
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("restrictions %q lack %q", got, w)
				}
			}
			if len(tc.want) == 0 && len(r) > 0 {
				t.Errorf("restrictions %q, want none", got)
			}
			out, _ := yaml.Marshal(h.Object["spec"])
			for _, w := range tc.spec2 {
				if !strings.Contains(string(out), w) {
					t.Errorf("host spec lacks %q:\n%s", w, out)
				}
			}
			if copied && (strings.Contains(string(out), "useDefaultGateways") || strings.Contains(string(out), "namespace: default") || strings.Contains(string(out), "namespace: other")) {
				t.Errorf("host spec keeps what it may not:\n%s", out)
			}
		})
	}
}

func TestRouteClaimKeys(t *testing.T) {
	route := func(ns, spec string) *unstructured.Unstructured {
		var m map[string]interface{}
		if err := yaml.Unmarshal([]byte(spec), &m); err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{Object: map[string]interface{}{"spec": m}}
		u.SetNamespace(ns)
		return u
	}
	for spec, want := range map[string]string{
		"parentRefs: [{name: public, namespace: shared}, {name: own}]\nhostnames: [A.example.com, b.example.com]": "shared/public|a.example.com,shared/public|b.example.com,team/own|a.example.com,team/own|b.example.com",
		"parentRefs: [{name: public, namespace: shared}]":                                                         "shared/public|",
		"parentRefs: [{name: svc, kind: Service, group: \"\"}]\nhostnames: [a.example.com]":                       "",
	} {
		keys, _ := routeClaimKeys(route("team", spec))
		if got := strings.Join(keys, ","); got != want {
			t.Errorf("%s: claims %s, want %s", spec, got, want)
		}
	}
}

func TestClaimedBy(t *testing.T) {
	at := func(ns, name string, sec int64, copyOf string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]interface{}{}}
		u.SetNamespace(ns)
		u.SetName(name)
		u.SetCreationTimestamp(metav1.Unix(sec, 0))
		if copyOf != "" {
			u.SetLabels(map[string]string{translate.LabelCopyOf: copyOf})
		}
		return u
	}
	ours := at("team", "r", 100, "vc")
	for _, tc := range []struct {
		name   string
		ours   metav1.Object
		others []interface{}
		want   string
	}{
		{name: "own namespace's", ours: ours, others: []interface{}{at("team", "x", 1, "")}},
		{name: "host admin's, newer", ours: ours, others: []interface{}{at("admin", "x", 200, "")}, want: "admin/x"},
		{name: "another cluster's copy, newer", ours: ours, others: []interface{}{at("b", "x", 200, "vc2")}},
		{name: "another cluster's copy, older", ours: ours, others: []interface{}{at("b", "x", 50, "vc2")}, want: "b/x"},
		{name: "no copy of ours yet", others: []interface{}{at("b", "x", 200, "vc2")}, want: "b/x"},
		{name: "oldest wins", others: []interface{}{at("b", "x", 200, "vc2"), at("c", "y", 150, "vc3")}, want: "c/y"},
	} {
		got := claimedBy(tc.ours, "team", tc.others)
		if name := ""; got != nil {
			name = got.GetNamespace() + "/" + got.GetName()
			if name != tc.want {
				t.Errorf("%s: claimed by %s, want %q", tc.name, name, tc.want)
			}
		} else if tc.want != "" {
			t.Errorf("%s: not claimed, want %s", tc.name, tc.want)
		}
	}
}

func TestCoveringWildcards(t *testing.T) {
	for h, want := range map[string]string{
		"a.b.example.com": "*.b.example.com,*.example.com,*.com",
		"*.b.example.com": "*.example.com,*.com",
		"example.com":     "*.com",
		"":                "",
		"localhost":       "",
	} {
		if got := strings.Join(coveringWildcards(h), ","); got != want {
			t.Errorf("%q: %s, want %s", h, got, want)
		}
	}
}
