package controlplane

import (
	"fmt"
	"reflect"
	"strings"
	"sync"

	restful "github.com/emicklei/go-restful/v3"
	"github.com/google/uuid"
	apiextensionsapiserver "k8s.io/apiextensions-apiserver/pkg/apiserver"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	genericapiserver "k8s.io/apiserver/pkg/server"
	serverstorage "k8s.io/apiserver/pkg/server/storage"
	aggregatorscheme "k8s.io/kube-aggregator/pkg/apiserver/scheme"
	builder2 "k8s.io/kube-openapi/pkg/builder"
	"k8s.io/kube-openapi/pkg/builder3"
	"k8s.io/kube-openapi/pkg/cached"
	openapicommon "k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/common/restfuladapter"
	"k8s.io/kube-openapi/pkg/handler"
	"k8s.io/kube-openapi/pkg/spec3"
	openapiutil "k8s.io/kube-openapi/pkg/util"
	"k8s.io/kube-openapi/pkg/validation/spec"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/pkg/api/legacyscheme"
)

// The kube-apiserver builds its OpenAPI documents in PrepareRun: the v2
// document and one v3 document per group-version, as object trees it keeps
// for the life of the process next to the JSON it serves (about 27 MB of an
// idle virtual cluster's 100 MB heap). serveOpenAPILazily serves the same
// documents from the same routes and configuration, but builds the v2
// document on its first request and keeps, of each document, only what is
// served: its JSON (and protobuf, once asked for), the v3 ones deflated
// (openapi_v3.go).

// prepareLazyOpenAPI readies c for serveOpenAPILazily: the kube-apiserver's
// server does not build its documents in PrepareRun, and the definitions
// every server's configuration keeps are cut to those they can serve.
func prepareLazyOpenAPI(c *apiserverapp.Config) {
	generic := c.KubeAPIs.ControlPlane.Generic
	generic.SkipOpenAPIInstallation = true
	operationIDsWithoutBuilder(generic.OpenAPIConfig, generic.OpenAPIV3Config)
	operationIDsWithoutBuilder(c.ApiExtensions.GenericConfig.OpenAPIConfig, c.ApiExtensions.GenericConfig.OpenAPIV3Config)
	operationIDsWithoutBuilder(c.Aggregator.GenericConfig.OpenAPIConfig, c.Aggregator.GenericConfig.OpenAPIV3Config)
	// The API extensions and aggregator servers' configurations share this
	// one.
	v3 := generic.OpenAPIV3Config
	v3.Definitions = servedDefinitions(v3.Definitions,
		[]*runtime.Scheme{legacyscheme.Scheme, apiextensionsapiserver.Scheme, aggregatorscheme.Scheme},
		[]*serverstorage.ResourceConfig{generic.MergedResourceConfig, c.ApiExtensions.GenericConfig.MergedResourceConfig, c.Aggregator.GenericConfig.MergedResourceConfig})
}

// operationIDsWithoutBuilder sets the configurations'
// GetOperationIDAndTagsFromRoute from their GetOperationIDAndTags, as
// kube-openapi's builders do when it is unset. Theirs is a closure over the
// first builder, which the shared configuration then holds for the life of
// the process: for v2, all 1,500 generated definitions, 7 MB of an idle
// virtual cluster's heap, the API extensions server's build in PrepareRun
// having been first; for v3, the first document built.
func operationIDsWithoutBuilder(v2 *openapicommon.Config, v3 *openapicommon.OpenAPIV3Config) {
	fromRoute := func(get func(*restful.Route) (string, []string, error)) func(openapicommon.Route) (string, []string, error) {
		return func(r openapicommon.Route) (string, []string, error) {
			route, ok := r.(*restfuladapter.RouteAdapter)
			if !ok {
				return "", nil, fmt.Errorf("config.GetOperationIDAndTags specified but route is not a restful v1 Route")
			}
			return get(route.Route)
		}
	}
	if v2 != nil && v2.GetOperationIDAndTagsFromRoute == nil && v2.GetOperationIDAndTags != nil {
		v2.GetOperationIDAndTagsFromRoute = fromRoute(v2.GetOperationIDAndTags)
	}
	if v3 != nil && v3.GetOperationIDAndTagsFromRoute == nil && v3.GetOperationIDAndTags != nil {
		v3.GetOperationIDAndTagsFromRoute = fromRoute(v3.GetOperationIDAndTags)
	}
}

