// Package server is the Sublet platform server: it authenticates users by
// access key and proxies them, impersonated, to connected host clusters
// (/kubernetes/cluster/CLUSTER/…) and, after an RBAC check on the host, to
// virtual clusters (/kubernetes/virtualcluster/CLUSTER/NAMESPACE/NAME/…).
// State lives in a management cluster as storage.loft.sh/v1 objects.
package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/utils/keymutex"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/kubeproxy"
	"github.com/sublet-dev/sublet/internal/platformapi"
	"github.com/sublet-dev/sublet/internal/ui"
)

// Server serves the platform API and proxies.
type Server struct {
	mgmt     client.Client        // uncached, for writes and Secrets
	kube     kubernetes.Interface // the management cluster, for access reviews
	cache    cache.Cache          // AccessKeys and Clusters
	clusters *clusterConfigs
	// audit holds audit records only; log is the operational log.
	audit *slog.Logger
	log   klog.Logger
	mux   *http.ServeMux
	// serverNames: TLSConfig issues certificates for virtual clusters'
	// server names.
	serverNames bool
	// moveRegistry is the OCI repository prefix moves go through by
	// default (/api/v1/info), or "".
	moveRegistry string
	activity     *activity
	// caPEM is the CA clients trust for this server, when it has its own
	// (kubeconfigs the UI hands out carry it).
	caPEM []byte
	// limits bound what one user may spend; limiter holds their buckets.
	limits  Limits
	limiter *limiter
	// keyCreations are one at a time per user, so two at once cannot
	// both pass the cap.
	keyCreations keymutex.KeyMutex
}

// New connects to the management cluster and prepares the handlers; Run
// serves them. Limits left zero get their defaults.
// SetMoveRegistry makes prefix (REGISTRY/PATH) the repository prefix that
// /api/v1/info tells clients moves go through. Call it before Start.
func (s *Server) SetMoveRegistry(prefix string) { s.moveRegistry = prefix }

