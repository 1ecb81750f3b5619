package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/platformapi"
	"github.com/sublet-dev/sublet/internal/restconfig"
)

// Namespace is where the server keeps connected clusters' kubeconfigs in
// the management cluster.
const Namespace = "sublet-system"

func (s *Server) apiRoutes() {
	s.mux.HandleFunc("POST /api/v1/accesskeys", s.authenticated(s.createAccessKey))
	s.mux.HandleFunc("GET /api/v1/accesskeys", s.authenticated(s.listAccessKeys))
	s.mux.HandleFunc("DELETE /api/v1/accesskeys/{name}", s.authenticated(s.deleteAccessKey))
	s.mux.HandleFunc("POST /api/v1/clusters", s.authenticated(s.connectCluster))
	s.mux.HandleFunc("POST /api/v1/moves", s.authenticated(s.moveKeys))
}

// mayInManagement asks the management cluster whether u may verb resource
// (a storage.loft.sh, cluster-scoped kind).
func (s *Server) mayInManagement(ctx context.Context, u *User, verb, resource string) (bool, error) {
	if err := s.limiter.review(u); err != nil {
		return false, err
	}
	res, err := s.kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{User: u.Name, Groups: u.Groups, ResourceAttributes: &authorizationv1.ResourceAttributes{
			Verb: verb, Group: storagev1.GroupVersion.Group, Version: storagev1.GroupVersion.Version, Resource: resource,
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return res.Status.Allowed, nil
}

func (s *Server) forbidden(w http.ResponseWriter, u *User, verb, resource string) {
	writeStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden,
		fmt.Sprintf("user %q may not %s %s.storage.loft.sh in the management cluster", u.Name, verb, resource))
}

// refused answers a request that err stops: 429 at a rate limit, else 503
// (the cluster asked could not answer). It reports whether err stopped it.
func (s *Server) refused(w http.ResponseWriter, err error) bool {
	if err == nil {
		return false
	}
	if !writeIfLimited(w, err) {
		writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, err.Error())
	}
	return true
}

// statusReason is the Status reason of an error code.
func statusReason(code int) metav1.StatusReason {
	switch code {
	case http.StatusUnprocessableEntity:
		return metav1.StatusReasonInvalid
	case http.StatusBadRequest:
		return metav1.StatusReasonBadRequest
	case http.StatusNotFound:
		return metav1.StatusReasonNotFound
	case http.StatusForbidden:
		return metav1.StatusReasonForbidden
	case http.StatusServiceUnavailable:
		return metav1.StatusReasonServiceUnavailable
	}
	return metav1.StatusReasonUnknown
}

func decode(w http.ResponseWriter, r *http.Request, v interface{}) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "request body: "+err.Error())
		return false
	}
	return true
}

func keyInfo(k *storagev1.AccessKey) platformapi.AccessKeyInfo {
	i := platformapi.AccessKeyInfo{Name: k.Name, User: k.Spec.User, Groups: k.Spec.Groups, VirtualCluster: keyScope(k), KeySHA256: k.Spec.KeySHA256}
	if k.Spec.Expiration != nil {
		i.Expiration = k.Spec.Expiration.UTC().Format(time.RFC3339)
	}
	return i
}

