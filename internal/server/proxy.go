package server

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/restconfig"
)

// recheckEvery is how long the server trusts what it read about a
// cluster, a ready virtual cluster or an access review's decision before
// reading again: a proxied request then costs no extra round trips, and a
// busy client no review per request. (The API server's own webhook
// authorizer caches decisions for minutes.)
const recheckEvery = 5 * time.Second

// clusterConfig is a connected host cluster as the server reaches it.
type clusterConfig struct {
	name    string
	version string // of the kubeconfig secret
	checked time.Time
	backend *backend
	client  client.Client
	kube    kubernetes.Interface

	mu       sync.Mutex
	virtuals map[string]*virtualBackend // by namespace/name
	reviews  map[string]review          // by user, groups, namespace, name
	limiter  *limiter
}

type review struct {
	allowed bool
	at      time.Time
}

type virtualBackend struct {
	checked time.Time
	vc      *storagev1.VirtualCluster // nil: it does not exist
	version string                    // of its kubeconfig secret
	backend *backend
}

// clusterConfigs caches clusterConfig by cluster name, rebuilt when the
// cluster's kubeconfig secret changes.
type clusterConfigs struct {
	mgmt    client.Client
	limiter *limiter
	mu      sync.Mutex
	configs map[string]*clusterConfig
}

