package translate

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestHostName(t *testing.T) {
	tr := Translator{VCluster: "demo", HostNamespace: "vcluster-demo"}
	long := strings.Repeat("a", 60)
	tests := []struct {
		name, ns, vname string
		want            string // "" means: check only shape
		wantPrefix      string
	}{
		{name: "plain", ns: "default", vname: "web", want: "web-x-default-x-demo"},
		{name: "exactly 63", ns: "default", vname: strings.Repeat("a", 63-len("-x-default-x-demo")), want: strings.Repeat("a", 63-len("-x-default-x-demo")) + "-x-default-x-demo"},
		{name: "too long", ns: "default", vname: long, wantPrefix: strings.Repeat("a", 52) + "-"},
		{name: "dotted configmap name", ns: "default", vname: "kube-root-ca.crt", wantPrefix: "kube-root-ca-crt-x-default-x-demo-"},
		{name: "separator in name", ns: "b", vname: "a-x-c", wantPrefix: "a-x-c-x-b-x-demo-"},
		{name: "uppercase is impossible but safe", ns: "default", vname: "Web", wantPrefix: "web-x-default-x-demo-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tr.HostName(tt.ns, tt.vname)
			if errs := validation.IsDNS1123Label(got); len(errs) > 0 {
				t.Fatalf("HostName(%q, %q) = %q, not a DNS-1123 label: %v", tt.ns, tt.vname, got, errs)
			}
			if tt.want != "" && got != tt.want {
				t.Errorf("HostName(%q, %q) = %q, want %q", tt.ns, tt.vname, got, tt.want)
			}
			if tt.wantPrefix != "" && (!strings.HasPrefix(got, tt.wantPrefix) || len(got) != len(tt.wantPrefix)+hashLength) {
				t.Errorf("HostName(%q, %q) = %q, want %q + %d hex digits", tt.ns, tt.vname, got, tt.wantPrefix, hashLength)
			}
			if again := tr.HostName(tt.ns, tt.vname); again != got {
				t.Errorf("not stable: %q then %q", got, again)
			}
		})
	}
}

func TestHostNameSeparatesClustersAndNamespaces(t *testing.T) {
	a := Translator{VCluster: "a"}
	b := Translator{VCluster: "b"}
	seen := map[string]string{}
	for _, tr := range []Translator{a, b, {VCluster: "x-a"}, {VCluster: "a-x-b"}} {
		for _, ns := range []string{"default", "x", "default-x-a", "x-default", "default-x", "b-x-default"} {
			for _, n := range []string{"web", "web-x-x", "x-web", strings.Repeat("w", 70)} {
				h := tr.HostName(ns, n)
				key := tr.VCluster + "/" + ns + "/" + n
				if prev, ok := seen[h]; ok {
					t.Errorf("%s and %s both map to %q", prev, key, h)
				}
				seen[h] = key
			}
		}
	}
}

func FuzzHostName(f *testing.F) {
	f.Add("default", "web", "demo")
	f.Add("kube-system", "coredns-5d78c9869d-abcde", "team-a")
	f.Add("a-x-b", "c", "d")
	f.Add(strings.Repeat("n", 63), strings.Repeat("p", 253), strings.Repeat("v", 52))
	f.Fuzz(func(t *testing.T, ns, name, vc string) {
		// Realistic inputs: what the API server accepts.
		if len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 || len(validation.IsDNS1123Label(vc)) > 0 {
			return
		}
		tr := Translator{VCluster: vc}
		got := tr.HostName(ns, name)
		if errs := validation.IsDNS1123Label(got); len(errs) > 0 {
			t.Fatalf("HostName(%q, %q) in %q = %q: %v", ns, name, vc, got, errs)
		}
		// Injective: a different name, namespace or cluster gives another result.
		for _, other := range []struct{ ns, name, vc string }{
			{ns, name + "a", vc}, {ns + "a", name, vc}, {ns, name, vc + "a"},
			{ns, name + "-x-" + ns, vc}, {name, ns, vc},
			{ns + "-x", name, strings.TrimPrefix(vc, "x-")}, {ns, name, "x-" + vc},
			{strings.TrimSuffix(ns, "-x"), name, "x-" + vc},
		} {
			if other.ns == ns && other.name == name && other.vc == vc {
				continue
			}
			if len(validation.IsDNS1123Label(other.ns)) > 0 || len(validation.IsDNS1123Subdomain(other.name)) > 0 || len(validation.IsDNS1123Label(other.vc)) > 0 {
				continue
			}
			if o := (Translator{VCluster: other.vc}).HostName(other.ns, other.name); o == got {
				t.Fatalf("%q/%q/%q and %q/%q/%q both map to %q", vc, ns, name, other.vc, other.ns, other.name, got)
			}
		}
	})
}
