package translate

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

func TestLabelKeyIsValidAndDistinct(t *testing.T) {
	keys := []string{"app", "App", "app.kubernetes.io/name", "app.kubernetes.io.name", "a/b.c", "a.b/c",
		"example.com/very-long-name-that-goes-on-and-on-and-on-for-quite-a-while-yes"}
	seen := map[string]string{}
	for _, k := range keys {
		got := LabelKey(k)
		if errs := validation.IsQualifiedName(got); len(errs) > 0 {
			t.Errorf("LabelKey(%q) = %q: %v", k, got, errs)
		}
		if prev, ok := seen[got]; ok {
			t.Errorf("LabelKey(%q) == LabelKey(%q) == %q", k, prev, got)
		}
		seen[got] = k
	}
}

// TestHostSelectorSelectsOnlyOwnPods is the tenant-isolation property: a
// translated service selector matches the host copies of its own virtual
// pods and nothing else that shares the labels.
func TestHostSelectorSelectsOnlyOwnPods(t *testing.T) {
	a := Translator{VCluster: "a", HostNamespace: "shared"}
	b := Translator{VCluster: "b", HostNamespace: "shared"}
	sel := labels.SelectorFromSet(a.HostSelector("default", map[string]string{"app": "web"}))

	tests := []struct {
		name   string
		labels map[string]string
		want   bool
	}{
		{"own pod", a.HostLabels("default", map[string]string{"app": "web", "tier": "front"}), true},
		{"own pod, other namespace", a.HostLabels("other", map[string]string{"app": "web"}), false},
		{"other cluster's pod", b.HostLabels("default", map[string]string{"app": "web"}), false},
		{"host pod with the same labels", map[string]string{"app": "web"}, false},
		{"own pod, other label value", a.HostLabels("default", map[string]string{"app": "db"}), false},
	}
	for _, tt := range tests {
		if got := sel.Matches(labels.Set(tt.labels)); got != tt.want {
			t.Errorf("%s: match = %v, want %v", tt.name, got, tt.want)
		}
	}
	// A tenant cannot make a host pod match a host service's selector.
	host := labels.SelectorFromSet(map[string]string{"app": "db"})
	if host.Matches(labels.Set(a.HostLabels("default", map[string]string{"app": "db"}))) {
		t.Error("host selector app=db matches a tenant pod")
	}
}

func TestHostLabelSelector(t *testing.T) {
	tr := Translator{VCluster: "a", HostNamespace: "shared"}
	in := &metav1.LabelSelector{
		MatchLabels:      map[string]string{"app": "web"},
		MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"front"}}},
	}
	out, err := metav1.LabelSelectorAsSelector(tr.HostLabelSelector("default", in))
	if err != nil {
		t.Fatal(err)
	}
	if !out.Matches(labels.Set(tr.HostLabels("default", map[string]string{"app": "web", "tier": "front"}))) {
		t.Error("translated selector does not match the translated labels")
	}
	if in.MatchExpressions[0].Key != "tier" {
		t.Error("HostLabelSelector modified its input")
	}
	if tr.HostLabelSelector("default", nil) != nil {
		t.Error("nil selector must stay nil")
	}
}

func TestOwns(t *testing.T) {
	tr := Translator{VCluster: "a", HostNamespace: "shared"}
	named := OwnerAnnotations(&metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "u"})
	own := &metav1.ObjectMeta{Namespace: "shared", Labels: tr.OwnerLabels("default"), Annotations: named}
	if !tr.Owns(own) {
		t.Error("does not own its own object")
	}
	for _, other := range []*metav1.ObjectMeta{
		{Namespace: "shared", Labels: Translator{VCluster: "b"}.OwnerLabels("default"), Annotations: named},
		{Namespace: "elsewhere", Labels: tr.OwnerLabels("default"), Annotations: named},
		{Namespace: "shared"},
		// A host controller's Endpoints with the labels of our service.
		{Namespace: "shared", Labels: tr.OwnerLabels("default")},
	} {
		if tr.Owns(other) {
			t.Errorf("owns %+v", other)
		}
	}
}
