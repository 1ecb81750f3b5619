package isolation

import (
	"net/netip"
	"strings"
	"testing"
)

func TestAnnotationAllowed(t *testing.T) {
	for _, c := range []struct {
		key   string
		lists [][]string
		want  bool
	}{
		{"description", nil, true},
		{"checksum/config", nil, true},
		{"kubectl.kubernetes.io/restartedAt", nil, true},
		{"k8s.v1.cni.cncf.io/networks", nil, false},
		{"cni.projectcalico.org/ipAddrs", nil, false},
		{"sidecar.istio.io/inject", nil, false},
		{"vault.hashicorp.com/agent-inject", nil, false},
		{"service.beta.kubernetes.io/aws-load-balancer-internal", nil, false},
		{"sublet.dev/object-name", nil, false},
		{"cert-manager.io/cluster-issuer", [][]string{DefaultIngressAnnotations}, true},
		{"nginx.ingress.kubernetes.io/server-snippet", [][]string{DefaultIngressAnnotations}, false},
		{"nginx.ingress.kubernetes.io/auth-url", [][]string{DefaultIngressAnnotations}, false},
		{"nginx.ingress.kubernetes.io/server-snippet", [][]string{{"nginx.ingress.kubernetes.io/*"}}, false},
		{"nginx.ingress.kubernetes.io/server-snippet", [][]string{{"nginx.ingress.kubernetes.io/server-snippet"}}, true},
		{"k8s.v1.cni.cncf.io/networks", [][]string{nil, {"k8s.v1.cni.cncf.io/*"}}, true},
	} {
		if got := AnnotationAllowed(c.key, c.lists...); got != c.want {
			t.Errorf("AnnotationAllowed(%q, %v) = %v, want %v", c.key, c.lists, got, c.want)
		}
	}
	kept, dropped := FilterAnnotations(map[string]string{"a": "1", "x.io/b": "2", "y.io/c": "3"}, []string{"y.io/*"})
	if len(kept) != 2 || kept["a"] != "1" || kept["y.io/c"] != "3" || strings.Join(dropped, ",") != "x.io/b" {
		t.Errorf("FilterAnnotations: kept %v, dropped %v", kept, dropped)
	}
}

func TestHostAllowed(t *testing.T) {
	vars := Vars{Name: "t1", Namespace: "team-t"}
	for _, c := range []struct {
		host     string
		patterns []string
		want     bool
	}{
		{"anything.example.com", nil, true},
		{"a.t1.apps.example.com", []string{"*.{name}.apps.example.com"}, true},
		{"a.b.t1.apps.example.com", []string{"*.{name}.apps.example.com"}, true},
		{"*.t1.apps.example.com", []string{"*.{name}.apps.example.com"}, true},
		{"t1.apps.example.com", []string{"*.{name}.apps.example.com"}, false},
		{"a.t2.apps.example.com", []string{"*.{name}.apps.example.com"}, false},
		{"platform.example.com", []string{"*.{name}.apps.example.com"}, false},
		{"A.T1.Apps.Example.com", []string{"*.{name}.apps.example.com"}, true},
		{"team-t.example.com", []string{"{namespace}.example.com"}, true},
		{"evilexample.com", []string{"*.example.com"}, false},
	} {
		if got := HostAllowed(c.host, c.patterns, vars); got != c.want {
			t.Errorf("HostAllowed(%q, %v) = %v, want %v", c.host, c.patterns, got, c.want)
		}
	}
}

func TestTolerationAllowed(t *testing.T) {
	for _, c := range []struct {
		key     string
		allowed []string
		want    bool
	}{
		{"node.kubernetes.io/not-ready", nil, true},
		{"", nil, false},
		{"node-role.kubernetes.io/control-plane", nil, false},
		{"dedicated", []string{"dedicated"}, true},
		{"", []string{"dedicated"}, false},
		{"", []string{"*"}, true},
	} {
		if got := TolerationAllowed(c.key, c.allowed); got != c.want {
			t.Errorf("TolerationAllowed(%q, %v) = %v, want %v", c.key, c.allowed, got, c.want)
		}
	}
}

