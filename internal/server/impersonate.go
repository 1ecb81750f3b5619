package server

import (
	"net/http"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/apiserver/pkg/endpoints/filters/impersonation"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"

	"github.com/sublet-dev/sublet/internal/kubeproxy"
)

// backend is an API server the server proxies to, and the authorizer that
// asks it (by SubjectAccessReview) what a user may do there.
type backend struct {
	*kubeproxy.Backend
	authz authorizer.Authorizer
}

func newBackend(cfg *rest.Config) (*backend, error) {
	b, err := kubeproxy.NewBackend(cfg)
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	// Grants are trusted as long as the server's other reviews; denials
	// are asked again at once, so a new RoleBinding takes effect.
	authz, err := authorizerfactory.DelegatingAuthorizerConfig{
		SubjectAccessReviewClient: kube.AuthorizationV1(),
		AllowCacheTTL:             recheckEvery,
		DenyCacheTTL:              0,
		WebhookRetryBackoff:       &wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Steps: 3},
	}.New()
	if err != nil {
		return nil, err
	}
	return &backend{Backend: b, authz: authz}, nil
}

// statusCodecs encode the API server's own Status errors (a refused
// impersonation answers exactly as kube-apiserver would).
var statusCodecs = serializer.NewCodecFactory(clientgoscheme.Scheme).WithoutConversion()

// serveAs proxies r to path on b as acting, the platform user as b's
// cluster knows them. When r carries impersonation headers (kubectl --as,
// --as-group, --as-uid), it goes as the identity they name instead, if and
// only if b's cluster allows acting to impersonate it: the API server's own
// impersonation filter decides, with b's SubjectAccessReviews as the
// authorizer, and answers a refusal with the API server's 403.
func serveAs(b *backend, w http.ResponseWriter, r *http.Request, path string, acting *user.DefaultInfo) {
	forward := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		as, _ := request.UserFrom(r.Context())
		if as.GetName() != acting.Name || !slices.Equal(as.GetGroups(), acting.Groups) {
			noteImpersonated(r, as)
		}
		b.Serve(w, r, path, nil, &transport.ImpersonationConfig{
			UserName: as.GetName(), UID: as.GetUID(), Groups: as.GetGroups(), Extra: as.GetExtra(),
		})
	})
	h := impersonation.WithImpersonation(forward, b.authz, statusCodecs)
	h.ServeHTTP(w, r.WithContext(request.WithUser(r.Context(), acting)))
}

// actingUser is u as a cluster knows them, with extra groups; no group is
// listed twice.
func actingUser(u *User, extraGroups ...string) *user.DefaultInfo {
	groups := []string{}
	for _, g := range append(append([]string(nil), u.Groups...), extraGroups...) {
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	return &user.DefaultInfo{Name: u.Name, Groups: groups}
}
