package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/platformapi"
)

// How a request named the virtual cluster it is for, as the audit record
// says: the seed's path form, the TLS server name, or its scoped key alone.
const (
	formPath       = "path"
	formServerName = "serverName"
	formKey        = "key"
)

// scopeString is how messages name a scope: CLUSTER/NAMESPACE/NAME.
func scopeString(sc *storagev1.VirtualClusterScope) string {
	return sc.Cluster + "/" + sc.Namespace + "/" + sc.Name
}

// handlerFor picks the handler of r. A virtual cluster's server name, or
// a path under /kubernetes/, names the target itself. Otherwise a key
// scoped to a virtual cluster sends the whole request, whatever its path,
// to that cluster's API (except the platform's own API, which it may not
// use), so a client that knows only the platform's address, a CA and the
// key reaches it. A Kubernetes API path without such a key gets an answer
// that says what this address serves; the rest is the platform's.
func (s *Server) handlerFor(r *http.Request) http.Handler {
	if h := s.virtualByServerName(r); h != nil {
		return h
	}
	if strings.HasPrefix(r.URL.Path, "/kubernetes/") {
		return s.mux
	}
	if token := bearerToken(r); token != "" {
		// An invalid key falls through: the handler below refuses it and
		// counts it against the client. A valid one is kept for the
		// handler, so it is looked up once.
		u, err := s.authenticateKey(r.Context(), token)
		box, _ := r.Context().Value(userHolder{}).(*userBox)
		if err == nil && box != nil {
			box.keyed, box.keyedToken = u, token
		}
		if err == nil && u.Scope != nil {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if box != nil {
					box.user = u
				}
				if platformPath(r.URL.Path) {
					refuseScoped(w, u)
					return
				}
				sc := u.Scope
				s.proxyVirtual(w, r, u, formKey, sc.Cluster, sc.Namespace, sc.Name, r.URL.Path)
			})
		}
	}
	if kubeRootPath(r.URL.Path) {
		return s.authenticatedFor(false, rootHint, s.explainRoot)
	}
	return s.mux
}

// platformPath reports whether p is the platform's own API.
func platformPath(p string) bool {
	rest, ok := strings.CutPrefix(p, "/api/v1/")
	if !ok {
		return false
	}
	first, _, _ := strings.Cut(rest, "/")
	switch first {
	case "whoami", "info", "accesskeys", "clusters", "virtualclusters", "moves":
		return true
	}
	return false
}

// kubeRootPath reports whether p is a path a Kubernetes client asks an
// API server for at its root (discovery, resources, version, OpenAPI,
// health), which the platform itself does not serve.
func kubeRootPath(p string) bool {
	if platformPath(p) {
		return false
	}
	for _, root := range []string{"/api", "/apis", "/version", "/openapi", "/livez", "/readyz", "/metrics", "/logs", "/.well-known", "/openid"} {
		if p == root || strings.HasPrefix(p, root+"/") {
			return true
		}
	}
	return false
}

// rootHint ends the 401 of a Kubernetes API path at the platform's root.
const rootHint = ". This address is the Sublet platform server: a key scoped to a virtual cluster ('sublet create accesskey --vcluster NAME', or the kube-context 'sublet use vcluster NAME' writes) reaches that cluster's API here"

// explainRoot answers a Kubernetes API path at the platform's root with a
// key that names no virtual cluster: 404, saying how to name one.
func (s *Server) explainRoot(w http.ResponseWriter, r *http.Request, u *User) {
	byName := ""
	if s.serverNames {
		byName = fmt.Sprintf(", by the TLS server name NAME.NAMESPACE.CLUSTER%s (kubeconfig tls-server-name)", ServerNameSuffix)
	}
	writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf(
		"%s is not served here: this address is the Sublet platform server, which serves each virtual cluster's Kubernetes API. "+
			"Access key %s is not scoped to a virtual cluster, so name one: by path (https://%s/kubernetes/virtualcluster/CLUSTER/NAMESPACE/NAME%s)%s, "+
			"or with a key scoped to it ('sublet create accesskey --vcluster NAME [--space NS] [--cluster C]'; the kube-contexts 'sublet use vcluster NAME' writes carry one), "+
			"which this address routes by itself; 'sublet list vclusters' lists the virtual clusters you may use",
		r.URL.Path, u.Key, r.Host, r.URL.Path, byName))
}

