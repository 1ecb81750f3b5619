package controlplane

import (
	"errors"
	"reflect"
	"testing"

	"k8s.io/kube-openapi/pkg/spec3"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

func TestServedOnce(t *testing.T) {
	builds, fail := 0, true
	o := &servedOnce[spec3.OpenAPI]{build: func() (*spec3.OpenAPI, error) {
		builds++
		if fail {
			return nil, errors.New("no routes")
		}
		return &spec3.OpenAPI{Version: "3.0.0", Components: &spec3.Components{Schemas: map[string]*spec.Schema{"a": {}}}}, nil
	}}

	if doc, etag, err := o.Get(); err == nil || doc != nil || etag != "" {
		t.Fatalf("failed build: got %v, %q, %v; want no document, no etag, the error", doc, etag, err)
	}
	fail = false
	doc, etag, err := o.Get()
	if err != nil || doc == nil || doc.Components == nil || etag == "" {
		t.Fatalf("after a failed build: got %v, %q, %v; want the document, built again", doc, etag, err)
	}
	// Later Gets keep the etag (the serialised bytes stay valid), hand out
	// no document and empty the one handed out, which a cache holds on to.
	for i := 0; i < 2; i++ {
		again, etag2, err := o.Get()
		if err != nil || again != nil || etag2 != etag {
			t.Fatalf("Get %d after the build: got %v, %q, %v; want no document, etag %q", i+2, again, etag2, err, etag)
		}
	}
	if !reflect.DeepEqual(*doc, spec3.OpenAPI{}) {
		t.Errorf("the handed-out document still holds %+v", *doc)
	}
	if builds != 2 {
		t.Errorf("%d builds, want 2 (one failed, one served)", builds)
	}
}

func TestKeepOwnGroupVersionKinds(t *testing.T) {
	gvk := func(g, v, k string) interface{} {
		return map[string]interface{}{"group": g, "version": v, "kind": k}
	}
	schema := func(gvks ...interface{}) *spec.Schema {
		s := &spec.Schema{}
		s.Extensions = spec.Extensions{"x-kubernetes-group-version-kind": gvks}
		return s
	}
	doc := &spec3.OpenAPI{Components: &spec3.Components{Schemas: map[string]*spec.Schema{
		"delete": schema(gvk("", "v1", "DeleteOptions"), gvk("apps", "v1", "DeleteOptions"), gvk("batch", "v1", "DeleteOptions")),
		"watch":  schema(gvk("apps", "v1beta1", "WatchEvent"), gvk("batch", "v1", "WatchEvent")),
		"deploy": schema(gvk("apps", "v1", "Deployment"), gvk("apps", "v1beta1", "Deployment")),
	}}}
	keepOwnGroupVersionKinds(doc, "apis/apps/v1")

	got := func(name string) interface{} {
		return doc.Components.Schemas[name].Extensions["x-kubernetes-group-version-kind"]
	}
	if want := []interface{}{gvk("", "v1", "DeleteOptions"), gvk("apps", "v1", "DeleteOptions")}; !reflect.DeepEqual(got("delete"), want) {
		t.Errorf("DeleteOptions: %v, want %v", got("delete"), want)
	}
	if _, ok := doc.Components.Schemas["watch"].Extensions["x-kubernetes-group-version-kind"]; ok {
		t.Errorf("WatchEvent of other groups only: kept %v, want the extension removed", got("watch"))
	}
	if want := []interface{}{gvk("apps", "v1", "Deployment"), gvk("apps", "v1beta1", "Deployment")}; !reflect.DeepEqual(got("deploy"), want) {
		t.Errorf("a group's own kind changed: %v, want %v", got("deploy"), want)
	}
}