func TestCIDRs(t *testing.T) {
	c, err := ParseCIDRs([]string{"10.20.0.0/16", "fd00::/8"})
	if err != nil {
		t.Fatal(err)
	}
	in := func(s string) bool { return c.Contain(netip.MustParseAddr(s)) }
	if len(c) != 2 || !in("10.20.3.4") || in("10.21.0.1") || !in("fd00::1") || !in("::ffff:10.20.0.1") {
		t.Errorf("CIDRs %v", c)
	}
}

func TestParseCIDRs(t *testing.T) {
	got, err := ParseCIDRs([]string{"10.0.0.0/8", " 203.0.113.7/24", "fd00::/64", "::ffff:127.0.0.1/128", ""})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "203.0.113.0/24", "fd00::/64", "127.0.0.1/32"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("CIDR %d = %s, want %s", i, got[i], want[i])
		}
	}
	for in, msg := range map[string]string{
		"127.0.0.1":      "write 127.0.0.1/32",
		"10.0.0.0/33":    "is not a CIDR",
		"example.com/24": "is not a CIDR",
		"::ffff:0:0/80":  "mixes IPv4 and IPv6",
	} {
		if _, err := ParseCIDRs([]string{in}); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseCIDRs(%q) = %v, want an error containing %q", in, err, msg)
		}
	}
}

func TestParse(t *testing.T) {
	p, err := Parse(`{"services":{"allowLoadBalancer":true},"pods":{"nodeSelector":{"pool":"tenants"}}}`)
	if err != nil || !p.Services.AllowLoadBalancer || p.Pods.NodeSelector["pool"] != "tenants" {
		t.Fatalf("Parse: %+v %v", p, err)
	}
	if back, err := Parse(p.String()); err != nil || back.String() != p.String() {
		t.Errorf("round trip: %s, %v", back.String(), err)
	}
	if !(Policy{}).IsZero() || p.IsZero() {
		t.Error("IsZero")
	}
	for doc, want := range map[string]string{
		`{"services":{"allowLoadBalancers":true}}`:            "unknown field",
		`{"endpoints":{"allowedCIDRs":["10.0.0.0"]}}`:         "isolation.endpoints.allowedCIDRs[0]",
		`{"ingresses":{"allowedHosts":["a.*.example.com"]}}`:  "only as the first label",
		`{"pods":{"allowedAnnotations":["*"]}}`:               "every annotation",
		`{"pods":{"nodeSelector":{"pool":"not a value!"}}}`:   "not a label value",
		`{"pods":{"allowedTolerations":["bad key!"]}}`:        "not a taint key",
		`{"services":{"loadBalancerClasses":["not valid!"]}}`: "loadBalancerClasses[0]",
	} {
		if _, err := Parse(doc); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%s): %v, want an error containing %q", doc, err, want)
		}
	}
}

