package kinds

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseCustom(t *testing.T) {
	rows := []Custom{
		{CRD: "certificates.cert-manager.io", References: []Reference{{Path: "spec.secretName", Kind: "Secret", Returned: true}}},
		{CRD: "clusterissuers.cert-manager.io", FromHost: true},
	}
	got, err := ParseCustom(FormatCustom(rows))
	if err != nil || fmt.Sprint(got) != fmt.Sprint(rows) {
		t.Fatalf("round trip: %v, %v", got, err)
	}
	for flag, want := range map[string]string{
		`[{"crd":"certificates"}]`:                         "not the name of a CustomResourceDefinition",
		`[{"crd":"deployments.apps"}]`:                     "Kubernetes' own",
		`[{"crd":"httproutes.gateway.networking.k8s.io"}]`: "already a built-in kind (sync.httproutes)",
		`[{"crd":"a.example.com","fromHost":true,"references":[{"path":"spec.x","kind":"Secret"}]}]`:    "only kinds synced to the host take references",
		`[{"crd":"a.example.com","references":[{"path":"spec.x","kind":"secret"}]}]`:                    `"secret" is not a kind's name`,
		`[{"crd":"a.example.com","fields":[{"path":"spec.x"}]}]`:                                        "give the values the field may hold",
		`[{"crd":"a.example.com","fields":[{"path":"x","values":["a"]}]}]`:                              "must start at spec",
		`[{"crd":"a.example.com","fromHost":true,"fields":[{"path":"spec.x","values":["a"]}]}]`:         "only kinds synced to the host take references and fields",
		`[{"crd":"a.example.com","references":[{"path":"spec.x","kind":"ConfigMap","returned":true}]}]`: "only Secrets are returned",
		`[{"crd":"a.example.com","references":[{"path":"metadata.name","kind":"Secret"}]}]`:             "must start at spec",
		`[{"crd":"a.example.com","references":[{"path":"spec.x[]","kind":"Secret"}]}]`:                  "must end at a name field",
		`[{"crd":"a.example.com","references":[{"path":"spec..x","kind":"Secret"}]}]`:                   "is not a field name",
		`[{"crd":"a.example.com"},{"crd":"a.example.com","fromHost":true}]`:                             "given twice",
		`[{"crd":"a.example.com","x":1}]`:                                                               "unknown field",
	} {
		if _, err := ParseCustom(flag); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", flag, err, want)
		}
	}
}

func TestCustomRules(t *testing.T) {
	rows := []Custom{{CRD: "certificates.cert-manager.io"}, {CRD: "issuers.cert-manager.io"}, {CRD: "clusterissuers.cert-manager.io", FromHost: true}}
	if got := fmt.Sprint(CustomHostRules(rows)); !strings.Contains(got, "[cert-manager.io] [certificates issuers]") || strings.Contains(got, "clusterissuers") {
		t.Errorf("namespaced rules %s", got)
	}
	got := fmt.Sprint(CustomClusterRules(rows))
	if !strings.Contains(got, "{[get list watch] [apiextensions.k8s.io] [customresourcedefinitions] [certificates.cert-manager.io clusterissuers.cert-manager.io issuers.cert-manager.io] []}") ||
		!strings.Contains(got, "{[get list watch] [cert-manager.io] [clusterissuers] [] []}") || strings.Contains(got, "create") {
		t.Errorf("cluster rules %s", got)
	}
	if CustomClusterRules(nil) != nil {
		t.Error("rules without rows")
	}
}