func New(ctx context.Context, mgmtCfg *rest.Config, audit *slog.Logger, limits Limits) (*Server, error) {
	limits = limits.complete()
	if err := limits.Validate(); err != nil {
		return nil, err
	}
	// Requests read cluster secrets here; the default 5 per second would
	// queue them.
	mgmtCfg = rest.CopyConfig(mgmtCfg)
	mgmtCfg.QPS, mgmtCfg.Burst = 500, 1000
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := storagev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := cache.New(mgmtCfg, cache.Options{Scheme: scheme, ByObject: map[client.Object]cache.ByObject{
		&storagev1.AccessKey{}: {}, &storagev1.Cluster{}: {},
	}})
	if err != nil {
		return nil, err
	}
	if err := c.IndexField(ctx, &storagev1.AccessKey{}, keyHashIndex, func(o client.Object) []string {
		return []string{o.(*storagev1.AccessKey).Spec.KeySHA256}
	}); err != nil {
		return nil, err
	}
	if err := c.IndexField(ctx, &storagev1.AccessKey{}, keyUserIndex, func(o client.Object) []string {
		return []string{o.(*storagev1.AccessKey).Spec.User}
	}); err != nil {
		return nil, err
	}
	mgmt, err := client.New(mgmtCfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(mgmtCfg)
	if err != nil {
		return nil, err
	}
	log := klog.FromContext(ctx).WithName("server")
	s := &Server{mgmt: mgmt, kube: kube, cache: c, audit: audit, log: log, mux: http.NewServeMux(), activity: newActivity(log),
		limits: limits, limiter: newLimiter(limits), keyCreations: keymutex.NewHashed(0)}
	s.clusters = &clusterConfigs{mgmt: mgmt, configs: map[string]*clusterConfig{}, limiter: s.limiter}
	s.routes()
	return s, nil
}

// Start runs the cache; it returns once the cache is synced. Connected
// clusters' status is then kept up to date in the background.
func (s *Server) Start(ctx context.Context) error {
	go func() { _ = s.cache.Start(ctx) }()
	if !s.cache.WaitForCacheSync(ctx) {
		return errors.New("management cluster: caches did not sync")
	}
	// A newly connected cluster gets its status at once, then every
	// clusterStatusEvery with the others.
	inf, err := s.cache.GetInformer(ctx, &storagev1.Cluster{})
	if err != nil {
		return err
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{AddFunc: func(obj interface{}) {
		if c, ok := obj.(*storagev1.Cluster); ok {
			go s.updateOneClusterStatus(ctx, c.DeepCopy())
		}
	}}); err != nil {
		return err
	}
	go wait.UntilWithContext(ctx, s.updateClusterStatus, clusterStatusEvery)
	go wait.UntilWithContext(ctx, s.revokeOrphanedKeys, keySweepEvery)
	go s.activity.keepOpenAlive(ctx)
	return nil
}

// clusterStatusEvery is how often connected clusters are probed.
const clusterStatusEvery = 30 * time.Second

// updateClusterStatus probes each connected cluster and records whether
// the server reaches it, and its version.
func (s *Server) updateClusterStatus(ctx context.Context) {
	list := &storagev1.ClusterList{}
	if err := s.cache.List(ctx, list); err != nil {
		return
	}
	for i := range list.Items {
		s.updateOneClusterStatus(ctx, list.Items[i].DeepCopy())
	}
}

// updateOneClusterStatus probes cluster c and records the result.
func (s *Server) updateOneClusterStatus(ctx context.Context, c *storagev1.Cluster) {
	st := storagev1.ClusterStatus{Phase: "Ready"}
	cc, err := s.clusters.get(ctx, c)
	if err == nil {
		var v *version.Info
		if v, err = cc.kube.Discovery().ServerVersion(); err == nil {
			st.KubernetesVersion = v.GitVersion
			s.shareSnapshotKey(ctx, cc)
		}
	}
	if err != nil {
		st = storagev1.ClusterStatus{Phase: "Unreachable", Message: err.Error()}
	}
	if st != c.Status {
		c.Status = st
		_ = s.mgmt.Status().Update(ctx, c)
	}
}

// Serve serves on l with TLS config tlsCfg until ctx ends.
func (s *Server) Serve(ctx context.Context, l net.Listener, tlsCfg *tls.Config) error {
	srv := &http.Server{Handler: s, TLSConfig: tlsCfg, ReadHeaderTimeout: 30 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	err := srv.ServeTLS(l, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	s.mux.HandleFunc("/kubernetes/cluster/{cluster}/{rest...}", s.authenticated(s.proxyCluster))
	s.mux.HandleFunc("/kubernetes/virtualcluster/{cluster}/{namespace}/{name}/{rest...}", s.authenticatedVirtual(s.proxyVirtualCluster))
	s.mux.HandleFunc("GET /api/v1/whoami", s.authenticated(s.whoami))
	s.mux.HandleFunc("GET /api/v1/info", s.authenticated(s.info))
	s.mux.HandleFunc("GET /api/v1/clusters", s.authenticated(s.listClusters))
	s.mux.HandleFunc("GET /api/v1/virtualclusters", s.authenticated(s.listVirtualClusters))
	s.apiRoutes()
	s.uiRoutes()
}

// uiRoutes mounts the web UI at its paths. It calls this server, in
// process, as its users.
func (s *Server) uiRoutes() {
	u, err := ui.New(ui.Options{API: s, SessionsPerUser: s.limits.SessionsPerUser, CA: func() []byte { return s.caPEM }})
	if err != nil {
		panic(err) // the embedded files are part of the binary
	}
	for _, p := range u.Patterns() {
		s.mux.Handle(p, u)
	}
}

// statusRecorder writes the request's audit record as soon as its status
// is known, so a watch or log stream is recorded when it starts.
type statusRecorder struct {
	http.ResponseWriter
	status int
	record func(status int)
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
		r.record(code)
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	return r.ResponseWriter.Write(b)
}

// Flush lets watches and log streams through.
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection (upgrades).
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// ServeHTTP serves a request and writes one audit record for it: user,
// verb, path, status.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	box := &userBox{}
	// A request this server makes to itself while serving another (the
	// web UI's calls to the API) names its user in that one's record too.
	outer, _ := r.Context().Value(userHolder{}).(*userBox)
	record := func(status int) {
		name := ""
		if box.user != nil {
			name = box.user.Name
		}
		attrs := []any{"user", name, "verb", verbOf(r), "method", r.Method, "path", r.URL.Path,
			"query", r.URL.RawQuery, "status", status, "ms_to_status", time.Since(start).Milliseconds(), "remote", r.RemoteAddr}
		if r.TLS != nil && r.TLS.ServerName != "" {
			attrs = append(attrs, "serverName", r.TLS.ServerName)
		}
		if box.user != nil && box.user.Key != "" {
			attrs = append(attrs, "accessKey", box.user.Key)
		}
		if box.virtual != "" {
			attrs = append(attrs, "virtualCluster", box.virtual, "form", box.form)
		}
		if box.as != nil {
			attrs = append(attrs, "impersonatedUser", box.as.GetName(), "impersonatedGroups", box.as.GetGroups())
		}
		s.audit.Info("request", attrs...)
	}
	rec := &statusRecorder{ResponseWriter: w, record: record}
	r = r.WithContext(context.WithValue(r.Context(), userHolder{}, box))
	s.handlerFor(r).ServeHTTP(rec, r)
	if outer != nil && outer.user == nil {
		outer.user = box.user
	}
	if rec.status == 0 {
		// Nothing written (an upgraded connection, or an empty reply).
		status := http.StatusOK
		if r.Header.Get("Upgrade") != "" {
			status = http.StatusSwitchingProtocols
		}
		record(status)
	}
}

// userHolder keys the box in a request's context where authentication
// leaves the user, for the audit record.
type userHolder struct{}
type userBox struct {
	user *User
	as   user.Info // whom the request was served as, when impersonating
	// virtual is the virtual cluster served (CLUSTER/NAMESPACE/NAME), and
	// form how the request named it (path, serverName or key).
	virtual, form string
	// keyed is the user of bearer token keyedToken, once looked up.
	keyed      *User
	keyedToken string
}

// noteImpersonated records, for the audit record, whom r is served as.
func noteImpersonated(r *http.Request, as user.Info) {
	if box, ok := r.Context().Value(userHolder{}).(*userBox); ok {
		box.as = as
	}
}

// authenticated wraps h: 401 without a valid key, 403 with a key scoped
// to a virtual cluster (good for that cluster's API alone), else h with
// the user.
func (s *Server) authenticated(h func(w http.ResponseWriter, r *http.Request, u *User)) http.HandlerFunc {
	return s.authenticatedFor(false, "", h)
}

// authenticatedVirtual wraps a handler of a virtual cluster's API: keys
// scoped to a virtual cluster pass too, and proxyVirtual checks the scope.
func (s *Server) authenticatedVirtual(h func(w http.ResponseWriter, r *http.Request, u *User)) http.HandlerFunc {
	return s.authenticatedFor(true, "", h)
}

// authenticatedFor wraps h: 401 without a valid key (with hint appended
// to the reason), 403 with a scoped key unless scoped, else h with the
// user.
func (s *Server) authenticatedFor(scoped bool, hint string, h func(w http.ResponseWriter, r *http.Request, u *User)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, err := s.authenticate(r.Context(), r)
		// A bad key counts against the client's address and the key.
		if token := bearerToken(r); errors.Is(err, errUnauthorized) && token != "" {
			if writeIfLimited(w, s.limiter.failedLogin(r.RemoteAddr, token)) {
				return
			}
		}
		if err != nil {
			reason := "a valid access key is required (Authorization: Bearer KEY); create one with 'sublet create accesskey'"
			if !errors.Is(err, errUnauthorized) {
				reason = "authentication failed: " + err.Error()
			}
			writeStatus(w, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, reason+hint)
			return
		}
		if box, ok := r.Context().Value(userHolder{}).(*userBox); ok {
			box.user = u
		}
		if u.Scope != nil && !scoped {
			refuseScoped(w, u)
			return
		}
		h(w, r, u)
	}
}

// verbOf is the Kubernetes verb of a proxied request, roughly.
func verbOf(r *http.Request) string {
	switch r.Method {
	case http.MethodGet:
		if r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1" {
			return "watch"
		}
		return "get"
	case http.MethodPost:
		return "create"
	case http.MethodPut:
		return "update"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		return "delete"
	}
	return strings.ToLower(r.Method)
}

