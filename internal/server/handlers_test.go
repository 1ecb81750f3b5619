package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/config/crd"
	"github.com/sublet-dev/sublet/internal/platformapi"
	"github.com/sublet-dev/sublet/internal/testenv"
)

// lockedBuffer collects audit records written from handler goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) records() []map[string]interface{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]interface{}
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		var m map[string]interface{}
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "request" {
			out = append(out, m)
		}
	}
	return out
}

// testKey is an AccessKey a test platform starts with.
type testKey struct {
	name, user string
	groups     []string
	expires    *metav1.Time
	scope      *storagev1.VirtualClusterScope
}

// testPlatform is a server on a real API server (the management cluster,
// also connected as cluster "local"), where alice may get virtual
// clusters in namespace team and nobody else may.
type testPlatform struct {
	s     *Server
	audit *lockedBuffer
	url   string
	keys  map[string]string // by testKey name
}

func startTestPlatform(ctx context.Context, t *testing.T, limits Limits, keys ...testKey) *testPlatform {
	t.Helper()
	if testing.Short() {
		t.Skip("needs an API server; skipped with -short")
	}
	cp, err := testenv.StartControlPlane(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cp.Kill)
	if err := crd.Install(ctx, cp.Config); err != nil {
		t.Fatal(err)
	}
	kc, err := os.ReadFile(cp.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs := cp.Client
	for _, ns := range []string{Namespace, "team"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.CoreV1().Secrets(Namespace).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "local-kubeconfig"},
		Data: map[string][]byte{"config": kc}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// alice may get virtual clusters in team; bob may not.
	if _, err := cs.RbacV1().Roles("team").Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "vc-users"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{storagev1.GroupVersion.Group}, Resources: []string{"virtualclusters"}, Verbs: []string{"get"}}}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().RoleBindings("team").Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "alice"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "vc-users"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	s, audit := startServer(ctx, t, cp, limits)
	p := &testPlatform{s: s, audit: audit, keys: map[string]string{}}
	for _, k := range keys {
		key, err := platformapi.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		p.keys[k.name] = key
		ak := &storagev1.AccessKey{ObjectMeta: metav1.ObjectMeta{Name: "ak-" + k.name},
			Spec: storagev1.AccessKeySpec{User: k.user, Groups: k.groups, KeySHA256: platformapi.HashKey(key), Expiration: k.expires}}
		if k.scope != nil {
			ak.Spec.Scope = &storagev1.AccessKeyScope{VirtualCluster: k.scope}
		}
		if err := s.mgmt.Create(ctx, ak); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.mgmt.Create(ctx, &storagev1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "local"},
		Spec: storagev1.ClusterSpec{Config: storagev1.SecretRef{Name: "local-kubeconfig", Namespace: Namespace}}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	p.url = srv.URL
	// The server's cache sees the new keys and the cluster shortly.
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		list := &storagev1.AccessKeyList{}
		if err := s.cache.List(ctx, list); err != nil || len(list.Items) < len(keys) {
			return false, nil
		}
		return s.cache.Get(ctx, client.ObjectKey{Name: "local"}, &storagev1.Cluster{}) == nil, nil
	}); err != nil {
		t.Fatalf("the server never knew the keys and cluster local: %v", err)
	}
	return p
}

// do sends a request with key as bearer token (none if "") and returns the
// status code, the body and the headers.
func (p *testPlatform) do(ctx context.Context, t *testing.T, method, key, path string, body interface{}) (int, string, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out), resp.Header
}

// TestHandlers drives the server's handlers against a real API server (the
// management cluster, also connected as cluster "local"): 401 without a
// valid key, the user of a valid one, 404 for an unknown cluster or
// virtual cluster, 403 naming the permission, one audit record per request.
func TestHandlers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := startTestPlatform(ctx, t, Limits{},
		testKey{name: "alice", user: "alice"}, testKey{name: "bob", user: "bob"},
		testKey{name: "old", user: "alice", expires: &metav1.Time{Time: time.Now().Add(-time.Hour)}})
	keys, audit := p.keys, p.audit
	get := func(key, path string) (int, string) {
		code, body, _ := p.do(ctx, t, http.MethodGet, key, path, nil)
		return code, body
	}

	for _, tc := range []struct {
		name, key, path string
		code            int
		want            []string
	}{
		{"no key", "", "/api/v1/whoami", http.StatusUnauthorized, []string{"Authorization: Bearer KEY", "sublet create accesskey"}},
		{"unknown key", "sk-not-a-key", "/api/v1/whoami", http.StatusUnauthorized, []string{"valid access key"}},
		{"expired key", keys["old"], "/api/v1/whoami", http.StatusUnauthorized, []string{"valid access key"}},
		{"valid key", keys["alice"], "/api/v1/whoami", http.StatusOK, []string{`"user":"alice"`, `"accessKey":"ak-alice"`}},
		{"clusters", keys["bob"], "/api/v1/clusters", http.StatusOK, []string{`"name":"local"`}},
		{"unknown cluster", keys["alice"], "/kubernetes/virtualcluster/elsewhere/team/demo/api", http.StatusNotFound,
			[]string{`cluster \"elsewhere\" is not connected`, "sublet list clusters"}},
		{"no right to the virtual cluster", keys["bob"], "/kubernetes/virtualcluster/local/team/demo/api", http.StatusForbidden,
			[]string{`user \"bob\"`, "get virtualclusters.storage.loft.sh in namespace team"}},
		{"unknown virtual cluster", keys["alice"], "/kubernetes/virtualcluster/local/team/demo/api", http.StatusNotFound,
			[]string{"virtual cluster team/demo does not exist in cluster local"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(tc.key, tc.path)
			if code != tc.code {
				t.Errorf("GET %s: %d, want %d: %s", tc.path, code, tc.code, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("GET %s: body %s lacks %q", tc.path, body, w)
				}
			}
		})
	}

	// One audit record per request, with user, path and status.
	var saw401, sawBob403 bool
	for _, r := range audit.records() {
		switch {
		case r["path"] == "/api/v1/whoami" && r["status"] == float64(401) && r["user"] == "":
			saw401 = true
		case r["path"] == "/kubernetes/virtualcluster/local/team/demo/api" && r["status"] == float64(403) && r["user"] == "bob" && r["verb"] == "get":
			sawBob403 = true
		}
	}
	if !saw401 || !sawBob403 {
		t.Errorf("audit records lack the 401 (%v) or bob's 403 (%v):\n%v", saw401, sawBob403, audit.records())
	}
}

func startServer(ctx context.Context, t *testing.T, cp *testenv.Process, limits Limits) (*Server, *lockedBuffer) {
	t.Helper()
	audit := &lockedBuffer{}
	s, err := New(ctx, cp.Config, slog.New(slog.NewJSONHandler(audit, nil)), limits)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return s, audit
}
