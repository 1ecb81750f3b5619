package controlplane

import (
	"errors"
	"reflect"
	gcruntime "runtime"
	"testing"
	"time"

	restful "github.com/emicklei/go-restful/v3"

	apiextensionsapiserver "k8s.io/apiextensions-apiserver/pkg/apiserver"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	serverstorage "k8s.io/apiserver/pkg/server/storage"
	aggregatorscheme "k8s.io/kube-aggregator/pkg/apiserver/scheme"
	builder2 "k8s.io/kube-openapi/pkg/builder"
	openapicommon "k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/common/restfuladapter"
	"k8s.io/kube-openapi/pkg/spec3"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"k8s.io/kubernetes/pkg/api/legacyscheme"
	"k8s.io/kubernetes/pkg/controlplane"
	generatedopenapi "k8s.io/kubernetes/pkg/generated/openapi"
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

func TestServedDefinitions(t *testing.T) {
	all := generatedopenapi.GetOpenAPIDefinitions(func(name string) spec.Ref { return spec.MustCreateRef("#/definitions/" + name) })
	schemes := []*runtime.Scheme{legacyscheme.Scheme, apiextensionsapiserver.Scheme, aggregatorscheme.Scheme}
	// The servers' configurations: Kubernetes' defaults for the kube APIs;
	// the other two servers' groups are GA.
	defaults := controlplane.DefaultAPIResourceConfigSource()
	kept := servedDefinitions(all, schemes, []*serverstorage.ResourceConfig{defaults})
	t.Logf("kept %d of %d definitions", len(kept), len(all))

	for _, name := range []string{
		"io.k8s.api.core.v1.Pod", "io.k8s.api.core.v1.PodSpec", "io.k8s.api.apps.v1.Deployment",
		"io.k8s.api.autoscaling.v1.Scale", "io.k8s.api.policy.v1.Eviction", "io.k8s.api.authentication.v1.TokenRequest",
		"io.k8s.apimachinery.pkg.apis.meta.v1.Status", "io.k8s.apimachinery.pkg.version.Info",
		"io.k8s.apimachinery.pkg.api.resource.Quantity",
		"io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
		"io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIService",
	} {
		if _, ok := all[name]; !ok {
			t.Errorf("%s is not a generated definition; the test's names are out of date", name)
		} else if _, ok := kept[name]; !ok {
			t.Errorf("%s was cut; it is served", name)
		}
	}
	const alpha = "io.k8s.api.scheduling.v1alpha3.PodGroup"
	for _, name := range []string{"io.k8s.kubelet.config.v1beta1.KubeletConfiguration", alpha} {
		if _, ok := all[name]; !ok {
			t.Errorf("%s is not a generated definition; the test's names are out of date", name)
		} else if _, ok := kept[name]; ok {
			t.Errorf("%s was kept; nothing serves it", name)
		}
	}
	if len(kept) >= len(all)*3/4 {
		t.Errorf("kept %d of %d definitions; expected to cut more than a quarter", len(kept), len(all))
	}

	// --runtime-config enables an alpha group-version, or one resource of it.
	gv := schema.GroupVersion{Group: "scheduling.k8s.io", Version: "v1alpha3"}
	enabled := controlplane.DefaultAPIResourceConfigSource()
	enabled.EnableVersions(gv)
	if _, ok := servedDefinitions(all, schemes, []*serverstorage.ResourceConfig{enabled})[alpha]; !ok {
		t.Errorf("%s was cut with %s enabled", alpha, gv)
	}
	oneResource := controlplane.DefaultAPIResourceConfigSource()
	oneResource.EnableResources(gv.WithResource("podgroups"))
	if _, ok := servedDefinitions(all, schemes, []*serverstorage.ResourceConfig{oneResource})[alpha]; !ok {
		t.Errorf("%s was cut with %s enabled", alpha, gv.WithResource("podgroups"))
	}
}

func TestIsGA(t *testing.T) {
	for v, want := range map[string]bool{"v1": true, "v2": true, "v10": true, "v1beta1": false, "v1alpha3": false, "v": false, "": false, "1": false} {
		if got := isGA(v); got != want {
			t.Errorf("isGA(%q) = %v, want %v", v, got, want)
		}
	}
}

// After operationIDsWithoutBuilder, building a document leaves nothing of
// the builder in the configuration: the definitions it was handed can be
// collected, and operation IDs come from GetOperationIDAndTags as before.
func TestOperationIDsWithoutBuilder(t *testing.T) {
	collected := make(chan struct{})
	v2 := &openapicommon.Config{
		Info:            &spec.Info{InfoProps: spec.InfoProps{Title: "Kubernetes", Version: "v1.37.2"}},
		DefaultResponse: &spec.Response{ResponseProps: spec.ResponseProps{Description: "Default Response."}},
		GetDefinitions: func(openapicommon.ReferenceCallback) map[string]openapicommon.OpenAPIDefinition {
			// A definition no route refers to, seen by its finalizer.
			unused := &spec.Schema{SchemaProps: spec.SchemaProps{Description: "unused"}}
			gcruntime.SetFinalizer(unused, func(*spec.Schema) { close(collected) })
			return map[string]openapicommon.OpenAPIDefinition{
				"example.Unused": {Schema: spec.Schema{SchemaProps: spec.SchemaProps{Items: &spec.SchemaOrArray{Schema: unused}}}},
			}
		},
		GetOperationIDAndTags: func(r *restful.Route) (string, []string, error) {
			return "op-" + r.Operation, []string{"widgets"}, nil
		},
	}
	operationIDsWithoutBuilder(v2, nil)

	ws := new(restful.WebService).Path("/apis/example/v1")
	ws.Route(ws.GET("/widgets").To(func(*restful.Request, *restful.Response) {}).Operation("listWidgets"))
	doc, err := builder2.BuildOpenAPISpecFromRoutes(restfuladapter.AdaptWebServices([]*restful.WebService{ws}), v2)
	if err != nil {
		t.Fatal(err)
	}
	if op := doc.Paths.Paths["/apis/example/v1/widgets"].Get; op == nil || op.ID != "op-listWidgets" || len(op.Tags) != 1 {
		t.Fatalf("the operation is %+v; want ID op-listWidgets, tag widgets", op)
	}
	doc = nil
	freed := false
	for i := 0; i < 20 && !freed; i++ {
		gcruntime.GC()
		select {
		case <-collected:
			freed = true
		case <-time.After(50 * time.Millisecond):
		}
	}
	// The configuration lives on, as in the API server.
	gcruntime.KeepAlive(v2)
	if !freed {
		t.Fatal("the definitions handed to the builder are still held (by the configuration) after 20 collections")
	}
}
