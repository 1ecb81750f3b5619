package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
)

// backend is an API server the server proxies to, with its credentials.
type backend struct {
	url *url.URL
	// transport carries the backend's credentials; upgrade does the same
	// over HTTP/1.1, which protocol upgrades (exec, port-forward) need.
	transport, upgrade http.RoundTripper
}

func newBackend(cfg *rest.Config) (*backend, error) {
	u, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, err
	}
	t, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := rest.TLSConfigFor(cfg)
	if err != nil {
		return nil, err
	}
	base := &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: tlsCfg, ForceAttemptHTTP2: false}
	if base.TLSClientConfig != nil {
		base.TLSClientConfig = base.TLSClientConfig.Clone()
		base.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	up, err := rest.HTTPWrappersForConfig(cfg, base)
	if err != nil {
		return nil, err
	}
	return &backend{url: u, transport: t, upgrade: up}, nil
}

// serve proxies r to path on the backend as user u (with extra groups),
// streaming responses and protocol upgrades.
func (b *backend) serve(w http.ResponseWriter, r *http.Request, path string, u *User, extraGroups ...string) {
	transport := b.transport
	if r.Header.Get("Upgrade") != "" {
		transport = b.upgrade
	}
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = b.url.Scheme, b.url.Host
			pr.Out.URL.Path = strings.TrimSuffix(b.url.Path, "/") + "/" + strings.TrimPrefix(path, "/")
			pr.Out.URL.RawPath = ""
			pr.Out.Host = b.url.Host
			// The caller's credentials and any impersonation it asked for
			// end here; the backend sees the platform's user.
			pr.Out.Header.Del("Authorization")
			for k := range pr.Out.Header {
				if strings.HasPrefix(strings.ToLower(k), "impersonate-") {
					pr.Out.Header.Del(k)
				}
			}
			pr.Out.Header.Set("Impersonate-User", u.Name)
			for _, g := range append(append([]string(nil), u.Groups...), extraGroups...) {
				pr.Out.Header.Add("Impersonate-Group", g)
			}
		},
		Transport:     transport,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeStatus(w, http.StatusBadGateway, metav1.StatusReasonServiceUnavailable, "backend unreachable: "+err.Error())
		},
	}
	p.ServeHTTP(w, r)
}

// clusterConfig is a connected host cluster as the server reaches it.
type clusterConfig struct {
	version string // of the kubeconfig secret
	backend *backend
	client  client.Client
	kube    kubernetes.Interface

	mu       sync.Mutex
	virtuals map[string]*virtualBackend // by namespace/name
}

type virtualBackend struct {
	version string // of the vc-NAME secret
	backend *backend
}

// clusterConfigs caches clusterConfig by cluster name, rebuilt when the
// cluster's kubeconfig secret changes.
type clusterConfigs struct {
	mgmt    client.Client
	mu      sync.Mutex
	configs map[string]*clusterConfig
}

func (cs *clusterConfigs) get(ctx context.Context, c *storagev1.Cluster) (*clusterConfig, error) {
	secret := &corev1.Secret{}
	if err := cs.mgmt.Get(ctx, types.NamespacedName{Namespace: c.Spec.Config.Namespace, Name: c.Spec.Config.Name}, secret); err != nil {
		return nil, fmt.Errorf("kubeconfig of cluster %s: %w", c.Name, err)
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cc, ok := cs.configs[c.Name]; ok && cc.version == secret.ResourceVersion {
		return cc, nil
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(secret.Data["config"])
	if err != nil {
		return nil, fmt.Errorf("kubeconfig of cluster %s: %w", c.Name, err)
	}
	b, err := newBackend(cfg)
	if err != nil {
		return nil, err
	}
	cl, err := client.New(cfg, client.Options{Scheme: cs.mgmt.Scheme()})
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	cc := &clusterConfig{version: secret.ResourceVersion, backend: b, client: cl, kube: kube, virtuals: map[string]*virtualBackend{}}
	cs.configs[c.Name] = cc
	return cc, nil
}

// mayGetVirtualCluster asks the cluster whether u may get virtualclusters
// named name in namespace (a Role there or a ClusterRole both count).
func (cc *clusterConfig) mayGetVirtualCluster(ctx context.Context, u *User, namespace, name string) (bool, error) {
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: u.Name, Groups: u.Groups,
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: namespace, Verb: "get", Group: storagev1.GroupVersion.Group, Version: storagev1.GroupVersion.Version,
			Resource: "virtualclusters", Name: name,
		},
	}}
	res, err := cc.kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return res.Status.Allowed, nil
}