func (s *Server) createAccessKey(w http.ResponseWriter, r *http.Request, u *User) {
	req := platformapi.AccessKeyRequest{}
	if !decode(w, r, &req) {
		return
	}
	if req.User == "" {
		req.User = u.Name
		if req.Groups == nil {
			req.Groups = u.Groups
		}
	}
	ttl, bad := checkKeyRequest(&req)
	if bad != nil {
		writeStatus(w, bad.code, statusReason(bad.code), bad.msg)
		return
	}
	if req.User != u.Name || !subset(req.Groups, u.Groups) {
		ok, err := s.mayInManagement(r.Context(), u, "create", "accesskeys")
		if s.refused(w, err) {
			return
		}
		if !ok {
			s.forbidden(w, u, "create", "accesskeys (for another user or other groups)")
			return
		}
	}
	var scope *storagev1.AccessKeyScope
	if req.VirtualCluster != nil {
		sc := *req.VirtualCluster
		sc.UID = ""
		if err := s.scopeKey(r.Context(), &User{User: platformapi.User{Name: req.User, Groups: req.Groups}}, &sc); err != nil {
			var bad *requestError
			if errors.As(err, &bad) {
				writeStatus(w, bad.code, statusReason(bad.code), bad.msg)
			} else {
				s.refused(w, err)
			}
			return
		}
		scope = &storagev1.AccessKeyScope{VirtualCluster: &sc}
	}
	// Counted and created one at a time per user, so the cap holds.
	s.keyCreations.LockKey(req.User)
	defer func() { _ = s.keyCreations.UnlockKey(req.User) }()
	n, err := s.keysOf(r.Context(), req.User)
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, err.Error())
		return
	}
	if n >= s.limits.AccessKeysPerUser {
		e := s.keyCapError(req.User, n)
		writeStatus(w, e.code, metav1.StatusReasonInvalid, e.msg)
		return
	}
	if s.refused(w, s.limiter.createKey(u)) {
		return
	}
	key, err := platformapi.NewKey()
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, err.Error())
		return
	}
	ak := newAccessKey(&req, u, key, ttl, scope)
	if err := s.mgmt.Create(r.Context(), ak); err != nil {
		writeStatus(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, "create access key: "+err.Error())
		return
	}
	s.awaitKeyInCache(r.Context(), ak.Name)
	info := keyInfo(ak)
	info.Key = key
	w.WriteHeader(http.StatusCreated)
	writeJSON(w, info)
}

// newAccessKey is the AccessKey of key, made by u as req asks: good for
// ttl (0: no expiry of its own) and for scope (nil: unscoped).
func newAccessKey(req *platformapi.AccessKeyRequest, u *User, key string, ttl time.Duration, scope *storagev1.AccessKeyScope) *storagev1.AccessKey {
	ak := &storagev1.AccessKey{
		ObjectMeta: metav1.ObjectMeta{GenerateName: sanitizeName(req.User) + "-"},
		Spec:       storagev1.AccessKeySpec{User: req.User, Groups: req.Groups, KeySHA256: platformapi.HashKey(key), Description: req.Description, Scope: scope},
	}
	if ttl > 0 {
		ak.Spec.Expiration = &metav1.Time{Time: time.Now().Add(ttl)}
	}
	// A key made with a key never outlives it, and goes when it goes.
	if u.keyExpires != nil && (ak.Spec.Expiration == nil || ak.Spec.Expiration.After(*u.keyExpires)) {
		ak.Spec.Expiration = &metav1.Time{Time: *u.keyExpires}
	}
	if u.Key != "" && u.keyUID != "" {
		ak.OwnerReferences = []metav1.OwnerReference{{APIVersion: storagev1.GroupVersion.String(), Kind: "AccessKey", Name: u.Key, UID: u.keyUID}}
	}
	return ak
}

func (s *Server) listAccessKeys(w http.ResponseWriter, r *http.Request, u *User) {
	all, err := s.mayInManagement(r.Context(), u, "list", "accesskeys")
	if s.refused(w, err) {
		return
	}
	list := &storagev1.AccessKeyList{}
	if err := s.cache.List(r.Context(), list); err != nil {
		writeStatus(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, err.Error())
		return
	}
	out := []platformapi.AccessKeyInfo{}
	for i := range list.Items {
		if all || list.Items[i].Spec.User == u.Name {
			out = append(out, keyInfo(&list.Items[i]))
		}
	}
	writeJSON(w, out)
}

func (s *Server) deleteAccessKey(w http.ResponseWriter, r *http.Request, u *User) {
	ak := &storagev1.AccessKey{}
	err := s.cache.Get(r.Context(), types.NamespacedName{Name: r.PathValue("name")}, ak)
	if apierrors.IsNotFound(err) {
		writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("access key %q does not exist", r.PathValue("name")))
		return
	}
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, err.Error())
		return
	}
	if ak.Spec.User != u.Name {
		ok, err := s.mayInManagement(r.Context(), u, "delete", "accesskeys")
		if writeIfLimited(w, err) {
			return
		}
		if err != nil || !ok {
			// Someone else's key: as if it did not exist.
			writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("access key %q does not exist", ak.Name))
			return
		}
	}
	if err := s.mgmt.Delete(r.Context(), ak); client.IgnoreNotFound(err) != nil {
		writeStatus(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, err.Error())
		return
	}
	s.awaitKeyCached(r.Context(), ak.Name, false)
	writeJSON(w, keyInfo(ak))
}