func (cs *clusterConfigs) get(ctx context.Context, c *storagev1.Cluster) (*clusterConfig, error) {
	cs.mu.Lock()
	if cc, ok := cs.configs[c.Name]; ok && time.Since(cc.checked) < recheckEvery {
		cs.mu.Unlock()
		return cc, nil
	}
	cs.mu.Unlock()
	secret := &corev1.Secret{}
	if err := cs.mgmt.Get(ctx, types.NamespacedName{Namespace: c.Spec.Config.Namespace, Name: c.Spec.Config.Name}, secret); err != nil {
		return nil, fmt.Errorf("kubeconfig of cluster %s: %w", c.Name, err)
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cc, ok := cs.configs[c.Name]; ok && cc.version == secret.ResourceVersion {
		cc.checked = time.Now()
		return cc, nil
	}
	cfg, err := restconfig.FromKubeconfig(secret.Data["config"], c.Annotations[storagev1.AnnotationAllowExecPlugin] == "true")
	if err != nil {
		return nil, fmt.Errorf("kubeconfig of cluster %s (secret %s/%s): %w", c.Name, secret.Namespace, secret.Name, err)
	}
	// Every proxied request to a virtual cluster costs an access review and
	// two reads here; client-go's default of 5 per second would queue them.
	cfg.QPS, cfg.Burst = 500, 1000
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
	cc := &clusterConfig{name: c.Name, version: secret.ResourceVersion, checked: time.Now(), backend: b, client: cl, kube: kube,
		virtuals: map[string]*virtualBackend{}, reviews: map[string]review{}, limiter: cs.limiter}
	cs.configs[c.Name] = cc
	return cc, nil
}

// mayGetVirtualCluster asks the cluster whether u may get virtualclusters
// named name in namespace (a Role there or a ClusterRole both count); ""
// for name asks about every one in namespace, and "" for both about every
// one in the cluster. A decision, grant or denial, is reused for
// recheckEvery; a review asked for is one of u's access reviews, refused
// with a *limitError past u's limit.
func (cc *clusterConfig) mayGetVirtualCluster(ctx context.Context, u *User, namespace, name string) (bool, error) {
	key := reviewKey(u, namespace, name)
	cc.mu.Lock()
	r, ok := cc.reviews[key]
	cc.mu.Unlock()
	if ok && time.Since(r.at) < recheckEvery {
		return r.allowed, nil
	}
	if err := cc.limiter.review(u); err != nil {
		return false, err
	}
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
	cc.mu.Lock()
	cc.remember(key, review{allowed: res.Status.Allowed, at: time.Now()})
	cc.mu.Unlock()
	return res.Status.Allowed, nil
}

// mayList reports whether u may get virtual cluster namespace/name, asking
// first about every one in the cluster, then about every one in namespace:
// listing them costs a review per namespace, not one per virtual cluster.
func (cc *clusterConfig) mayList(ctx context.Context, u *User, namespace, name string) (bool, error) {
	for _, q := range [][2]string{{"", ""}, {namespace, ""}, {namespace, name}} {
		if ok, err := cc.mayGetVirtualCluster(ctx, u, q[0], q[1]); ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

// reviewKey identifies a review's question: no two questions share one,
// whatever their names hold.
func reviewKey(u *User, namespace, name string) string {
	parts := append([]string{u.Name, namespace, name}, u.Groups...)
	for i, p := range parts {
		parts[i] = strconv.Quote(p)
	}
	return strings.Join(parts, " ")
}

// maxReviews bounds the decisions a cluster's review cache holds, so many
// users or names cannot grow it without limit.
const maxReviews = 4096

// remember caches a decision; cc.mu is held. When full, it drops expired
// decisions, and everything if that is not enough.
func (cc *clusterConfig) remember(key string, r review) {
	if len(cc.reviews) >= maxReviews {
		for k, old := range cc.reviews {
			if time.Since(old.at) >= recheckEvery {
				delete(cc.reviews, k)
			}
		}
		if len(cc.reviews) >= maxReviews {
			clear(cc.reviews)
		}
	}
	cc.reviews[key] = r
}

// virtual returns virtual cluster namespace/name (nil if it does not
// exist) and, once it published its admin kubeconfig, its backend.
func (cc *clusterConfig) virtual(ctx context.Context, namespace, name string) (*storagev1.VirtualCluster, *backend, error) {
	key := namespace + "/" + name
	cc.mu.Lock()
	v, ok := cc.virtuals[key]
	cc.mu.Unlock()
	// Only a ready one is trusted for a while: one coming up must be
	// reachable as soon as it is.
	if ok && v.backend != nil && v.vc != nil && v.vc.Status.Phase == storagev1.PhaseReady && time.Since(v.checked) < recheckEvery {
		return v.vc, v.backend, nil
	}
	vc := &storagev1.VirtualCluster{}
	if err := cc.client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, vc); err != nil {
		if !apierrors.IsNotFound(err) {
			return nil, nil, err
		}
		vc = nil
	}
	nv := &virtualBackend{checked: time.Now(), vc: vc}
	if vc != nil {
		secretName := vc.Status.KubeconfigSecret
		if secretName == "" {
			secretName = storagev1.KubeconfigSecretName(vc.Name)
		}
		secret, err := cc.kube.CoreV1().Secrets(namespace).Get(ctx, secretName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, nil, err
		case ok && v.version == secret.ResourceVersion:
			nv.version, nv.backend = v.version, v.backend
		default:
			// The tenant's namespace is not ours alone: use only the
			// Secret the agent made for this very VirtualCluster, with
			// inline credentials.
			if !agentOwned(secret, vc) {
				return nil, nil, fmt.Errorf("secret %s/%s is not the agent's kubeconfig of virtual cluster %s (no controller reference to it); delete it and the agent writes it again", namespace, secretName, vc.Name)
			}
			cfg, err := restconfig.FromInlineKubeconfig(secret.Data["config"])
			if err != nil {
				return nil, nil, fmt.Errorf("kubeconfig of virtual cluster %s (secret %s/%s): %w", vc.Name, namespace, secretName, err)
			}
			b, err := newBackend(cfg)
			if err != nil {
				return nil, nil, err
			}
			nv.version, nv.backend = secret.ResourceVersion, b
		}
	}
	cc.mu.Lock()
	cc.virtuals[key] = nv
	cc.mu.Unlock()
	return nv.vc, nv.backend, nil
}

// virtualFor is virtual, read again when the cached one is not the one
// u's key is scoped to: the cluster may have been made again (a restore)
// since it was cached, and only what it is now revokes a key.
func (cc *clusterConfig) virtualFor(ctx context.Context, u *User, namespace, name string) (*storagev1.VirtualCluster, *backend, error) {
	vc, b, err := cc.virtual(ctx, namespace, name)
	if err != nil || u.Scope == nil || u.Scope.UID == "" || vc == nil || vc.UID == u.Scope.UID {
		return vc, b, err
	}
	cc.mu.Lock()
	delete(cc.virtuals, namespace+"/"+name)
	cc.mu.Unlock()
	return cc.virtual(ctx, namespace, name)
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
	serveAs(cc.backend, w, r, r.PathValue("rest"), actingUser(u))
}

// proxyVirtualCluster: /kubernetes/virtualcluster/CLUSTER/NS/NAME/… → the
// virtual cluster's API (the seed's path form).
func (s *Server) proxyVirtualCluster(w http.ResponseWriter, r *http.Request, u *User) {
	s.proxyVirtual(w, r, u, formPath, r.PathValue("cluster"), r.PathValue("namespace"), r.PathValue("name"), r.PathValue("rest"))
}

// proxyVirtual proxies r to path on virtual cluster ns/name of cluster
// clusterName, as u with cluster-admin rights there, if the host cluster
// lets u get that VirtualCluster and u's key is not scoped to another one.
// Every form of a virtual cluster's endpoint (form: path, server name,
// scoped key) comes here, so each is gated, audited and counted for sleep
// mode alike.
func (s *Server) proxyVirtual(w http.ResponseWriter, r *http.Request, u *User, form, clusterName, ns, name, path string) {
	if box, ok := r.Context().Value(userHolder{}).(*userBox); ok {
		box.virtual, box.form = clusterName+"/"+ns+"/"+name, form
	}
	if u.Scope != nil && !sameVirtualCluster(u.Scope, &storagev1.VirtualClusterScope{Cluster: clusterName, Namespace: ns, Name: name}) {
		writeStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden, fmt.Sprintf(
			"access key %s is scoped to virtual cluster %s and is not good for virtual cluster %s/%s of cluster %s; use a key of your own or one scoped to that cluster ('sublet create accesskey --vcluster %s --space %s --cluster %s')",
			u.Key, scopeString(u.Scope), ns, name, clusterName, name, ns, clusterName))
		return
	}
	cc := s.cluster(w, r, clusterName)
	if cc == nil {
		return
	}
	ok, err := cc.mayGetVirtualCluster(r.Context(), u, ns, name)
	switch {
	case writeIfLimited(w, err):
		return
	case err != nil:
		writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "access review on cluster "+clusterName+": "+err.Error())
		return
	case !ok:
		writeStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden, fmt.Sprintf(
			"user %q may not use virtual cluster %s/%s in cluster %s: it needs permission to get virtualclusters.storage.loft.sh in namespace %s (a Role there or a ClusterRole; a new one counts within %s)",
			u.Name, ns, name, clusterName, ns, shortDuration(recheckEvery)))
		return
	}
	vc, b, err := cc.virtualFor(r.Context(), u, ns, name)
	switch {
	case err != nil:
		writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, err.Error())
		return
	case u.Scope != nil && u.Scope.UID != "" && (vc == nil || vc.UID != u.Scope.UID):
		s.revokeOrphan(w, r, u)
		return
	case vc == nil:
		writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("virtual cluster %s/%s does not exist in cluster %s", ns, name, clusterName))
		return
	}
	if refuseMoving(w, vc, nil) {
		return
	}
	target := activityTarget{cc: cc, ns: ns, name: name}
	counts := r.Header.Get(storagev1.HeaderSleepModeIgnore) != "true"
	if isAsleep := asleep(vc); isAsleep || starting(vc) || b == nil {
		// Asleep: wake it and hold the request until it answers; starting
		// (a wake under way, or a new cluster): hold it too.
		if vc, b = s.awaken(r.Context(), w, target, vc, isAsleep, counts, clusterName); vc == nil {
			return
		}
	} else if vc.Status.Phase != storagev1.PhaseReady {
		writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, fmt.Sprintf(
			"virtual cluster %s/%s is not ready (phase %q): %s", ns, name, vc.Status.Phase, vc.Status.Message))
		return
	}
	if counts {
		target.every = recordEvery(vc)
		defer s.activity.begin(r.Context(), target, vc)()
	}
	// Users who pass the gate are cluster-admin of the virtual cluster.
	serveAs(b, w, r, path, actingUser(u, user.SystemPrivilegedGroup))
}