// refuseScoped answers a request a key scoped to a virtual cluster may not
// make: anything of the platform but that cluster's API.
func refuseScoped(w http.ResponseWriter, u *User) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusForbidden)
	_ = json.NewEncoder(w).Encode(&metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Reason: metav1.StatusReasonForbidden, Code: http.StatusForbidden,
		Message: fmt.Sprintf(
			"access key %s is scoped to virtual cluster %s: it is good for that cluster's Kubernetes API alone (at the root of this address, or at /kubernetes/virtualcluster/%s), not for the platform's API, web UI or other clusters; use a key of your own ('sublet login')",
			u.Key, scopeString(u.Scope), scopeString(u.Scope)),
		// Which virtual cluster, for clients (the web UI's login) to say.
		Details: &metav1.StatusDetails{Group: storagev1.GroupVersion.Group, Kind: platformapi.ScopedKeyKind, Name: scopeString(u.Scope)},
	})
}

// scopeKey checks the virtual cluster a new key is to be scoped to: a
// connected cluster, valid names, a virtual cluster that exists and that
// the key's user may get there (a scoped key never opens more than its
// user has). It records the virtual cluster's UID in sc.
// A refusal is a *requestError; an access review past the user's limit,
// or one that failed, another error.
func (s *Server) scopeKey(ctx context.Context, keyUser *User, sc *storagev1.VirtualClusterScope) error {
	invalid := func(format string, args ...interface{}) error {
		return &requestError{code: http.StatusUnprocessableEntity, msg: fmt.Sprintf(format, args...)}
	}
	if msgs := validation.IsDNS1123Subdomain(sc.Cluster); len(msgs) > 0 {
		return invalid("virtual cluster scope: cluster %q: %s", sc.Cluster, strings.Join(msgs, "; "))
	}
	for field, v := range map[string]string{"namespace": sc.Namespace, "name": sc.Name} {
		if msgs := validation.IsDNS1123Label(v); len(msgs) > 0 {
			return invalid("virtual cluster scope: %s %q: %s", field, v, strings.Join(msgs, "; "))
		}
	}
	c := &storagev1.Cluster{}
	if err := s.cache.Get(ctx, types.NamespacedName{Name: sc.Cluster}, c); err != nil {
		if apierrors.IsNotFound(err) {
			return &requestError{code: http.StatusNotFound, msg: fmt.Sprintf("cluster %q is not connected (see 'sublet list clusters')", sc.Cluster)}
		}
		return &requestError{code: http.StatusInternalServerError, msg: err.Error()}
	}
	cc, err := s.clusters.get(ctx, c)
	if err != nil {
		return &requestError{code: http.StatusServiceUnavailable, msg: err.Error()}
	}
	ok, err := cc.mayGetVirtualCluster(ctx, keyUser, sc.Namespace, sc.Name)
	if err != nil {
		return fmt.Errorf("access review on cluster %s: %w", sc.Cluster, err)
	}
	if !ok {
		return &requestError{code: http.StatusForbidden, msg: fmt.Sprintf(
			"user %q may not use virtual cluster %s/%s in cluster %s (it needs permission to get virtualclusters.storage.loft.sh in namespace %s), so no key scoped to it is made for them",
			keyUser.Name, sc.Namespace, sc.Name, sc.Cluster, sc.Namespace)}
	}
	vc := &storagev1.VirtualCluster{}
	if err := cc.client.Get(ctx, types.NamespacedName{Namespace: sc.Namespace, Name: sc.Name}, vc); err != nil {
		if apierrors.IsNotFound(err) {
			return &requestError{code: http.StatusNotFound, msg: fmt.Sprintf("virtual cluster %s/%s does not exist in cluster %s", sc.Namespace, sc.Name, sc.Cluster)}
		}
		return &requestError{code: http.StatusServiceUnavailable, msg: err.Error()}
	}
	sc.UID = vc.UID
	return nil
}