// connectCluster stores a cluster's kubeconfig and registers it, after
// checking the server reaches it with that kubeconfig.
func (s *Server) connectCluster(w http.ResponseWriter, r *http.Request, u *User) {
	req := platformapi.ConnectRequest{}
	if !decode(w, r, &req) {
		return
	}
	if msgs := validation.IsDNS1123Subdomain(req.Name); len(msgs) > 0 {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, fmt.Sprintf("cluster name %q: %s", req.Name, strings.Join(msgs, "; ")))
		return
	}
	ok, err := s.mayInManagement(r.Context(), u, "create", "clusters")
	if s.refused(w, err) {
		return
	}
	if !ok {
		s.forbidden(w, u, "create", "clusters")
		return
	}
	cfg, err := restconfig.FromKubeconfig([]byte(req.Kubeconfig), req.AllowExecPlugin)
	if err != nil {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "kubeconfig: "+err.Error()+
			" (kubectl config view --minify --flatten --raw writes one with inline credentials; an exec plugin needs --allow-exec-plugin, and then runs on the platform server)")
		return
	}
	cfg.Timeout = 15 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err == nil {
		_, err = cs.Discovery().ServerVersion()
	}
	if err != nil {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, fmt.Sprintf("the server cannot reach cluster %s with that kubeconfig: %v", req.Name, err))
		return
	}
	cl := &storagev1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: req.Name}, Spec: storagev1.ClusterSpec{DisplayName: req.DisplayName}}
	if req.AllowExecPlugin {
		cl.Annotations = map[string]string{storagev1.AnnotationAllowExecPlugin: "true"}
	}
	if err := Connect(r.Context(), s.mgmt, cl, []byte(req.Kubeconfig), false); err != nil {
		code := http.StatusInternalServerError
		if apierrors.IsAlreadyExists(err) {
			code = http.StatusConflict
		}
		writeStatus(w, code, metav1.StatusReasonAlreadyExists, fmt.Sprintf("connect cluster %s: %v", req.Name, err))
		return
	}
	w.WriteHeader(http.StatusCreated)
	writeJSON(w, platformapi.ClusterInfo{Name: cl.Name, DisplayName: cl.Spec.DisplayName})
}

// Connect registers cluster cl in the management cluster with kubeconfig,
// kept in secret cluster-NAME in Namespace. An existing Cluster of that
// name is an AlreadyExists error, unless replace: then its kubeconfig is
// replaced and the rest left as it is.
func Connect(ctx context.Context, mgmt client.Client, cl *storagev1.Cluster, kubeconfig []byte, replace bool) error {
	if err := mgmt.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}); client.IgnoreAlreadyExists(err) != nil {
		return err
	}
	if !replace {
		// Checked first: another cluster's kubeconfig is not overwritten.
		err := mgmt.Get(ctx, types.NamespacedName{Name: cl.Name}, &storagev1.Cluster{})
		if err == nil {
			return apierrors.NewAlreadyExists(storagev1.GroupVersion.WithResource("clusters").GroupResource(), cl.Name)
		}
		if !apierrors.IsNotFound(err) {
			return err
		}
	}
	// The kubeconfig first, so the Cluster is reachable once it exists.
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cluster-" + cl.Name, Namespace: Namespace}}
	if _, err := controllerutil.CreateOrUpdate(ctx, mgmt, secret, func() error {
		secret.Data = map[string][]byte{"config": kubeconfig}
		return nil
	}); err != nil {
		return fmt.Errorf("store the cluster's kubeconfig: %w", err)
	}
	cl.Spec.Config = storagev1.SecretRef{Name: secret.Name, Namespace: Namespace}
	err := mgmt.Create(ctx, cl)
	if replace && apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func subset(a, b []string) bool {
	have := map[string]bool{}
	for _, x := range b {
		have[x] = true
	}
	for _, x := range a {
		if !have[x] {
			return false
		}
	}
	return true
}

// sanitizeName makes a user name usable as an object name prefix.
func sanitizeName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteRune('-')
		}
	}
	out := strings.Trim(b.String(), "-")
	if len(out) > 40 {
		out = out[:40]
	}
	if out == "" {
		out = "key"
	}
	return out
}