// serveOpenAPILazily installs /openapi/v2 and /openapi/v3 on s, a server
// built with SkipOpenAPIInstallation, as its PrepareRun would have, from v2
// and v3, the configuration it was built with.
func serveOpenAPILazily(s *genericapiserver.GenericAPIServer, v2 *openapicommon.Config, v3 *openapicommon.OpenAPIV3Config) error {
	if v2 == nil || v3 == nil {
		return fmt.Errorf("serve OpenAPI: the server has no OpenAPI configuration")
	}
	webServices := s.Handler.GoRestfulContainer.RegisteredWebServices()

	v2Service := handler.NewOpenAPIServiceLazy(&servedOnce[spec.Swagger]{build: func() (*spec.Swagger, error) {
		doc, err := builder2.BuildOpenAPISpecFromRoutes(restfuladapter.AdaptWebServices(webServices), v2)
		if err != nil {
			return nil, fmt.Errorf("build OpenAPI v2: %w", err)
		}
		doc.Definitions = handler.PruneDefaults(doc.Definitions)
		return doc, nil
	}})
	v2Service.RegisterOpenAPIVersionedService("/openapi/v2", s.Handler.NonGoRestfulMux)

	// One document per root path ("api/v1", "apis/apps/v1"); as upstream,
	// a later web service on the same path replaces an earlier one.
	byPath := map[string]*restful.WebService{}
	for _, ws := range webServices {
		byPath[strings.TrimPrefix(ws.RootPath(), "/")] = ws
	}
	builds := make(map[string]func() (*spec3.OpenAPI, error), len(byPath))
	for path, ws := range byPath {
		builds[path] = func() (*spec3.OpenAPI, error) {
			doc, err := builder3.BuildOpenAPISpecFromRoutes(restfuladapter.AdaptWebServices([]*restful.WebService{ws}), v3)
			if err != nil {
				return nil, fmt.Errorf("build OpenAPI v3 for %s: %w", path, err)
			}
			keepOwnGroupVersionKinds(doc, path)
			return doc, nil
		}
	}
	newOpenAPIV3Service(builds).register("/openapi/v3", s.Handler.NonGoRestfulMux)
	return nil
}

// servedOnce is the source of one OpenAPI document for the caches of
// kube-openapi's handlers, which serialise a source's value when its etag
// changes and keep the bytes. It builds the document on the first Get and
// hands it out that once; later Gets return the same etag, so the caches
// keep the bytes they have. Those caches also keep the last value they were
// handed, so a later Get, which comes only after the first was serialised,
// empties the document to free its object tree. A failed build is tried
// again on the next Get.
type servedOnce[T any] struct {
	build func() (*T, error)

	mu        sync.Mutex
	etag      string
	handedOut *T
}

func (o *servedOnce[T]) Get() (*T, string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.etag != "" {
		if o.handedOut != nil {
			var empty T
			*o.handedOut = empty
			o.handedOut = nil
		}
		return nil, o.etag, nil
	}
	doc, err := o.build()
	if err != nil {
		return nil, "", err
	}
	o.etag, o.handedOut = uuid.NewString(), doc
	return doc, o.etag, nil
}

var _ cached.Value[*spec3.OpenAPI] = &servedOnce[spec3.OpenAPI]{}