// revokeOrphan answers a request with a key scoped to a virtual cluster
// that is gone (deleted, or deleted and made again: another cluster) and
// revokes the key: 401, as for any revoked key.
func (s *Server) revokeOrphan(w http.ResponseWriter, r *http.Request, u *User) {
	s.revokeAccessKey(r.Context(), u.Key, "its virtual cluster "+scopeString(u.Scope)+" was deleted")
	writeStatus(w, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, fmt.Sprintf(
		"access key %s was scoped to virtual cluster %s, which has been deleted (a cluster made again under that name is another one): the key is revoked; 'sublet use vcluster %s' makes a new one",
		u.Key, scopeString(u.Scope), u.Scope.Name))
}

// revokeAccessKey deletes AccessKey name, and records why.
func (s *Server) revokeAccessKey(ctx context.Context, name, why string) {
	err := s.mgmt.Delete(ctx, &storagev1.AccessKey{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if client.IgnoreNotFound(err) != nil {
		s.log.Error(err, "revoke access key", "accessKey", name, "reason", why)
		return
	}
	if err == nil {
		s.audit.Info("revoked access key", "accessKey", name, "reason", why)
	}
}

// keySweepEvery is how often keys scoped to deleted virtual clusters are
// looked for; a request with one revokes it at once.
const keySweepEvery = 30 * time.Second

// revokeOrphanedKeys revokes the keys scoped to a virtual cluster that is
// gone, or to a cluster no longer connected. A cluster that cannot be
// read now is left for the next sweep.
func (s *Server) revokeOrphanedKeys(ctx context.Context) {
	list := &storagev1.AccessKeyList{}
	if err := s.cache.List(ctx, list); err != nil {
		return
	}
	byCluster := map[string][]*storagev1.AccessKey{}
	for i := range list.Items {
		if sc := keyScope(&list.Items[i]); sc != nil {
			byCluster[sc.Cluster] = append(byCluster[sc.Cluster], &list.Items[i])
		}
	}
	for cluster, keys := range byCluster {
		uids, err := s.virtualClusterUIDs(ctx, cluster)
		if err != nil {
			continue
		}
		for _, k := range keys {
			sc := keyScope(k)
			uid, ok := uids[types.NamespacedName{Namespace: sc.Namespace, Name: sc.Name}]
			if !ok || (sc.UID != "" && uid != sc.UID) {
				s.revokeAccessKey(ctx, k.Name, "its virtual cluster "+scopeString(sc)+" was deleted")
			}
		}
	}
}

// virtualClusterUIDs lists the virtual clusters of cluster: none if it is
// not connected.
func (s *Server) virtualClusterUIDs(ctx context.Context, cluster string) (map[types.NamespacedName]types.UID, error) {
	uids := map[types.NamespacedName]types.UID{}
	c := &storagev1.Cluster{}
	if err := s.cache.Get(ctx, types.NamespacedName{Name: cluster}, c); err != nil {
		if apierrors.IsNotFound(err) {
			return uids, nil
		}
		return nil, err
	}
	cc, err := s.clusters.get(ctx, c)
	if err != nil {
		return nil, err
	}
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(storagev1.GroupVersion.WithKind("VirtualClusterList"))
	if err := cc.client.List(ctx, list); err != nil {
		return nil, err
	}
	for _, vc := range list.Items {
		uids[types.NamespacedName{Namespace: vc.Namespace, Name: vc.Name}] = vc.UID
	}
	return uids, nil
}
