package server

import (
	"github.com/sublet-dev/sublet/internal/platformapi"

	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
)

func TestPlatformAndRootPaths(t *testing.T) {
	for p, want := range map[string][2]bool{ // platform, kube root
		"/api/v1/whoami":                    {true, false},
		"/api/v1/accesskeys/x":              {true, false},
		"/api/v1/virtualclusters":           {true, false},
		"/api/v1/namespaces":                {false, true},
		"/api/v1/accesskeysx":               {false, true},
		"/api":                              {false, true},
		"/apis/apps/v1":                     {false, true},
		"/apisx":                            {false, false},
		"/version":                          {false, true},
		"/openapi/v3":                       {false, true},
		"/readyz":                           {false, true},
		"/healthz":                          {false, false},
		"/login":                            {false, false},
		"/.well-known/openid-configuration": {false, true},
	} {
		if got := [2]bool{platformPath(p), kubeRootPath(p)}; got != want {
			t.Errorf("%s: platform, kube root = %v, want %v", p, got, want)
		}
	}
}

// TestScopedKeys: a key scoped to a virtual cluster is made only for one
// its user may use, is good for that cluster's API alone (routed there by
// the key at the root of the address, or by path) and for nothing else of
// the platform, never reaches beyond the key it was made with, and is
// revoked with its maker and with its virtual cluster. A root request with
// an unscoped key, or none, is told how to name a virtual cluster.
func TestScopedKeys(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := startTestPlatform(ctx, t, Limits{}, testKey{name: "alice", user: "alice"}, testKey{name: "bob", user: "bob"})
	keys := p.keys
	// Virtual cluster team/demo exists (no agent here: it stays Failed,
	// which the proxy reports once it got that far).
	vc := &storagev1.VirtualCluster{ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "team"}}
	if err := p.s.mgmt.Create(ctx, vc); err != nil {
		t.Fatal(err)
	}
	vc.Status.Phase, vc.Status.Message = storagev1.PhaseFailed, "no agent in this test"
	if err := p.s.mgmt.Status().Update(ctx, vc); err != nil {
		t.Fatal(err)
	}
	mint := func(key string, sc storagev1.VirtualClusterScope) (int, string, platformapi.AccessKeyInfo) {
		t.Helper()
		code, body, _ := p.do(ctx, t, http.MethodPost, key, "/api/v1/accesskeys", platformapi.AccessKeyRequest{VirtualCluster: &sc})
		var info platformapi.AccessKeyInfo
		_ = json.Unmarshal([]byte(body), &info)
		return code, body, info
	}
	demo := storagev1.VirtualClusterScope{Cluster: "local", Namespace: "team", Name: "demo"}

	// Made only for a virtual cluster that exists and the user may use.
	for name, tc := range map[string]struct {
		key  string
		sc   storagev1.VirtualClusterScope
		code int
		want string
	}{
		"bob may not use it":  {keys["bob"], demo, http.StatusForbidden, `user \"bob\" may not use virtual cluster team/demo`},
		"no such cluster":     {keys["alice"], storagev1.VirtualClusterScope{Cluster: "elsewhere", Namespace: "team", Name: "demo"}, http.StatusNotFound, `cluster \"elsewhere\" is not connected`},
		"no such vcluster":    {keys["alice"], storagev1.VirtualClusterScope{Cluster: "local", Namespace: "team", Name: "nope"}, http.StatusNotFound, "virtual cluster team/nope does not exist in cluster local"},
		"not a name":          {keys["alice"], storagev1.VirtualClusterScope{Cluster: "local", Namespace: "team", Name: "Demo/x"}, http.StatusUnprocessableEntity, `name \"Demo/x\"`},
		"no namespace either": {keys["alice"], storagev1.VirtualClusterScope{Cluster: "local", Name: "demo"}, http.StatusUnprocessableEntity, `namespace \"\"`},
	} {
		if code, body, _ := mint(tc.key, tc.sc); code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s: HTTP %d %s, want %d with %q", name, code, body, tc.code, tc.want)
		}
	}
	code, body, scoped := mint(keys["alice"], storagev1.VirtualClusterScope{Cluster: "local", Namespace: "team", Name: "demo", UID: "forged"})
	if code != http.StatusCreated || scoped.VirtualCluster == nil || scoped.VirtualCluster.UID != vc.UID || scoped.KeySHA256 != platformapi.HashKey(scoped.Key) {
		t.Fatalf("alice's scoped key: HTTP %d %s; want 201 scoped to UID %s", code, body, vc.UID)
	}
	sk := scoped.Key

	// Good for that virtual cluster's API, by key alone or by path: the
	// proxy gets as far as the cluster (Failed here).
	for _, path := range []string{"/api/v1/namespaces", "/version", "/healthz", "/kubernetes/virtualcluster/local/team/demo/api"} {
		code, body, _ := p.do(ctx, t, http.MethodGet, sk, path, nil)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, `virtual cluster team/demo is not ready (phase \"Failed\")`) {
			t.Errorf("GET %s with the scoped key: HTTP %d %s, want the virtual cluster's 503", path, code, body)
		}
	}
	// Nothing else of the platform.
	for _, tc := range []struct{ method, path, want string }{
		{http.MethodGet, "/api/v1/whoami", "is scoped to virtual cluster local/team/demo"},
		{http.MethodPost, "/api/v1/accesskeys", "is scoped to virtual cluster local/team/demo"},
		{http.MethodGet, "/api/v1/virtualclusters", "is scoped to virtual cluster local/team/demo"},
		{http.MethodGet, "/kubernetes/cluster/local/api", "is scoped to virtual cluster local/team/demo"},
		{http.MethodGet, "/kubernetes/virtualcluster/local/team/other/api", "is not good for virtual cluster team/other of cluster local"},
	} {
		code, body, _ := p.do(ctx, t, tc.method, sk, tc.path, nil)
		if code != http.StatusForbidden || !strings.Contains(body, tc.want) {
			t.Errorf("%s %s with the scoped key: HTTP %d %s, want 403 with %q", tc.method, tc.path, code, body, tc.want)
		}
	}
	// The audit record names the cluster, the form and the key alike.
	forms := map[string]bool{}
	for _, r := range p.audit.records() {
		if r["virtualCluster"] == "local/team/demo" && r["user"] == "alice" && r["accessKey"] == scoped.Name && r["verb"] == "get" {
			forms[r["form"].(string)] = true
		}
	}
	if !forms[formKey] || !forms[formPath] {
		t.Errorf("audit records of the scoped key's requests lack a form: %v\n%v", forms, p.audit.records())
	}

	// Without a scoped key, the root explains itself.
	if code, body, _ := p.do(ctx, t, http.MethodGet, keys["alice"], "/api/v1/namespaces", nil); code != http.StatusNotFound ||
		!strings.Contains(body, "Sublet platform server") || !strings.Contains(body, "/kubernetes/virtualcluster/CLUSTER/NAMESPACE/NAME/api/v1/namespaces") ||
		!strings.Contains(body, "sublet create accesskey --vcluster NAME") {
		t.Errorf("a root request with alice's own key: HTTP %d %s, want the explanatory 404", code, body)
	}
	if code, body, _ := p.do(ctx, t, http.MethodGet, "", "/apis", nil); code != http.StatusUnauthorized || !strings.Contains(body, "a key scoped to a virtual cluster") {
		t.Errorf("a root request without a key: HTTP %d %s, want the explanatory 401", code, body)
	}
	if code, body, _ := p.do(ctx, t, http.MethodGet, "", "/healthz", nil); code != http.StatusOK || body != "ok" {
		t.Errorf("the platform's /healthz: HTTP %d %s", code, body)
	}

	// A key made with the scoped key inherits its scope; one claiming
	// another scope is not valid at all.
	sub := func(name string, sc *storagev1.VirtualClusterScope) string {
		key, _ := platformapi.NewKey()
		parent := &storagev1.AccessKey{}
		if err := p.s.mgmt.Get(ctx, types.NamespacedName{Name: scoped.Name}, parent); err != nil {
			t.Fatal(err)
		}
		ak := &storagev1.AccessKey{ObjectMeta: metav1.ObjectMeta{Name: name,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: storagev1.GroupVersion.String(), Kind: "AccessKey", Name: parent.Name, UID: parent.UID}}},
			Spec: storagev1.AccessKeySpec{User: "alice", KeySHA256: platformapi.HashKey(key)}}
		if sc != nil {
			ak.Spec.Scope = &storagev1.AccessKeyScope{VirtualCluster: sc}
		}
		if err := p.s.mgmt.Create(ctx, ak); err != nil {
			t.Fatal(err)
		}
		p.s.awaitKeyInCache(ctx, name)
		return key
	}
	inherits, widens := sub("ak-inherits", nil), sub("ak-widens", &storagev1.VirtualClusterScope{Cluster: "local", Namespace: "team", Name: "other"})
	if code, body, _ := p.do(ctx, t, http.MethodGet, inherits, "/api/v1/whoami", nil); code != http.StatusForbidden || !strings.Contains(body, "local/team/demo") {
		t.Errorf("a key made with the scoped key: HTTP %d %s, want it scoped alike", code, body)
	}
	if code, body, _ := p.do(ctx, t, http.MethodGet, widens, "/kubernetes/virtualcluster/local/team/other/api", nil); code != http.StatusUnauthorized {
		t.Errorf("a key under the scoped key claiming another cluster: HTTP %d %s, want 401", code, body)
	}

	// Its virtual cluster deleted: the next request revokes the key.
	if err := p.s.mgmt.Delete(ctx, vc); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := p.do(ctx, t, http.MethodGet, sk, "/api", nil); code != http.StatusUnauthorized || !strings.Contains(body, "which has been deleted") {
		t.Errorf("the scoped key after its virtual cluster was deleted: HTTP %d %s, want 401", code, body)
	}
	err := p.s.mgmt.Get(ctx, types.NamespacedName{Name: scoped.Name}, &storagev1.AccessKey{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("the scoped key of a deleted virtual cluster still exists: %v", err)
	}

	// The sweep revokes keys of virtual clusters that are gone, no request
	// needed, and keeps the others.
	again := &storagev1.VirtualCluster{ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "team"}}
	if err := p.s.mgmt.Create(ctx, again); err != nil {
		t.Fatal(err)
	}
	_, _, kept := mint(keys["alice"], demo)
	stale := &storagev1.AccessKey{ObjectMeta: metav1.ObjectMeta{Name: "ak-stale"}, Spec: storagev1.AccessKeySpec{User: "alice", KeySHA256: platformapi.HashKey("x"),
		Scope: &storagev1.AccessKeyScope{VirtualCluster: &storagev1.VirtualClusterScope{Cluster: "local", Namespace: "team", Name: "demo", UID: vc.UID}}}}
	if err := p.s.mgmt.Create(ctx, stale); err != nil {
		t.Fatal(err)
	}
	p.s.awaitKeyInCache(ctx, stale.Name)
	p.s.revokeOrphanedKeys(ctx)
	if err := p.s.mgmt.Get(ctx, types.NamespacedName{Name: stale.Name}, &storagev1.AccessKey{}); !apierrors.IsNotFound(err) {
		t.Errorf("the sweep kept a key scoped to the deleted cluster of that name: %v", err)
	}
	if err := p.s.mgmt.Get(ctx, types.NamespacedName{Name: kept.Name}, &storagev1.AccessKey{}); err != nil {
		t.Errorf("the sweep revoked a key of a virtual cluster that exists: %v", err)
	}

	// The scope cannot be changed or dropped.
	for what, change := range map[string]func(*storagev1.AccessKey){
		"changed": func(k *storagev1.AccessKey) { k.Spec.Scope.VirtualCluster.Name = "other" },
		"dropped": func(k *storagev1.AccessKey) { k.Spec.Scope = nil },
	} {
		k := &storagev1.AccessKey{}
		if err := p.s.mgmt.Get(ctx, types.NamespacedName{Name: kept.Name}, k); err != nil {
			t.Fatal(err)
		}
		change(k)
		if err := p.s.mgmt.Update(ctx, k); err == nil || !strings.Contains(err.Error(), "scope is immutable") {
			t.Errorf("a key's scope %s: %v, want refused as immutable", what, err)
		}
	}

	// Revoking the maker revokes the keys it made, at once.
	if code, _, _ := p.do(ctx, t, http.MethodGet, kept.Key, "/api/v1/whoami", nil); code != http.StatusForbidden {
		t.Fatalf("the new scoped key: HTTP %d, want 403 (valid, scoped)", code)
	}
	if err := p.s.mgmt.Delete(ctx, &storagev1.AccessKey{ObjectMeta: metav1.ObjectMeta{Name: "ak-alice"}}); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		code, _, _ := p.do(ctx, t, http.MethodGet, kept.Key, "/api/v1/whoami", nil)
		return code == http.StatusUnauthorized, nil
	}); err != nil {
		t.Errorf("the scoped key still authenticates after its maker was revoked")
	}

}
