package server

import (
	"context"
	"fmt"
	"net/http"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/platformapi"
)

// moveKeys gives the keys scoped to a virtual cluster a move holds to the
// cluster the move made: each is made again, same secret, user, groups,
// expiration and parent, scoped to the moved cluster, and the old one is
// deleted. So every kube-context of it that reaches it by key (the form
// 'sublet use vcluster' writes) keeps working, whoever's it is.
//
// A key's scope never changes, and this opens nothing new: the caller must
// be allowed to update the source VirtualCluster, the source must be held
// by a move to ToCluster (only who may update it can set that), and the
// target must say it was moved from that very source (its UID).
func (s *Server) moveKeys(w http.ResponseWriter, r *http.Request, u *User) {
	req := platformapi.MoveRequest{}
	if !decode(w, r, &req) {
		return
	}
	ctx := r.Context()
	src := s.cluster(w, r, req.Cluster)
	if src == nil {
		return
	}
	dst := s.cluster(w, r, req.ToCluster)
	if dst == nil {
		return
	}
	from, code, err := s.movedPair(ctx, u, src, dst, req)
	if err != nil {
		writeStatus(w, code, statusReason(code), err.Error())
		return
	}
	n, err := s.rescopeKeys(ctx, from, &storagev1.VirtualClusterScope{Cluster: req.ToCluster, Namespace: req.Namespace, Name: req.Name, UID: from.to})
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, fmt.Sprintf("%d keys given to the moved cluster, then: %v", n, err))
		return
	}
	writeJSON(w, platformapi.MoveResult{Keys: n})
}

// movedScope is the source's scope, with the UID of the moved cluster.
type movedScope struct {
	storagev1.VirtualClusterScope
	to types.UID
}

// movedPair checks a MoveRequest (see moveKeys) and returns the source's
// scope, or an HTTP status and why not.
func (s *Server) movedPair(ctx context.Context, u *User, src, dst *clusterConfig, req platformapi.MoveRequest) (*movedScope, int, error) {
	key := types.NamespacedName{Namespace: req.Namespace, Name: req.Name}
	srcVC, dstVC := &storagev1.VirtualCluster{}, &storagev1.VirtualCluster{}
	if err := src.client.Get(ctx, key, srcVC); err != nil {
		return nil, http.StatusNotFound, fmt.Errorf("virtual cluster %s in cluster %s: %w", key, req.Cluster, err)
	}
	if err := src.limiter.review(u); err != nil {
		return nil, http.StatusTooManyRequests, err
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: u.Name, Groups: u.Groups,
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: req.Namespace, Verb: "update", Group: storagev1.GroupVersion.Group,
			Version: storagev1.GroupVersion.Version, Resource: "virtualclusters", Name: req.Name},
	}}
	res, err := src.kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	switch {
	case err != nil:
		return nil, http.StatusServiceUnavailable, err
	case !res.Status.Allowed:
		return nil, http.StatusForbidden, fmt.Errorf("user %q may not update virtual cluster %s in cluster %s, so may not move its keys", u.Name, key, req.Cluster)
	}
	if to, ok := storagev1.MovingTo(srcVC, time.Now()); !ok || to != req.ToCluster {
		return nil, http.StatusConflict, fmt.Errorf("virtual cluster %s in cluster %s is not held by a move to cluster %s", key, req.Cluster, req.ToCluster)
	}
	if err := dst.client.Get(ctx, key, dstVC); err != nil {
		return nil, http.StatusNotFound, fmt.Errorf("virtual cluster %s in cluster %s: %w", key, req.ToCluster, err)
	}
	if dstVC.Annotations[storagev1.AnnotationMovedFrom] != req.Cluster || dstVC.Annotations[storagev1.AnnotationMovedFromUID] != string(srcVC.UID) {
		return nil, http.StatusConflict, fmt.Errorf("virtual cluster %s in cluster %s was not made by a move of the one in cluster %s", key, req.ToCluster, req.Cluster)
	}
	return &movedScope{VirtualClusterScope: storagev1.VirtualClusterScope{Cluster: req.Cluster, Namespace: req.Namespace, Name: req.Name, UID: srcVC.UID}, to: dstVC.UID}, 0, nil
}

// rescopeKeys makes every key scoped to from again, scoped to to, and
// deletes it; it returns how many, once the server's cache has them.
func (s *Server) rescopeKeys(ctx context.Context, from *movedScope, to *storagev1.VirtualClusterScope) (int, error) {
	list := &storagev1.AccessKeyList{}
	if err := s.mgmt.List(ctx, list); err != nil {
		return 0, err
	}
	n := 0
	for i := range list.Items {
		old := &list.Items[i]
		if sc := keyScope(old); sc == nil || !sameVirtualCluster(sc, &from.VirtualClusterScope) {
			continue
		}
		moved := &storagev1.AccessKey{
			ObjectMeta: metav1.ObjectMeta{GenerateName: sanitizeName(old.Spec.User) + "-", Labels: old.Labels, Annotations: old.Annotations, OwnerReferences: old.OwnerReferences},
			Spec:       *old.Spec.DeepCopy(),
		}
		moved.Spec.Scope.VirtualCluster = to.DeepCopy()
		if err := s.mgmt.Create(ctx, moved); err != nil {
			return n, fmt.Errorf("make key %s again for the moved cluster: %w", old.Name, err)
		}
		s.awaitKeyInCache(ctx, moved.Name)
		if err := s.mgmt.Delete(ctx, old); err != nil {
			return n, fmt.Errorf("delete key %s of the source: %w", old.Name, err)
		}
		s.awaitKeyCached(ctx, old.Name, false)
		s.audit.Info("moved access key", "accessKey", old.Name, "to", moved.Name, "virtualCluster", scopeString(to))
		n++
	}
	return n, nil
}
