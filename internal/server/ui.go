package server

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/kubeversion"
	"github.com/sublet-dev/sublet/internal/sleepmode"
	"github.com/sublet-dev/sublet/internal/translate"
	"github.com/sublet-dev/sublet/internal/values"
)

// The web UI: server-rendered pages from files embedded in the binary, a
// little script for live updates. A session holds the user's access key in
// this server's memory only; every page and action is a call, with that
// key, to the same handlers the CLI uses (the API and the proxies), so the
// same authentication, RBAC gate and audit apply and no UI path goes
// around them.

//go:embed ui
var uiFiles embed.FS

// downloadLifetime is how long a kubeconfig made on the Connect page can
// be downloaded.
const downloadLifetime = 10 * time.Minute

type download struct {
	name    string
	data    []byte
	expires time.Time
}

type ui struct {
	pages    map[string]*template.Template
	static   http.Handler
	sessions *sessionStore
}

func newUI(sessionsPerUser int) (*ui, error) {
	u := &ui{pages: map[string]*template.Template{}, sessions: newSessionStore(sessionsPerUser)}
	funcs := template.FuncMap{"age": Age, "join": strings.Join}
	pages, err := fs.Glob(uiFiles, "ui/*.html")
	if err != nil {
		return nil, err
	}
	for _, p := range pages {
		name := strings.TrimSuffix(strings.TrimPrefix(p, "ui/"), ".html")
		if name == "base" {
			continue
		}
		t, err := template.New("base.html").Funcs(funcs).ParseFS(uiFiles, "ui/base.html", p)
		if err != nil {
			return nil, fmt.Errorf("ui page %s: %w", p, err)
		}
		u.pages[name] = t
	}
	static, err := fs.Sub(uiFiles, "ui/static")
	if err != nil {
		return nil, err
	}
	u.static = http.StripPrefix("/static/", http.FileServer(http.FS(static)))
	return u, nil
}

func (s *Server) uiRoutes() {
	u, err := newUI(s.limits.SessionsPerUser)
	if err != nil {
		panic(err) // the embedded files are part of the binary
	}
	s.ui = u
	s.mux.Handle("GET /static/", u.static)
	s.mux.HandleFunc("GET /login", s.loginPage)
	s.mux.HandleFunc("POST /login", s.login)
	s.mux.HandleFunc("POST /logout", s.page(s.logout))
	s.mux.HandleFunc("GET /{$}", s.page(s.listPage))
	s.mux.HandleFunc("GET /new", s.page(s.newPage))
	s.mux.HandleFunc("POST /new", s.page(s.create))
	s.mux.HandleFunc("GET /vc/{cluster}/{namespace}/{name}", s.page(s.detailPage))
	s.mux.HandleFunc("POST /vc/{cluster}/{namespace}/{name}/{action}", s.page(s.vcAction))
	s.mux.HandleFunc("GET /download/{id}", s.page(s.downloadKubeconfig))
	s.mux.HandleFunc("GET /templates", s.page(s.templatesPage))
	s.mux.HandleFunc("GET /templates/{cluster}/{name}", s.page(s.templatePage))
	s.mux.HandleFunc("GET /accesskeys", s.page(s.keysPage))
	s.mux.HandleFunc("POST /accesskeys", s.page(s.createKey))
	s.mux.HandleFunc("POST /accesskeys/{name}/revoke", s.page(s.revokeKey))
	s.mux.HandleFunc("GET /clusters", s.page(s.clustersPage))
}

// pageData is what every page template gets.
type pageData struct {
	Title, Nav string
	User       *User
	CSRF       string
	Flash      string
	Error      string
	Data       interface{}
}

