package values

import (
	"strings"
	"testing"

	"github.com/sublet-dev/sublet/internal/syncer/kinds"
)

const certRow = `sync:
  toHost:
    customResources:
      certificates.cert-manager.io:
        enabled: true
        references: [{path: spec.secretName, kind: Secret, returned: true}]
  fromHost:
    customResources:
      clusterissuers.cert-manager.io: {enabled: true}
      issuers.cert-manager.io: {enabled: false}
`

// TestCustomResourcesArg: enabled rows reach the runtime as one
// --custom-resources flag the runtime parses back.
func TestCustomResourcesArg(t *testing.T) {
	e, err := Merge(Layer{Source: "values", YAML: certRow})
	if err != nil {
		t.Fatal(err)
	}
	var flag string
	for _, a := range e.RunArgs() {
		if v, ok := strings.CutPrefix(a, "--custom-resources="); ok {
			flag = v
		}
	}
	rows, err := kinds.ParseCustom(flag)
	if err != nil || len(rows) != 2 || rows[0].CRD != "certificates.cert-manager.io" || rows[0].FromHost || !rows[0].References[0].Returned ||
		rows[1].CRD != "clusterissuers.cert-manager.io" || !rows[1].FromHost {
		t.Errorf("flag %s: rows %+v, %v", flag, rows, err)
	}
}

func TestCustomResourcesErrors(t *testing.T) {
	for doc, want := range map[string]string{
		"sync: {toHost: {customResources: {certificates: {enabled: true}}}}":                                           "not the name of a CustomResourceDefinition",
		"sync: {toHost: {customResources: {a.example.com: {enabled: true, references: [{path: spec.x, kind: pod}]}}}}": `references[0].kind: "pod" is not a kind's name`,
		"sync: {toHost: {customResources: {a.example.com: {enabled: true, references: [{pth: spec.x}]}}}}":             `unknown field "sync.toHost.customResources.a.example.com.references[0].pth"`,
		"sync: {toHost: {customResources: {a.example.com: {enabled: 3}}}}":                                             "enabled: must be true or false",
		"sync: {toHost: {enabled: true}}":                      "sync.toHost takes only customResources",
		"sync: {pods: {customResources: {a.example.com: {}}}}": "custom resources go under sync.toHost or sync.fromHost",
		"sync: {toHost: {customResources: {a.example.com: {enabled: true}}}, fromHost: {customResources: {a.example.com: {enabled: true}}}}": "a kind syncs one way",
		"sync: {fromHost: {customResources: {a.example.com: {enabled: true, references: [{path: spec.x, kind: Secret}]}}}}":                  "only kinds synced to the host take references and fields",
	} {
		if _, err := Merge(Layer{Source: "values", YAML: doc}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", doc, err, want)
		}
	}
}

// TestCustomLooserThan: only the templates add or change a row; a
// VirtualCluster's own values may turn one off.
func TestCustomLooserThan(t *testing.T) {
	base, err := Merge(Layer{Source: "template", YAML: certRow})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		own  string
		want []string
	}{
		{own: ""},
		{own: "sync: {toHost: {customResources: {certificates.cert-manager.io: {enabled: false}}}}"},
		{own: "sync: {toHost: {customResources: {certificates.cert-manager.io: {references: []}}}}",
			want: []string{"sync.toHost.customResources.certificates.cert-manager.io.references"}},
		{own: "sync: {toHost: {customResources: {certificates.cert-manager.io: {fields: [{path: spec.x, values: [a]}]}}}}",
			want: []string{"sync.toHost.customResources.certificates.cert-manager.io.fields"}},
		{own: "sync: {fromHost: {customResources: {issuers.cert-manager.io: {enabled: true}}}}",
			want: []string{"sync.fromHost.customResources.issuers.cert-manager.io.enabled: true is looser than not enabled by the templates"}},
		{own: "sync: {toHost: {customResources: {orders.acme.cert-manager.io: {enabled: true}}}}",
			want: []string{"sync.toHost.customResources.orders.acme.cert-manager.io.enabled"}},
	} {
		eff, err := Merge(Layer{Source: "template", YAML: certRow}, Layer{Source: "own", YAML: tc.own})
		if err != nil {
			t.Fatalf("%s: %v", tc.own, err)
		}
		ls := eff.Values.CustomLooserThan(&base.Values)
		if len(ls) != len(tc.want) {
			t.Errorf("%s: loosenings %v, want %v", tc.own, ls, tc.want)
			continue
		}
		for i, w := range tc.want {
			if !strings.Contains(ls[i].String(), w) {
				t.Errorf("%s: %s, want %q", tc.own, ls[i], w)
			}
		}
	}
}