func TestLooserThan(t *testing.T) {
	vars := Vars{Name: "t1", Namespace: "team-t"}
	base := Policy{
		Services:  ServicePolicy{AllowLoadBalancer: true, LoadBalancerClasses: []string{"internal"}, AllowedAnnotations: []string{"service.beta.kubernetes.io/*"}},
		Endpoints: EndpointPolicy{AllowedCIDRs: []string{"10.20.0.0/16"}},
		Ingresses: IngressPolicy{AllowedHosts: []string{"*.{name}.apps.example.com"}},
		Pods:      PodPolicy{AllowedTolerations: []string{"dedicated"}, NodeSelector: map[string]string{"pool": "tenants"}},
	}
	same := base
	if ls := same.LooserThan(base, vars); len(ls) != 0 {
		t.Errorf("the same policy is looser: %v", ls)
	}
	tighter := Policy{
		Services:  ServicePolicy{AllowedAnnotations: []string{"service.beta.kubernetes.io/aws-load-balancer-internal"}},
		Endpoints: EndpointPolicy{AllowedCIDRs: []string{"10.20.1.0/24"}},
		Ingresses: IngressPolicy{AllowedHosts: []string{"*.web.t1.apps.example.com", "api.t1.apps.example.com"}},
		Pods:      PodPolicy{NodeSelector: map[string]string{"pool": "tenants", "zone": "a"}},
	}
	if ls := tighter.LooserThan(base, vars); len(ls) != 0 {
		t.Errorf("a tighter policy is looser: %v", ls)
	}
	for name, c := range map[string]struct {
		own, base Policy
		path      string
	}{
		"load balancer":   {Policy{Services: ServicePolicy{AllowLoadBalancer: true}}, Policy{}, "isolation.services.allowLoadBalancer"},
		"node port":       {Policy{Services: ServicePolicy{AllowNodePort: true}}, Policy{}, "isolation.services.allowNodePort"},
		"external name":   {Policy{Services: ServicePolicy{AllowExternalNameInCluster: true}}, Policy{}, "isolation.services.allowExternalNameInCluster"},
		"class":           {Policy{Services: ServicePolicy{LoadBalancerClasses: []string{"public"}}}, base, "isolation.services.loadBalancerClasses"},
		"annotations":     {Policy{Services: ServicePolicy{AllowedAnnotations: []string{"external-dns.alpha.kubernetes.io/*"}}}, base, "isolation.services.allowedAnnotations"},
		"wider pattern":   {Policy{Pods: PodPolicy{AllowedAnnotations: []string{"istio.io/*"}}}, Policy{Pods: PodPolicy{AllowedAnnotations: []string{"istio.io/rev"}}}, "isolation.pods.allowedAnnotations"},
		"wider cidr":      {Policy{Endpoints: EndpointPolicy{AllowedCIDRs: []string{"10.0.0.0/8"}}}, base, "isolation.endpoints.allowedCIDRs"},
		"egress":          {Policy{Egress: EgressPolicy{AllowedCIDRs: []string{"127.0.0.1/32"}}}, Policy{}, "isolation.egress.allowedCIDRs"},
		"any host":        {Policy{}, base, "isolation.ingresses.allowedHosts"},
		"other host":      {Policy{Ingresses: IngressPolicy{AllowedHosts: []string{"platform.example.com"}}}, base, "isolation.ingresses.allowedHosts"},
		"wider host":      {Policy{Ingresses: IngressPolicy{AllowedHosts: []string{"*.apps.example.com"}}}, base, "isolation.ingresses.allowedHosts"},
		"tolerate all":    {Policy{Pods: PodPolicy{AllowedTolerations: []string{"*"}}}, base, "isolation.pods.allowedTolerations"},
		"csi driver":      {Policy{Pods: PodPolicy{AllowedCSIDrivers: []string{"nfs.csi.k8s.io"}}}, base, "isolation.pods.allowedCSIDrivers"},
		"node selector":   {Policy{Pods: PodPolicy{NodeSelector: map[string]string{"pool": "system"}}}, base, "isolation.pods.nodeSelector.pool"},
		"no nodeSelector": {Policy{}, base, "isolation.pods.nodeSelector.pool"},
		"gateway":         {Policy{Gateways: GatewayPolicy{AllowedParents: []string{"shared/public"}}}, Policy{}, "isolation.gateways.allowedParents"},
		"other gateway": {Policy{Gateways: GatewayPolicy{AllowedParents: []string{"shared/internal"}}},
			Policy{Gateways: GatewayPolicy{AllowedParents: []string{"shared/public"}}}, "isolation.gateways.allowedParents"},
	} {
		ls := c.own.LooserThan(c.base, vars)
		found := false
		for _, l := range ls {
			found = found || l.Path == c.path
		}
		if !found {
			t.Errorf("%s: loosenings %v, want one of %s", name, ls, c.path)
		}
	}
	if ls := (Policy{Gateways: GatewayPolicy{AllowedParents: []string{"team-t/own"}}}).LooserThan(Policy{Gateways: GatewayPolicy{AllowedParents: []string{"{namespace}/own", "shared/public"}}}, vars); len(ls) != 0 {
		t.Errorf("a listed gateway is looser: %v", ls)
	}
	if _, err := Parse(`{"gateways":{"allowedParents":["public"]}}`); err == nil || !strings.Contains(err.Error(), "NAMESPACE/NAME") {
		t.Errorf("a gateway without namespace: %v", err)
	}
	if ls := (Policy{Pods: PodPolicy{AllowedTolerations: []string{"anything"}}}).LooserThan(Policy{Pods: PodPolicy{AllowedTolerations: []string{"*"}}}, vars); len(ls) != 0 {
		t.Errorf("a key under \"*\" is looser: %v", ls)
	}
}