// keepOwnGroupVersionKinds does what the generic API server does to each
// group-version's v3 document: the kinds every group registers
// (DeleteOptions, WatchEvent) list all their group-version-kinds in their
// x-kubernetes-group-version-kind; a group-version's document keeps only its
// own and the core v1 one.
func keepOwnGroupVersionKinds(doc *spec3.OpenAPI, path string) {
	group, version, ok := groupVersionOfPath(path)
	if !ok || doc == nil || doc.Components == nil {
		return
	}
	const key = "x-kubernetes-group-version-kind"
	for _, schema := range doc.Components.Schemas {
		if schema == nil {
			continue
		}
		gvks, _ := schema.Extensions[key].([]interface{})
		if len(gvks) < 2 {
			continue
		}
		if kind, _ := gvkField(gvks[0], "kind"); !sharedKinds[kind] {
			continue
		}
		var kept []interface{}
		for _, gvk := range gvks {
			g, hasGroup := gvkField(gvk, "group")
			v, hasVersion := gvkField(gvk, "version")
			if hasGroup && hasVersion && (g == group && v == version || g == "" && v == "v1") {
				kept = append(kept, gvk)
			}
		}
		if len(kept) == 0 {
			delete(schema.Extensions, key)
			continue
		}
		schema.Extensions[key] = kept
	}
}

// sharedKinds are the kinds registered in every group-version.
var sharedKinds = map[string]bool{"DeleteOptions": true, "WatchEvent": true}

// gvkField is one string field of an x-kubernetes-group-version-kind entry.
func gvkField(gvk interface{}, field string) (string, bool) {
	m, _ := gvk.(map[string]interface{})
	s, ok := m[field].(string)
	return s, ok
}

// groupVersionOfPath parses a web service's root path: "api/v1" is the core
// group's v1, "apis/apps/v1" apps/v1; other paths name no group-version.
func groupVersionOfPath(path string) (group, version string, ok bool) {
	parts := strings.Split(path, "/")
	switch {
	case len(parts) == 2 && parts[0] == "api":
		return "", parts[1], true
	case len(parts) == 3 && parts[0] == "apis":
		return parts[1], parts[2], true
	}
	return "", "", false
}

// servedDefinitions is defs, the OpenAPI definitions the kube-apiserver's
// configuration holds for the life of the process (every generated type of
// Kubernetes, its components' configuration types among them), cut to those
// the servers can put in a document: the kinds of every group-version of
// schemes that is GA (other groups' subresources use them, like
// autoscaling/v1 Scale) or that one of configs enables, whole or in part,
// the apimachinery types, and all that those refer to.
func servedDefinitions(defs map[string]openapicommon.OpenAPIDefinition, schemes []*runtime.Scheme, configs []*serverstorage.ResourceConfig) map[string]openapicommon.OpenAPIDefinition {
	served := func(gv schema.GroupVersion) bool {
		if isGA(gv.Version) {
			return true
		}
		for _, c := range configs {
			if c == nil {
				continue
			}
			if c.GroupVersionConfigs[gv] {
				return true
			}
			for gvr, on := range c.ResourceConfigs {
				if on && gvr.GroupVersion() == gv {
					return true
				}
			}
		}
		return false
	}
	var todo []string
	for name := range defs {
		if strings.HasPrefix(name, "io.k8s.apimachinery.") || strings.HasPrefix(name, "k8s.io/apimachinery/") {
			todo = append(todo, name)
		}
	}
	for _, s := range schemes {
		for _, gv := range s.PrioritizedVersionsAllGroups() {
			if !served(gv) {
				continue
			}
			for _, t := range s.KnownTypes(gv) {
				todo = append(todo, openapiutil.GetCanonicalTypeName(reflect.New(t).Interface()))
			}
		}
	}
	kept := make(map[string]openapicommon.OpenAPIDefinition, len(defs)/2)
	for len(todo) > 0 {
		name := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		def, ok := defs[name]
		if _, done := kept[name]; done || !ok {
			continue
		}
		kept[name] = def
		todo = append(todo, def.Dependencies...)
	}
	return kept
}

// isGA is whether an API version is a stable one (v1, v2), not an alpha
// or beta.
func isGA(v string) bool {
	return len(v) > 1 && v[0] == 'v' && strings.Trim(v[1:], "0123456789") == ""
}