// writeStatus writes a Kubernetes Status error, which kubectl prints.
func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	kubeproxy.WriteStatus(w, code, reason, msg)
}

func writeJSON(w http.ResponseWriter, v interface{}) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) whoami(w http.ResponseWriter, _ *http.Request, u *User) { writeJSON(w, u) }

func (s *Server) listClusters(w http.ResponseWriter, r *http.Request, _ *User) {
	list := &storagev1.ClusterList{}
	if err := s.cache.List(r.Context(), list); err != nil {
		writeStatus(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, err.Error())
		return
	}
	out := []platformapi.ClusterInfo{}
	for _, c := range list.Items {
		out = append(out, platformapi.ClusterInfo{Name: c.Name, DisplayName: c.Spec.DisplayName, Phase: c.Status.Phase, Message: c.Status.Message, Version: c.Status.KubernetesVersion})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, out)
}

// listVirtualClusters lists, across clusters, the virtual clusters the
// user may get.
func (s *Server) listVirtualClusters(w http.ResponseWriter, r *http.Request, u *User) {
	clusters := &storagev1.ClusterList{}
	if err := s.cache.List(r.Context(), clusters); err != nil {
		writeStatus(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, err.Error())
		return
	}
	out := []platformapi.VirtualClusterInfo{}
	for _, c := range clusters.Items {
		cc, err := s.clusters.get(r.Context(), &c)
		if err != nil {
			continue
		}
		vcs := &storagev1.VirtualClusterList{}
		if err := cc.client.List(r.Context(), vcs); err != nil {
			continue
		}
		for _, vc := range vcs.Items {
			ok, err := cc.mayList(r.Context(), u, vc.Namespace, vc.Name)
			if writeIfLimited(w, err) {
				return
			}
			if ok {
				info := platformapi.VirtualClusterInfo{Cluster: c.Name, Namespace: vc.Namespace, Name: vc.Name,
					Phase: string(vc.Status.Phase), Version: vc.Status.KubernetesVersion, Created: vc.CreationTimestamp.UTC().Format(time.RFC3339)}
				if vc.Spec.TemplateRef != nil {
					info.Template = vc.Spec.TemplateRef.Name
				}
				if t := vc.Status.SleepingSince; t != nil {
					info.SleepingSince = t.UTC().Format(time.RFC3339)
				}
				if t := vc.Status.LastActivity; t != nil {
					info.LastActivity = t.UTC().Format(time.RFC3339)
				}
				out = append(out, info)
			}
		}
	}
	writeJSON(w, out)
}