// render writes page name with data, with headers that keep the page to
// its own origin.
func (s *Server) render(w http.ResponseWriter, code int, name string, d pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Cache-Control", "no-store")
	var buf bytes.Buffer
	tmpl := "base.html"
	if name == "rows" || name == "status" {
		tmpl = name // a fragment for live updates
		name = map[string]string{"rows": "list", "status": "detail"}[name]
	}
	if err := s.ui.pages[name].ExecuteTemplate(&buf, tmpl, d); err != nil {
		http.Error(w, "render "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(code)
	_, _ = buf.WriteTo(w)
}

// page wraps a UI handler: without a valid session (or once its key is no
// longer valid) it sends the browser to the login page; a POST must carry
// the session's CSRF token.
func (s *Server) page(h func(w http.ResponseWriter, r *http.Request, sess *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess := s.ui.sessions.get(r)
		if sess != nil {
			if u, err := s.authenticateKey(r.Context(), sess.key); err == nil && u.Scope == nil {
				sess.user = u
				if box, ok := r.Context().Value(userHolder{}).(*userBox); ok {
					box.user = u
				}
			} else {
				s.ui.sessions.drop(sess.id)
				sess = nil
			}
		}
		if sess == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			http.Error(w, "your session ended: log in again", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost && subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(sess.csrf)) != 1 {
			http.Error(w, "the form's CSRF token is missing or wrong: reload the page and try again", http.StatusForbidden)
			return
		}
		h(w, r, sess)
	}
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// callError is an error reply of a call, with the API's message.
type callError struct {
	code int
	msg  string
}

func (e *callError) Error() string { return e.msg }

// call sends a request with the session's key through this server's own
// handlers (authentication, RBAC gate, audit) and decodes a JSON reply.
func (s *Server) call(r *http.Request, sess *session, method, path, contentType string, body interface{}, out interface{}) error {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req := httptest.NewRequest(method, path, rd).WithContext(r.Context())
	req.RemoteAddr = r.RemoteAddr
	req.Header.Set("Authorization", "Bearer "+sess.key)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "sublet-ui")
	if contentType == "" {
		contentType = "application/json"
	}
	req.Header.Set("Content-Type", contentType)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code/100 != 2 {
		st := &metav1.Status{}
		if json.Unmarshal(rec.Body.Bytes(), st) == nil && st.Message != "" {
			return &callError{code: rec.Code, msg: st.Message}
		}
		return &callError{code: rec.Code, msg: fmt.Sprintf("%s %s: HTTP %d %s", method, path, rec.Code, strings.TrimSpace(rec.Body.String()))}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(rec.Body.Bytes(), out)
}

// failPage renders an error page with the call's status (403 stays 403).
func (s *Server) failPage(w http.ResponseWriter, sess *session, title string, err error) {
	code := http.StatusBadGateway
	var ce *callError
	if errors.As(err, &ce) {
		code = ce.code
	}
	s.render(w, code, "error", pageData{Title: title, User: sess.user, CSRF: sess.csrf, Error: err.Error()})
}

// listRow is one virtual cluster in the list.
type listRow struct {
	VirtualClusterInfo
	Asleep string
}

type listData struct {
	Rows                 []listRow
	Clusters, Phases     []string
	Name, Cluster, Phase string
	Total                int
	Query                string
}

func (s *Server) listPage(w http.ResponseWriter, r *http.Request, sess *session) {
	var all []VirtualClusterInfo
	if err := s.call(r, sess, http.MethodGet, "/api/v1/virtualclusters", "", nil, &all); err != nil {
		s.failPage(w, sess, "Virtual clusters", err)
		return
	}
	q := r.URL.Query()
	d := listData{Name: q.Get("name"), Cluster: q.Get("cluster"), Phase: q.Get("phase"), Total: len(all),
		Phases: []string{"Ready", "Deploying", "Failed", "Sleeping"}}
	clusters := map[string]bool{}
	for _, v := range all {
		clusters[v.Cluster] = true
		if d.Name != "" && !strings.Contains(v.Name, d.Name) || d.Cluster != "" && v.Cluster != d.Cluster || d.Phase != "" && v.Phase != d.Phase {
			continue
		}
		row := listRow{VirtualClusterInfo: v}
		if v.SleepingSince != "" {
			row.Asleep = Age(v.SleepingSince)
		}
		d.Rows = append(d.Rows, row)
	}
	for c := range clusters {
		d.Clusters = append(d.Clusters, c)
	}
	sort.Strings(d.Clusters)
	sort.Slice(d.Rows, func(i, j int) bool {
		a, b := d.Rows[i], d.Rows[j]
		return a.Cluster+"/"+a.Namespace+"/"+a.Name < b.Cluster+"/"+b.Namespace+"/"+b.Name
	})
	q.Del("fragment")
	d.Query = q.Encode()
	name := "list"
	if r.URL.Query().Get("fragment") == "rows" {
		name = "rows"
	}
	s.render(w, http.StatusOK, name, pageData{Title: "Virtual clusters", Nav: "list", User: sess.user, CSRF: sess.csrf, Flash: r.URL.Query().Get("flash"), Data: d})
}

// templateInfo is a template of a connected cluster.
type templateInfo struct {
	Cluster, Name, DisplayName, Values string
	Annotations                        map[string]string
}

// templates lists the templates of every connected cluster the user may
// list them in; errors are per cluster.
func (s *Server) templates(r *http.Request, sess *session) ([]templateInfo, []string) {
	var clusters []ClusterInfo
	if err := s.call(r, sess, http.MethodGet, "/api/v1/clusters", "", nil, &clusters); err != nil {
		return nil, []string{err.Error()}
	}
	var out []templateInfo
	var errs []string
	for _, c := range clusters {
		list := &storagev1.VirtualClusterTemplateList{}
		if err := s.call(r, sess, http.MethodGet, "/kubernetes/cluster/"+url.PathEscape(c.Name)+"/apis/storage.loft.sh/v1/virtualclustertemplates", "", nil, list); err != nil {
			errs = append(errs, fmt.Sprintf("cluster %s: %v", c.Name, err))
			continue
		}
		for _, t := range list.Items {
			out = append(out, templateInfo{Cluster: c.Name, Name: t.Name, DisplayName: t.Spec.DisplayName,
				Values: t.Spec.Template.HelmRelease.Values, Annotations: t.Annotations})
		}
	}
	return out, errs
}

type newData struct {
	Clusters                                     []ClusterInfo
	Templates                                    []templateInfo
	Versions                                     []string
	Name, Cluster, Namespace, Template, Version  string
	SleepAfter, Values                           string
	NameError, ValuesError, SleepError, Problems string
}

func (s *Server) newForm(r *http.Request, sess *session, d *newData) {
	_ = s.call(r, sess, http.MethodGet, "/api/v1/clusters", "", nil, &d.Clusters)
	tmpls, errs := s.templates(r, sess)
	d.Templates = tmpls
	if len(errs) > 0 {
		d.Problems = "Templates could not be listed: " + strings.Join(errs, "; ")
	}
	oldest, newest := kubeversion.Range()
	for m := newest; m >= oldest; m-- {
		d.Versions = append(d.Versions, fmt.Sprintf("v1.%d", m))
	}
}

func (s *Server) newPage(w http.ResponseWriter, r *http.Request, sess *session) {
	d := &newData{}
	s.newForm(r, sess, d)
	s.render(w, http.StatusOK, "new", pageData{Title: "Create a virtual cluster", Nav: "new", User: sess.user, CSRF: sess.csrf, Data: d})
}

// create makes a virtual cluster from the form, as `sublet create vcluster`
// does: the values checked by the same strict parser first, the namespace
// created if the user may, the VirtualCluster created through the
// cluster's proxy as the user.
func (s *Server) create(w http.ResponseWriter, r *http.Request, sess *session) {
	d := &newData{Name: strings.TrimSpace(r.PostFormValue("name")), Cluster: r.PostFormValue("cluster"),
		Namespace: strings.TrimSpace(r.PostFormValue("namespace")), Template: r.PostFormValue("template"),
		Version: r.PostFormValue("version"), SleepAfter: strings.TrimSpace(r.PostFormValue("sleepAfter")), Values: r.PostFormValue("values")}
	bad := false
	if msgs := translate.ValidateVClusterName(d.Name); len(msgs) > 0 {
		d.NameError, bad = fmt.Sprintf("name %q %s", d.Name, strings.Join(msgs, "; ")), true
	}
	if d.Namespace == "" {
		d.Namespace = storagev1.DefaultNamespace(d.Name)
	}
	doc, err := valuesWithVersion(d.Values, d.Version)
	if err == nil {
		_, err = values.Merge(values.Layer{Source: "values", YAML: doc})
	}
	if err != nil {
		d.ValuesError, bad = err.Error(), true
	}
	if d.SleepAfter != "" {
		if n, err := strconv.Atoi(d.SleepAfter); err != nil || n <= 0 {
			d.SleepError, bad = "sleep after: a whole number of seconds, greater than 0", true
		}
	}
	if bad {
		s.newForm(r, sess, d)
		s.render(w, http.StatusUnprocessableEntity, "new", pageData{Title: "Create a virtual cluster", Nav: "new", User: sess.user, CSRF: sess.csrf, Data: d})
		return
	}
	base := "/kubernetes/cluster/" + url.PathEscape(d.Cluster)
	// As the CLI: a namespace the user may not create may still exist.
	_ = s.call(r, sess, http.MethodPost, base+"/api/v1/namespaces", "", &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: d.Namespace, Labels: map[string]string{storagev1.LabelNamespaceFor: d.Name}},
	}, nil)
	vc := &storagev1.VirtualCluster{TypeMeta: metav1.TypeMeta{APIVersion: storagev1.GroupVersion.String(), Kind: "VirtualCluster"},
		ObjectMeta: metav1.ObjectMeta{Name: d.Name, Namespace: d.Namespace}}
	if doc != "" {
		vc.Spec.HelmRelease = &storagev1.VirtualClusterHelmRelease{Values: doc}
	}
	if d.Template != "" {
		vc.Spec.TemplateRef = &storagev1.TemplateRef{Name: d.Template}
	}
	if d.SleepAfter != "" {
		vc.Annotations = map[string]string{storagev1.AnnotationSleepAfter: d.SleepAfter}
	}
	if err := s.call(r, sess, http.MethodPost, base+"/apis/storage.loft.sh/v1/namespaces/"+url.PathEscape(d.Namespace)+"/virtualclusters", "", vc, nil); err != nil {
		d.Problems = "The virtual cluster was not created: " + err.Error()
		s.newForm(r, sess, d)
		s.render(w, http.StatusUnprocessableEntity, "new", pageData{Title: "Create a virtual cluster", Nav: "new", User: sess.user, CSRF: sess.csrf, Data: d})
		return
	}
	http.Redirect(w, r, vcURL(d.Cluster, d.Namespace, d.Name), http.StatusSeeOther)
}

// valuesWithVersion adds the chosen Kubernetes version to the values as
// the image tag that asks for it, unless the values choose an image.
func valuesWithVersion(doc, version string) (string, error) {
	if version == "" {
		return doc, nil
	}
	m := map[string]interface{}{}
	if strings.TrimSpace(doc) != "" {
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			return "", fmt.Errorf("values: %w", err)
		}
	}
	vcv, _ := m["virtualCluster"].(map[string]interface{})
	if vcv == nil {
		vcv = map[string]interface{}{}
	}
	if _, set := vcv["image"]; set {
		return doc, nil
	}
	vcv["image"] = "rancher/k3s:" + version + ".0-k3s1"
	m["virtualCluster"] = vcv
	out, err := yaml.Marshal(m)
	return string(out), err
}