// virtual returns the backend of virtual cluster namespace/name, from its
// published admin kubeconfig.
func (cc *clusterConfig) virtual(ctx context.Context, vc *storagev1.VirtualCluster) (*backend, error) {
	name := vc.Status.KubeconfigSecret
	if name == "" {
		name = "vc-" + vc.Name
	}
	secret, err := cc.kube.CoreV1().Secrets(vc.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	key := vc.Namespace + "/" + vc.Name
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if v, ok := cc.virtuals[key]; ok && v.version == secret.ResourceVersion {
		return v.backend, nil
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(secret.Data["config"])
	if err != nil {
		return nil, err
	}
	b, err := newBackend(cfg)
	if err != nil {
		return nil, err
	}
	cc.virtuals[key] = &virtualBackend{version: secret.ResourceVersion, backend: b}
	return b, nil
}

// cluster looks up a connected cluster by name: 404 if unknown.
func (s *Server) cluster(w http.ResponseWriter, r *http.Request, name string) *clusterConfig {
	c := &storagev1.Cluster{}
	if err := s.cache.Get(r.Context(), types.NamespacedName{Name: name}, c); err != nil {
		if apierrors.IsNotFound(err) {
			writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("cluster %q is not connected (see 'sublet list clusters')", name))
		} else {
			writeStatus(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, err.Error())
		}
		return nil
	}
	cc, err := s.clusters.get(r.Context(), c)
	if err != nil {
		writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, err.Error())
		return nil
	}
	return cc
}

// proxyCluster: /kubernetes/cluster/CLUSTER/… → the host cluster's API as
// the user, so the host's RBAC decides.
func (s *Server) proxyCluster(w http.ResponseWriter, r *http.Request, u *User) {
	cc := s.cluster(w, r, r.PathValue("cluster"))
	if cc == nil {
		return
	}
	cc.backend.serve(w, r, r.PathValue("rest"), u)
}

// proxyVirtualCluster: /kubernetes/virtualcluster/CLUSTER/NS/NAME/… → the
// virtual cluster's API, as the user with cluster-admin rights there, if
// the host cluster lets the user get that VirtualCluster.
func (s *Server) proxyVirtualCluster(w http.ResponseWriter, r *http.Request, u *User) {
	clusterName, ns, name := r.PathValue("cluster"), r.PathValue("namespace"), r.PathValue("name")
	cc := s.cluster(w, r, clusterName)
	if cc == nil {
		return
	}
	ok, err := cc.mayGetVirtualCluster(r.Context(), u, ns, name)
	if err != nil {
		writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "access review on cluster "+clusterName+": "+err.Error())
		return
	}
	if !ok {
		writeStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden, fmt.Sprintf(
			"user %q may not use virtual cluster %s/%s in cluster %s: it needs permission to get virtualclusters.storage.loft.sh in namespace %s (a Role there or a ClusterRole)",
			u.Name, ns, name, clusterName, ns))
		return
	}
	vc := &storagev1.VirtualCluster{}
	if err := cc.client.Get(r.Context(), types.NamespacedName{Namespace: ns, Name: name}, vc); err != nil {
		if apierrors.IsNotFound(err) {
			writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("virtual cluster %s/%s does not exist in cluster %s", ns, name, clusterName))
		} else {
			writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, err.Error())
		}
		return
	}
	b, err := cc.virtual(r.Context(), vc)
	if err != nil || vc.Status.Phase != storagev1.PhaseReady {
		writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, fmt.Sprintf(
			"virtual cluster %s/%s is not ready (phase %q): %s", ns, name, vc.Status.Phase, vc.Status.Message))
		return
	}
	// Users who pass the gate are cluster-admin of the virtual cluster.
	b.serve(w, r, r.PathValue("rest"), u, "system:masters")
}
