package agent

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
)

func testTemplate(name, role, vals string) template {
	t := &storagev1.VirtualClusterTemplate{ObjectMeta: metav1.ObjectMeta{Name: name}}
	t.Spec.Template.HelmRelease.Values = vals
	return template{t, role}
}

// TestEffectiveValues: the reconciler's values are the default template's,
// then the referenced template's, then the object's own, each later layer
// winning; a bad layer's error names it.
func TestEffectiveValues(t *testing.T) {
	def := testTemplate("base", "default template", "virtualCluster:\n  image: rancher/k3s:v1.35.1-k3s1\nsync:\n  ingresses: {enabled: false}\n  nodes: {enabled: false}\n")
	small := testTemplate("small", "template", "sync:\n  nodes: {enabled: true}\n  poddisruptionbudgets: {enabled: true}\n")
	own := &storagev1.VirtualCluster{Spec: storagev1.VirtualClusterSpec{HelmRelease: &storagev1.VirtualClusterHelmRelease{
		Values: "virtualCluster:\n  image: rancher/k3s:v1.36.0-k3s1\n"}}}

	e, err := effectiveValues(own, []template{def, small})
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Join(e.RunArgs(), " ")
	for _, want := range []string{"--kubernetes-version=v1.36", "--sync=nodes,poddisruptionbudgets", "--disable-sync-resources=ingresses"} {
		if !strings.Contains(args, want) {
			t.Errorf("run args %q lack %s", args, want)
		}
	}

	// No values of its own: the templates' alone.
	e, err = effectiveValues(&storagev1.VirtualCluster{}, []template{def})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(e.RunArgs(), " "); !strings.Contains(got, "--kubernetes-version=v1.35") || !strings.Contains(got, "--disable-sync-resources=ingresses,nodes") {
		t.Errorf("default template only: run args %q", got)
	}

	// A template with an unknown kind: the error names the template and the key.
	bad := testTemplate("typo", "template", "sync:\n  gadgets: {enabled: true}\n")
	if _, err := effectiveValues(own, []template{def, bad}); err == nil || !strings.Contains(err.Error(), "gadgets") {
		t.Errorf("unknown kind in a template: %v", err)
	}
	broken := testTemplate("broken", "template", "virtualCluster: [\n")
	if _, err := effectiveValues(own, []template{broken}); err == nil || !strings.Contains(err.Error(), `template "broken"`) {
		t.Errorf("a template that is not YAML: %v, want an error naming it", err)
	}
}
