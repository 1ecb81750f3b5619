package controlplane

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sublet-dev/sublet/internal/testenv"
)

// TestPagedListAfterCompaction: a virtual-mode control plane on each
// datastore, its API server compacting every 5 s. 400 PodTemplates listed
// 40 at a time; once the first page's continue token has expired (410),
// the list goes on with the inconsistent continue token the 410 offers:
// the next page is PodTemplates 41-80, and remainingItemCount is 320 on
// both datastores.
func TestPagedListAfterCompaction(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two control planes")
	}
	for _, ds := range []string{DatastoreSQLite, DatastoreEtcd} {
		t.Run(ds, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cp, err := testenv.StartControlPlane(ctx, t.TempDir(), "--datastore", ds, "--apiserver-arg=--etcd-compaction-interval=5s")
			if err != nil {
				t.Fatal(err)
			}
			defer cp.Kill()
			cfg := rest.CopyConfig(cp.Config)
			cfg.QPS, cfg.Burst = 1000, 1000
			cs := kubernetes.NewForConfigOrDie(cfg)
			const total, limit = 400, 40
			for i := 0; i < total; i++ {
				pt := &corev1.PodTemplate{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pt-%03d", i)},
					Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}}
				if _, err := cs.CoreV1().PodTemplates("default").Create(ctx, pt, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			list := func(token string) (*corev1.PodTemplateList, error) {
				return cs.CoreV1().PodTemplates("default").List(ctx, metav1.ListOptions{Limit: limit, Continue: token})
			}
			first, err := list("")
			if err != nil {
				t.Fatal(err)
			}
			if first.RemainingItemCount == nil || *first.RemainingItemCount != total-limit {
				t.Fatalf("first page: remainingItemCount %v, want %d", first.RemainingItemCount, total-limit)
			}
			// Writes move the revision on; the API server compacts to the
			// revision of its previous pass, so the first page's revision
			// goes within two passes.
			var inconsistent string
			i := 0
			if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
				i++
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("tick-%d", i)}}
				if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
					return false, err
				}
				_, err := list(first.Continue)
				var status apierrors.APIStatus
				if err == nil {
					return false, nil
				}
				if s, ok := err.(apierrors.APIStatus); ok && s.Status().Code == http.StatusGone {
					status = s
					inconsistent = status.Status().ListMeta.Continue
					return true, nil
				}
				return false, err
			}); err != nil {
				t.Fatalf("the first page's continue token never expired: %v", err)
			}
			if inconsistent == "" {
				t.Fatal("the 410 offers no continue token")
			}
			second, err := list(inconsistent)
			if err != nil {
				t.Fatal(err)
			}
			if len(second.Items) != limit || second.Items[0].Name != "pt-040" {
				t.Fatalf("second page: %d items, the first %q; want %d from pt-040", len(second.Items), second.Items[0].Name, limit)
			}
			if second.RemainingItemCount == nil || *second.RemainingItemCount != total-2*limit {
				got := "none"
				if second.RemainingItemCount != nil {
					got = fmt.Sprint(*second.RemainingItemCount)
				}
				t.Errorf("second page after an inconsistent continuation: remainingItemCount %s, want %d", got, total-2*limit)
			}
		})
	}
}
