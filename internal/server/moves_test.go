package server

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/platformapi"
)

// TestMoveKeys: POST /api/v1/moves gives the keys scoped to a virtual
// cluster to the one a move made, only for a user who may update the
// source, while a move to that cluster holds it, and to a cluster made
// by a move of that very source. The key's secret stays; its object is
// made again (a scope never changes). Cluster "local" is both source and
// target here: the checks are the same.
func TestMoveKeys(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := startTestPlatform(ctx, t, Limits{},
		testKey{name: "alice", user: "alice"}, testKey{name: "mover", user: "mover"})
	if err := p.s.mgmt.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "vc-movers", Namespace: "team"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{storagev1.GroupVersion.Group}, Resources: []string{"virtualclusters"}, Verbs: []string{"get", "update"}}}}); err != nil {
		t.Fatal(err)
	}
	if err := p.s.mgmt.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "mover", Namespace: "team"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "mover"}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "vc-movers"}}); err != nil {
		t.Fatal(err)
	}
	vc := &storagev1.VirtualCluster{ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "team"}}
	if err := p.s.mgmt.Create(ctx, vc); err != nil {
		t.Fatal(err)
	}
	// alice's kube-context key of it.
	scoped, err := platformapi.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	scope := &storagev1.VirtualClusterScope{Cluster: "local", Namespace: "team", Name: "demo", UID: vc.UID}
	if err := p.s.mgmt.Create(ctx, &storagev1.AccessKey{ObjectMeta: metav1.ObjectMeta{Name: "ak-scoped"},
		Spec: storagev1.AccessKeySpec{User: "alice", KeySHA256: platformapi.HashKey(scoped), Scope: &storagev1.AccessKeyScope{VirtualCluster: scope}}}); err != nil {
		t.Fatal(err)
	}
	annotate := func(ann map[string]string) {
		t.Helper()
		if err := p.s.mgmt.Get(ctx, types.NamespacedName{Namespace: "team", Name: "demo"}, vc); err != nil {
			t.Fatal(err)
		}
		vc.Annotations = ann
		if err := p.s.mgmt.Update(ctx, vc); err != nil {
			t.Fatal(err)
		}
	}
	req := platformapi.MoveRequest{Cluster: "local", Namespace: "team", Name: "demo", ToCluster: "local"}
	held := map[string]string{storagev1.AnnotationMovingTo: "local", storagev1.AnnotationMovingUntil: time.Now().Add(time.Minute).UTC().Format(time.RFC3339)}
	for _, c := range []struct {
		name, key string
		ann       map[string]string
		code      int
		want      string
	}{
		{"a user who may only get it", "alice", held, http.StatusForbidden, "may not update"},
		{"not held by a move", "mover", nil, http.StatusConflict, "not held by a move to cluster local"},
		{"a target not made by a move of it", "mover", held, http.StatusConflict, "was not made by a move"},
	} {
		annotate(c.ann)
		code, body, _ := p.do(ctx, t, http.MethodPost, p.keys[c.key], "/api/v1/moves", req)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s; want %d with %q", c.name, code, body, c.code, c.want)
		}
	}
	if err := p.s.mgmt.Get(ctx, client.ObjectKey{Name: "ak-scoped"}, &storagev1.AccessKey{}); err != nil {
		t.Fatalf("a refused move touched the key: %v", err)
	}

	moved := map[string]string{storagev1.AnnotationMovedFrom: "local"}
	for k, v := range held {
		moved[k] = v
	}
	annotate(moved)
	moved[storagev1.AnnotationMovedFromUID] = string(vc.UID)
	annotate(moved)
	code, body, _ := p.do(ctx, t, http.MethodPost, p.keys["mover"], "/api/v1/moves", req)
	if code != http.StatusOK || !strings.Contains(body, `"keys":1`) {
		t.Fatalf("the move: %d %s", code, body)
	}
	list := &storagev1.AccessKeyList{}
	if err := p.s.mgmt.List(ctx, list); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, k := range list.Items {
		if k.Name == "ak-scoped" {
			t.Error("the source's key object is still there")
		}
		if k.Spec.KeySHA256 == platformapi.HashKey(scoped) {
			found = k.Spec.User == "alice" && k.Spec.Scope != nil && *k.Spec.Scope.VirtualCluster == *scope
		}
	}
	if !found {
		t.Errorf("no key with the same secret, user and the moved cluster's scope: %+v", list.Items)
	}
	// The same secret still opens the moved cluster.
	if code, body, _ := p.do(ctx, t, http.MethodGet, scoped, "/kubernetes/virtualcluster/local/team/demo/version", nil); code == http.StatusUnauthorized {
		t.Errorf("the moved key is refused: %s", body)
	}
}
