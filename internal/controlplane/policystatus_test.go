package controlplane

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/cel/openapi/resolver"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/kube-openapi/pkg/validation/spec"
	generatedopenapi "k8s.io/kubernetes/pkg/generated/openapi"
)

type fixedResolver struct{ schema *spec.Schema }

func (f fixedResolver) ResolveSchema(schema.GroupVersionKind) (*spec.Schema, error) {
	return f.schema, nil
}

// The definitions are built on first use, used for the kinds they know
// (the rest go to the secondary resolver), and built again only after
// they went unused for keep.
func TestLazyDefinitionsResolver(t *testing.T) {
	crd := &spec.Schema{SchemaProps: spec.SchemaProps{Description: "from discovery"}}
	r := &lazyDefinitionsResolver{
		build: func() *resolver.DefinitionsSchemaResolver {
			return resolver.NewDefinitionsSchemaResolver(generatedopenapi.GetOpenAPIDefinitions, scheme.Scheme)
		},
		secondary: fixedResolver{crd},
		keep:      200 * time.Millisecond,
	}
	built := func() (int, bool) {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.built, r.defs != nil
	}
	if n, held := built(); n != 0 || held {
		t.Fatalf("before any use: built %d times, held %v; want nothing built", n, held)
	}
	deployment := schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	s, err := r.ResolveSchema(deployment)
	if err != nil || s.Properties["spec"].Properties["replicas"].Type == nil {
		t.Fatalf("Deployment: %v, %v; want its schema with spec.replicas", s, err)
	}
	if s, err := r.ResolveSchema(schema.GroupVersionKind{Group: "example.sublet.dev", Version: "v1", Kind: "Widget"}); err != nil || s != crd {
		t.Fatalf("a CRD kind: %v, %v; want the secondary's schema", s, err)
	}
	if n, _ := built(); n != 1 {
		t.Fatalf("built %d times for two uses, want once", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, held := built(); !held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the definitions are still held 10 s after their last use")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := r.ResolveSchema(deployment); err != nil {
		t.Fatal(err)
	}
	if n, held := built(); n != 2 || !held {
		t.Fatalf("after they were dropped: built %d times, held %v; want built again", n, held)
	}
}
