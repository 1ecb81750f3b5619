package server

import (
	"github.com/sublet-dev/sublet/internal/platformapi"

	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
)

// keyHashIndex indexes AccessKeys by spec.keySHA256.
const keyHashIndex = "spec.keySHA256"

// User is who a request is from: what /api/v1/whoami shows, and what the
// server keeps of the key for the keys it creates with it.
type User struct {
	platformapi.User
	// keyUID and keyExpires are the AccessKey's, for keys it creates.
	keyUID     types.UID
	keyExpires *time.Time
}

var errUnauthorized = errors.New("unauthorized")

// authenticate finds the AccessKey of the request's bearer token.
func (s *Server) authenticate(ctx context.Context, r *http.Request) (*User, error) {
	token := bearerToken(r)
	if token == "" {
		return nil, errUnauthorized
	}
	// handlerFor may have looked the key up already, to route the request.
	if box, ok := ctx.Value(userHolder{}).(*userBox); ok && box.keyed != nil && box.keyedToken == token {
		return box.keyed, nil
	}
	return s.authenticateKey(ctx, token)
}

// bearerToken is the request's bearer token, "" if it has none.
func bearerToken(r *http.Request) string {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return ""
	}
	return token
}

// authenticateKey finds the valid AccessKey whose key is token.
func (s *Server) authenticateKey(ctx context.Context, token string) (*User, error) {
	list := &storagev1.AccessKeyList{}
	if err := s.cache.List(ctx, list, client.MatchingFields{keyHashIndex: platformapi.HashKey(token)}); err != nil {
		return nil, err
	}
	for i := range list.Items {
		k := &list.Items[i]
		scope, ok := s.keyValid(ctx, k)
		if !ok {
			continue
		}
		u := &User{User: platformapi.User{Name: k.Spec.User, Groups: k.Spec.Groups, Key: k.Name, Scope: scope}, keyUID: k.UID}
		if k.Spec.Expiration != nil {
			u.keyExpires = &k.Spec.Expiration.Time
			u.Expiration = k.Spec.Expiration.UTC().Format(time.RFC3339)
		}
		return u, nil
	}
	return nil, errUnauthorized
}

// maxKeyChain bounds how many keys deep a key made with a key may be.
const maxKeyChain = 16

// keyValid reports whether k is unexpired and so is every key it was made
// with (its AccessKey owners, up the chain): revoking or the expiry of a
// key ends the keys made with it at once, before the garbage collector
// deletes them. It returns the key's scope too: its own, or the one of a
// key up the chain; a chain whose keys are scoped to different virtual
// clusters is not valid, so a key never reaches beyond the key it was
// made with.
func (s *Server) keyValid(ctx context.Context, k *storagev1.AccessKey) (*storagev1.VirtualClusterScope, bool) {
	var scope *storagev1.VirtualClusterScope
	for depth := 0; depth < maxKeyChain; depth++ {
		if k.Spec.Expiration != nil && !time.Now().Before(k.Spec.Expiration.Time) {
			return nil, false
		}
		if ks := keyScope(k); ks != nil {
			if scope != nil && !sameVirtualCluster(scope, ks) {
				return nil, false
			}
			if scope == nil {
				scope = ks
			}
		}
		ref := parentKey(k)
		if ref == nil {
			return scope, true
		}
		parent := &storagev1.AccessKey{}
		if err := s.cache.Get(ctx, types.NamespacedName{Name: ref.Name}, parent); err != nil || parent.UID != ref.UID {
			return nil, false
		}
		k = parent
	}
	return nil, false
}

// keyScope is the virtual cluster k is scoped to, nil if none.
func keyScope(k *storagev1.AccessKey) *storagev1.VirtualClusterScope {
	if k.Spec.Scope == nil {
		return nil
	}
	return k.Spec.Scope.VirtualCluster
}

// sameVirtualCluster reports whether a and b name one virtual cluster (a
// UID left out matches any).
func sameVirtualCluster(a, b *storagev1.VirtualClusterScope) bool {
	return a.Cluster == b.Cluster && a.Namespace == b.Namespace && a.Name == b.Name &&
		(a.UID == "" || b.UID == "" || a.UID == b.UID)
}

// parentKey returns the owner reference to the key k was made with.
func parentKey(k *storagev1.AccessKey) *metav1.OwnerReference {
	for i, ref := range k.OwnerReferences {
		if ref.Kind == "AccessKey" && ref.APIVersion == storagev1.GroupVersion.String() {
			return &k.OwnerReferences[i]
		}
	}
	return nil
}
