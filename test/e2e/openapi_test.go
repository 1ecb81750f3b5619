package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/openapi"
)

// A virtual cluster's API server builds its OpenAPI documents lazily and
// keeps them only serialised (internal/controlplane/openapi.go); the host,
// in host mode, builds them as upstream does. Both run the same Kubernetes
// with the same built-in APIs, so every document the virtual cluster serves
// must be the host's, and kubectl must be able to read them.
func TestVClusterOpenAPIMatchesHost(t *testing.T) {
	needHost(t)
	hostNS := createNamespace(t, host.Client, "vc-openapi")
	vc := startVCluster(t, "openapi", hostNS)

	// v3: the discovery document names each group-version's document by
	// the hash of its content. The host may serve more (its CRDs).
	vcPaths, hostPaths := openAPIV3Paths(t, vc.Client), openAPIV3Paths(t, host.Client)
	for _, gv := range []string{"api/v1", "apis/apps/v1", "apis/apiextensions.k8s.io/v1", "apis/apiregistration.k8s.io/v1"} {
		if vcPaths[gv] == "" {
			t.Errorf("the virtual cluster's /openapi/v3 lists no %s; it lists %v", gv, vcPaths)
		}
	}
	for gv, ref := range vcPaths {
		if hostRef, ok := hostPaths[gv]; !ok {
			t.Errorf("/openapi/v3 lists %s in the virtual cluster, not on the host", gv)
		} else if hash(ref) != hash(hostRef) {
			t.Errorf("/openapi/v3/%s differs: virtual cluster hash %.16s…, host %.16s…", gv, hash(ref), hash(hostRef))
		}
	}
	// The document behind a hash is served, and twice the same (the second
	// request finds only the serialised document kept).
	for i := 0; i < 2; i++ {
		var doc struct {
			Components struct {
				Schemas map[string]json.RawMessage `json:"schemas"`
			} `json:"components"`
		}
		getJSON(t, vc.Client, strings.TrimPrefix(vcPaths["apis/apps/v1"], "/"), &doc)
		if doc.Components.Schemas["io.k8s.api.apps.v1.Deployment"] == nil {
			t.Fatalf("request %d: /openapi/v3/apis/apps/v1 has no Deployment schema (%d schemas)", i+1, len(doc.Components.Schemas))
		}
	}

	// The protobuf form, as client-go asks for it (by hash, in the older
	// media type), is the host's too.
	if vcPB, hostPB := openAPIV3Protobuf(t, vc.Client, "apis/apps/v1"), openAPIV3Protobuf(t, host.Client, "apis/apps/v1"); !bytes.Equal(vcPB, hostPB) {
		t.Errorf("/openapi/v3/apis/apps/v1 as protobuf: %d bytes in the virtual cluster, %d different ones on the host", len(vcPB), len(hostPB))
	}

	// v2: every path and definition of the virtual cluster's document is
	// the host's.
	var vcV2, hostV2 struct {
		Paths       map[string]json.RawMessage `json:"paths"`
		Definitions map[string]json.RawMessage `json:"definitions"`
	}
	getJSON(t, vc.Client, "openapi/v2", &vcV2)
	getJSON(t, host.Client, "openapi/v2", &hostV2)
	if len(vcV2.Paths) < 100 || vcV2.Definitions["io.k8s.api.core.v1.Pod"] == nil {
		t.Fatalf("the virtual cluster's /openapi/v2 has %d paths and %d definitions, no Pod", len(vcV2.Paths), len(vcV2.Definitions))
	}
	differ := func(what string, vcMap, hostMap map[string]json.RawMessage) {
		n := 0
		for k, v := range vcMap {
			if !jsonEqual(v, hostMap[k]) {
				n++
				if n <= 5 {
					t.Errorf("/openapi/v2 %s %s differs between the virtual cluster and the host", what, k)
				}
			}
		}
		if n > 5 {
			t.Errorf("… %d %s differ in all", n, what)
		}
	}
	differ("path", vcV2.Paths, hostV2.Paths)
	differ("definition", vcV2.Definitions, hostV2.Definitions)

	// What a user sees: kubectl explain reads /openapi/v3, for built-in
	// kinds and for a CRD created now.
	if out := kubectl(t, vc.Kubeconfig, "", "explain", "deployment.spec.replicas"); !strings.Contains(out, "replicas") {
		t.Fatalf("kubectl explain deployment.spec.replicas:\n%s", out)
	}
	kubectl(t, vc.Kubeconfig, widgetCRD, "apply", "-f", "-")
	poll(t, 60*time.Second, "kubectl explain of the new CRD", func(ctx context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", vc.Kubeconfig, "explain", "widgets.spec.size").CombinedOutput()
		return err == nil && strings.Contains(string(out), "How big the widget is"), nil
	})
}

const widgetCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.sublet.dev
spec:
  group: example.sublet.dev
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size:
                type: integer
                description: How big the widget is.
`

// openAPIV3Paths is the /openapi/v3 discovery document: group-version path
// → its document's URL, with the hash of its content.
func openAPIV3Paths(t *testing.T, cs kubernetes.Interface) map[string]string {
	t.Helper()
	var discovery struct {
		Paths map[string]struct {
			URL string `json:"serverRelativeURL"`
		} `json:"paths"`
	}
	getJSON(t, cs, "openapi/v3", &discovery)
	paths := map[string]string{}
	for gv, p := range discovery.Paths {
		paths[gv] = p.URL
	}
	return paths
}

// openAPIV3Protobuf is a group-version's /openapi/v3 document in protobuf,
// fetched through client-go's OpenAPI v3 client.
func openAPIV3Protobuf(t *testing.T, cs kubernetes.Interface, gv string) []byte {
	t.Helper()
	paths, err := cs.Discovery().OpenAPIV3().Paths()
	if err != nil {
		t.Fatalf("OpenAPI v3 paths: %v", err)
	}
	if paths[gv] == nil {
		t.Fatalf("OpenAPI v3 lists no %s", gv)
	}
	pb, err := paths[gv].Schema(openapi.ContentTypeOpenAPIV3PB)
	if err != nil {
		t.Fatalf("OpenAPI v3 %s as protobuf: %v", gv, err)
	}
	if len(pb) == 0 {
		t.Fatalf("OpenAPI v3 %s as protobuf is empty", gv)
	}
	return pb
}

func hash(serverRelativeURL string) string {
	u, err := url.Parse(serverRelativeURL)
	if err != nil {
		return ""
	}
	return u.Query().Get("hash")
}

// getJSON decodes what GET /path (a path with an optional query) answers.
func getJSON(t *testing.T, cs kubernetes.Interface, path string, into interface{}) {
	t.Helper()
	u, err := url.Parse("/" + path)
	if err != nil {
		t.Fatal(err)
	}
	req := cs.Discovery().RESTClient().Get().AbsPath(u.Path).SetHeader("Accept", "application/json")
	for k, vs := range u.Query() {
		req = req.Param(k, vs[0])
	}
	raw, err := req.Do(context.Background()).Raw()
	if err != nil {
		t.Fatalf("GET /%s: %v", path, err)
	}
	if err := json.Unmarshal(raw, into); err != nil {
		t.Fatalf("GET /%s: %v", path, err)
	}
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y interface{}
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
