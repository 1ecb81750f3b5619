package syncer

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/sublet-dev/sublet/internal/syncer/kinds"
	"github.com/sublet-dev/sublet/internal/translate"
)

func TestRestrictReferences(t *testing.T) {
	c := &Context{Translator: translate.Translator{VCluster: "vc", HostNamespace: "team"}}
	row := kinds.Custom{CRD: "certificates.cert-manager.io", References: []kinds.Reference{
		{Path: "spec.secretName", Kind: "Secret", Returned: true},
		{Path: "spec.keystores[].passwordSecretRef.name", Kind: "Secret", Optional: true},
		{Path: "spec.config.name", Kind: "ConfigMap", Optional: true},
		{Path: "spec.issuerRef.name", Kind: "Issuer", Optional: true},
	}, Fields: []kinds.FieldRule{{Path: "spec.issuerRef.kind", Values: []string{"", "Issuer"}}}}
	for _, tc := range []struct {
		name, spec string
		copied     bool
		want       []string // substrings of the host spec, or of the restrictions
	}{
		{name: "all translated", copied: true,
			spec: "secretName: tls\nkeystores: [{passwordSecretRef: {name: a}}, {passwordSecretRef: {name: b}}, {other: 1}]\nconfig: {name: cm}\n",
			want: []string{"secretName: tls-x-default-x-vc", "name: a-x-default-x-vc", "name: b-x-default-x-vc", "name: cm-x-default-x-vc", "other: 1"}},
		{name: "optional ones missing", copied: true, spec: "secretName: tls\n", want: []string{"secretName: tls-x-default-x-vc"}},
		{name: "returned and the tenant's", spec: "secretName: tls\nkeystores: [{passwordSecretRef: {name: tls}}]\n",
			want: []string{"default/tls is named both as a Secret the host returns and as one of the tenant's"}},
		{name: "another row's kind", copied: true, spec: "secretName: tls\nissuerRef: {kind: Issuer, name: ca}\n", want: []string{"name: ca-x-default-x-vc"}},
		{name: "pinned field", spec: "secretName: tls\nissuerRef: {kind: ClusterIssuer, name: ca}\n",
			want: []string{`spec.issuerRef.kind is "ClusterIssuer", and sync.toHost.customResources.certificates.cert-manager.io.fields[0] allows only "", "Issuer"`}},
		{name: "empty list", copied: true, spec: "secretName: tls\nkeystores: []\n"},
		{name: "required missing", spec: "dnsNames: [a]\n",
			want: []string{"spec.secretName does not resolve", "sync.toHost.customResources.certificates.cert-manager.io.references[0] names the Secret"}},
		{name: "not a name", spec: "secretName: {name: x}\n", want: []string{"secretName is a map[string]interface {}, not a name"}},
		{name: "not a list", spec: "secretName: x\nkeystores: {passwordSecretRef: {name: a}}\n", want: []string{"keystores is a map[string]interface {}, not a list"}},
		{name: "not an object", spec: "secretName: x\nconfig: cm\n", want: []string{"config is a string, not an object"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := &unstructured.Unstructured{Object: map[string]interface{}{}}
			var spec map[string]interface{}
			if err := yaml.Unmarshal([]byte(tc.spec), &spec); err != nil {
				t.Fatal(err)
			}
			v.Object["spec"] = spec
			v.SetNamespace("default")
			h := v.DeepCopy()
			r, copied, err := restrictReferences(c, row, v, h)
			if err != nil || copied != tc.copied {
				t.Fatalf("copied %v (%v), want %v; %v", copied, err, tc.copied, r)
			}
			out, _ := yaml.Marshal(h.Object["spec"])
			got := string(out) + strings.Join(r, "; ")
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("want %q in:\n%s", w, got)
				}
			}
			if tc.copied && strings.Contains(string(out), ": tls\n") {
				t.Errorf("an untranslated name reached the host copy:\n%s", out)
			}
			// The virtual object is left as it was.
			if s, _, _ := unstructured.NestedFieldNoCopy(v.Object, "spec", "secretName"); s == "tls-x-default-x-vc" {
				t.Error("the virtual object was changed")
			}
		})
	}
}

func TestCustomRefs(t *testing.T) {
	row := kinds.Custom{CRD: "certificates.cert-manager.io", References: []kinds.Reference{
		{Path: "spec.secretName", Kind: "Secret", Returned: true},
		{Path: "spec.passwordSecretRef.name", Kind: "Secret"},
	}}
	obj := func(pw string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]interface{}{"spec": map[string]interface{}{
			"secretName": "tls", "passwordSecretRef": map[string]interface{}{"name": pw}}}}
		u.SetNamespace("ns")
		u.SetName("web")
		return u
	}
	if got := strings.Join(refsOf(row, obj("pw"), false), ","); got != "Secret/ns/pw" {
		t.Errorf("tenant's refs %s", got)
	}
	if got := strings.Join(refsOf(row, obj("pw"), true), ","); got != "Secret/ns/tls" {
		t.Errorf("returned refs %s", got)
	}

	r := newCustomRefs()
	done := r.expect()
	var mu sync.Mutex
	var told []string
	r.subscribe("Secret", func(key string) { mu.Lock(); told = append(told, key); mu.Unlock() })
	r.seal(context.Background())
	if _, known := r.used("Secret", "ns/pw"); known {
		t.Error("used known before every custom kind told its objects")
	}
	r.set("web", refsOf(row, obj("pw"), false))
	done()
	done() // once only
	<-r.ready
	if used, known := r.used("Secret", "ns/pw"); !used || !known {
		t.Errorf("ns/pw used %v, known %v", used, known)
	}
	r.set("web", refsOf(row, obj("pw2"), false))
	if used, _ := r.used("Secret", "ns/pw"); used {
		t.Error("ns/pw still used after the object stopped naming it")
	}
	r.set("web", nil)
	if used, _ := r.used("Secret", "ns/pw2"); used {
		t.Error("ns/pw2 used after its user went")
	}
	// Once ready, every Secret is synced again ("").
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		sorted := slices.Sorted(slices.Values(told))
		mu.Unlock()
		got := strings.Join(sorted, ",")
		if got == ",ns/pw,ns/pw,ns/pw2,ns/pw2" || time.Now().After(deadline) {
			if got != ",ns/pw,ns/pw,ns/pw2,ns/pw2" {
				t.Errorf("told the secrets syncer %s", got)
			}
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
}