// awaken wakes virtual cluster vc (target) of cluster clusterName, or
// waits while it starts, and returns it with its backend; or answers w
// why it cannot (nil): a request that does not count does not wake it, nor
// does one to a cluster put to sleep with --prevent-wakeup or held by a
// move.
func (s *Server) awaken(ctx context.Context, w http.ResponseWriter, target activityTarget, vc *storagev1.VirtualCluster, isAsleep, counts bool, clusterName string) (*storagev1.VirtualCluster, *backend) {
	ns, name := target.ns, target.name
	switch {
	case isAsleep && !counts:
		writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, fmt.Sprintf(
			"virtual cluster %s/%s is sleeping; a request with %s: true does not wake it", ns, name, storagev1.HeaderSleepModeIgnore))
		return nil, nil
	case isAsleep && vc.Annotations[storagev1.AnnotationPreventWakeup] == "true":
		writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, fmt.Sprintf(
			"virtual cluster %s/%s is sleeping and was put to sleep with --prevent-wakeup: only 'sublet wakeup vcluster %s' wakes it", ns, name, name))
		return nil, nil
	case !isAsleep && !starting(vc) && vc.Status.Phase != storagev1.PhaseReady:
		writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, fmt.Sprintf(
			"virtual cluster %s/%s is not ready (phase %q): %s", ns, name, vc.Status.Phase, vc.Status.Message))
		return nil, nil
	}
	woken, b, err := s.activity.wake(ctx, target, isAsleep)
	if refuseMoving(w, vc, err) {
		return nil, nil
	}
	if err != nil {
		what := "start"
		if isAsleep {
			what = "wake"
		}
		writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, fmt.Sprintf(
			"virtual cluster %s/%s did not %s in time: %v; try again, or see 'kubectl describe virtualcluster %s -n %s' on cluster %s", ns, name, what, err, name, ns, clusterName))
		return nil, nil
	}
	return woken, b
}

// agentOwned reports whether secret is the one the agent publishes for vc:
// its managed-by label and a controller reference to vc's UID.
func agentOwned(secret *corev1.Secret, vc *storagev1.VirtualCluster) bool {
	if secret.Labels[storagev1.LabelManagedBy] != storagev1.AgentName {
		return false
	}
	ref := metav1.GetControllerOf(secret)
	return ref != nil && ref.UID == vc.UID && ref.Kind == "VirtualCluster"
}