func vcURL(cluster, ns, name string) string {
	return "/vc/" + url.PathEscape(cluster) + "/" + url.PathEscape(ns) + "/" + url.PathEscape(name)
}

type detailData struct {
	Cluster, Namespace, Name string
	VC                       *storagev1.VirtualCluster
	Events                   []corev1.Event
	EventsError              string
	Kubeconfig, DownloadID   string
	Asleep, Age              string
}

func (s *Server) vcPath(cluster, ns, name string) string {
	return "/kubernetes/cluster/" + url.PathEscape(cluster) + "/apis/storage.loft.sh/v1/namespaces/" + url.PathEscape(ns) + "/virtualclusters/" + url.PathEscape(name)
}

func (s *Server) detail(r *http.Request, sess *session) (*detailData, error) {
	d := &detailData{Cluster: r.PathValue("cluster"), Namespace: r.PathValue("namespace"), Name: r.PathValue("name")}
	vc := &storagev1.VirtualCluster{}
	if err := s.call(r, sess, http.MethodGet, s.vcPath(d.Cluster, d.Namespace, d.Name), "", nil, vc); err != nil {
		return nil, err
	}
	d.VC = vc
	d.Age = Age(vc.CreationTimestamp.UTC().Format(time.RFC3339))
	if vc.Status.SleepingSince != nil {
		d.Asleep = Age(vc.Status.SleepingSince.UTC().Format(time.RFC3339))
	}
	events := &corev1.EventList{}
	sel := url.Values{"fieldSelector": {"involvedObject.kind=VirtualCluster,involvedObject.name=" + d.Name}}
	if err := s.call(r, sess, http.MethodGet, "/kubernetes/cluster/"+url.PathEscape(d.Cluster)+"/api/v1/namespaces/"+url.PathEscape(d.Namespace)+"/events?"+sel.Encode(), "", nil, events); err != nil {
		d.EventsError = "Events are not shown: " + err.Error()
	}
	d.Events = events.Items
	sort.Slice(d.Events, func(i, j int) bool { return eventTime(&d.Events[i]).After(eventTime(&d.Events[j])) })
	if len(d.Events) > 20 {
		d.Events = d.Events[:20]
	}
	return d, nil
}

func eventTime(e *corev1.Event) time.Time {
	if !e.LastTimestamp.IsZero() {
		return e.LastTimestamp.Time
	}
	if !e.EventTime.IsZero() {
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

func (s *Server) detailPage(w http.ResponseWriter, r *http.Request, sess *session) {
	d, err := s.detail(r, sess)
	if err != nil {
		s.failPage(w, sess, "Virtual cluster "+r.PathValue("name"), err)
		return
	}
	name := "detail"
	if r.URL.Query().Get("fragment") == "status" {
		name = "status"
	}
	s.render(w, http.StatusOK, name, pageData{Title: "Virtual cluster " + d.Name, Nav: "list", User: sess.user, CSRF: sess.csrf, Flash: r.URL.Query().Get("flash"), Data: d})
}

// vcAction: sleep, wake, delete (the name typed to confirm), connect (an
// access key and a kubeconfig for this cluster).
func (s *Server) vcAction(w http.ResponseWriter, r *http.Request, sess *session) {
	cluster, ns, name, action := r.PathValue("cluster"), r.PathValue("namespace"), r.PathValue("name"), r.PathValue("action")
	path := s.vcPath(cluster, ns, name)
	back := vcURL(cluster, ns, name)
	patch := func(set map[string]*string) error {
		return s.call(r, sess, http.MethodPatch, path, "application/merge-patch+json", json.RawMessage(sleepmode.AnnotationsPatch(set)), nil)
	}
	var err error
	flash := ""
	switch action {
	case "sleep":
		err = patch(map[string]*string{storagev1.AnnotationForceSleep: ptr.To("true")})
		flash = "Going to sleep."
	case "wake":
		err = patch(sleepmode.WakeupAnnotations(time.Now()))
		flash = "Waking up."
	case "delete":
		if r.PostFormValue("confirm") != name {
			d, derr := s.detail(r, sess)
			if derr != nil {
				s.failPage(w, sess, "Virtual cluster "+name, derr)
				return
			}
			s.render(w, http.StatusUnprocessableEntity, "detail", pageData{Title: "Virtual cluster " + name, Nav: "list", User: sess.user, CSRF: sess.csrf,
				Error: fmt.Sprintf("To delete it, type its name, %s, in the box.", name), Data: d})
			return
		}
		if err = s.call(r, sess, http.MethodDelete, path, "", nil, nil); err == nil {
			http.Redirect(w, r, "/?flash="+url.QueryEscape("Deleting virtual cluster "+name+"."), http.StatusSeeOther)
			return
		}
	case "connect":
		s.connect(w, r, sess, cluster, ns, name)
		return
	default:
		http.NotFound(w, r)
		return
	}
	if err != nil {
		s.failPage(w, sess, "Virtual cluster "+name, err)
		return
	}
	http.Redirect(w, r, back+"?flash="+url.QueryEscape(flash), http.StatusSeeOther)
}

// connect makes an access key scoped to this virtual cluster (expiring
// with the session's key, if that expires) and shows a kubeconfig with it:
// the platform's address alone, which the key routes to the cluster.
func (s *Server) connect(w http.ResponseWriter, r *http.Request, sess *session, cluster, ns, name string) {
	d, err := s.detail(r, sess)
	if err != nil {
		s.failPage(w, sess, "Virtual cluster "+name, err)
		return
	}
	var key AccessKeyInfo
	if err := s.call(r, sess, http.MethodPost, "/api/v1/accesskeys", "", AccessKeyRequest{
		Description:    fmt.Sprintf("kubeconfig for virtual cluster %s/%s/%s (web UI)", cluster, ns, name),
		VirtualCluster: &storagev1.VirtualClusterScope{Cluster: cluster, Namespace: ns, Name: name}}, &key); err != nil {
		s.failPage(w, sess, "Virtual cluster "+name, err)
		return
	}
	ctxName := fmt.Sprintf("sublet_%s_%s_%s", cluster, ns, name)
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[ctxName] = &clientcmdapi.Cluster{Server: "https://" + r.Host, CertificateAuthorityData: s.caPEM}
	cfg.AuthInfos[ctxName] = &clientcmdapi.AuthInfo{Token: key.Key}
	cfg.Contexts[ctxName] = &clientcmdapi.Context{Cluster: ctxName, AuthInfo: ctxName}
	cfg.CurrentContext = ctxName
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		s.failPage(w, sess, "Virtual cluster "+name, err)
		return
	}
	id := randomToken()
	sess.mu.Lock()
	for k, dl := range sess.downloads {
		if time.Now().After(dl.expires) {
			delete(sess.downloads, k)
		}
	}
	sess.downloads[id] = download{name: name + ".kubeconfig", data: data, expires: time.Now().Add(downloadLifetime)}
	sess.mu.Unlock()
	d.Kubeconfig, d.DownloadID = string(data), id
	s.render(w, http.StatusOK, "detail", pageData{Title: "Virtual cluster " + name, Nav: "list", User: sess.user, CSRF: sess.csrf,
		Flash: "Access key " + key.Name + ", good for this virtual cluster alone, was made for this kubeconfig; it is shown only now.", Data: d})
}

func (s *Server) downloadKubeconfig(w http.ResponseWriter, r *http.Request, sess *session) {
	sess.mu.Lock()
	dl, ok := sess.downloads[r.PathValue("id")]
	sess.mu.Unlock()
	if !ok || time.Now().After(dl.expires) {
		http.Error(w, "this download has expired: use Connect again", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", dl.name))
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(dl.data)
}

func (s *Server) templatesPage(w http.ResponseWriter, r *http.Request, sess *session) {
	tmpls, errs := s.templates(r, sess)
	s.render(w, http.StatusOK, "templates", pageData{Title: "Templates", Nav: "templates", User: sess.user, CSRF: sess.csrf,
		Error: strings.Join(errs, "; "), Data: tmpls})
}

func (s *Server) templatePage(w http.ResponseWriter, r *http.Request, sess *session) {
	t := &storagev1.VirtualClusterTemplate{}
	cluster := r.PathValue("cluster")
	if err := s.call(r, sess, http.MethodGet, "/kubernetes/cluster/"+url.PathEscape(cluster)+"/apis/storage.loft.sh/v1/virtualclustertemplates/"+url.PathEscape(r.PathValue("name")), "", nil, t); err != nil {
		s.failPage(w, sess, "Template "+r.PathValue("name"), err)
		return
	}
	s.render(w, http.StatusOK, "template", pageData{Title: "Template " + t.Name, Nav: "templates", User: sess.user, CSRF: sess.csrf,
		Data: templateInfo{Cluster: cluster, Name: t.Name, DisplayName: t.Spec.DisplayName, Values: t.Spec.Template.HelmRelease.Values, Annotations: t.Annotations}})
}

type keysData struct {
	Keys    []AccessKeyInfo
	Created *AccessKeyInfo
}

func (s *Server) keysPage(w http.ResponseWriter, r *http.Request, sess *session) {
	s.renderKeys(w, r, sess, nil, http.StatusOK, "")
}

func (s *Server) renderKeys(w http.ResponseWriter, r *http.Request, sess *session, created *AccessKeyInfo, code int, problem string) {
	d := keysData{Created: created}
	if err := s.call(r, sess, http.MethodGet, "/api/v1/accesskeys", "", nil, &d.Keys); err != nil {
		problem = strings.TrimPrefix(problem+"; "+err.Error(), "; ")
	}
	s.render(w, code, "accesskeys", pageData{Title: "Access keys", Nav: "accesskeys", User: sess.user, CSRF: sess.csrf,
		Flash: r.URL.Query().Get("flash"), Error: problem, Data: d})
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request, sess *session) {
	var key AccessKeyInfo
	req := AccessKeyRequest{TTL: strings.TrimSpace(r.PostFormValue("ttl")), Description: strings.TrimSpace(r.PostFormValue("description"))}
	if err := s.call(r, sess, http.MethodPost, "/api/v1/accesskeys", "", req, &key); err != nil {
		s.renderKeys(w, r, sess, nil, http.StatusUnprocessableEntity, "The key was not created: "+err.Error())
		return
	}
	s.renderKeys(w, r, sess, &key, http.StatusOK, "")
}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request, sess *session) {
	name := r.PathValue("name")
	if err := s.call(r, sess, http.MethodDelete, "/api/v1/accesskeys/"+url.PathEscape(name), "", nil, nil); err != nil {
		s.renderKeys(w, r, sess, nil, http.StatusUnprocessableEntity, "The key was not revoked: "+err.Error())
		return
	}
	http.Redirect(w, r, "/accesskeys?flash="+url.QueryEscape("Access key "+name+" is revoked."), http.StatusSeeOther)
}

func (s *Server) clustersPage(w http.ResponseWriter, r *http.Request, sess *session) {
	var clusters []ClusterInfo
	if err := s.call(r, sess, http.MethodGet, "/api/v1/clusters", "", nil, &clusters); err != nil {
		s.failPage(w, sess, "Clusters", err)
		return
	}
	s.render(w, http.StatusOK, "clusters", pageData{Title: "Connected clusters", Nav: "clusters", User: sess.user, CSRF: sess.csrf, Data: clusters})
}

// Age is how long ago an RFC 3339 time was, as kubectl shows ages ("" if
// it is not one).
func Age(rfc3339 string) string {
	t, err := time.Parse(time.RFC3339, rfc3339)
	if err != nil || rfc3339 == "" {
		return ""
	}
	d := time.Since(t).Round(time.Second)
	switch {
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
