package ui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/platformapi"
	"github.com/sublet-dev/sublet/internal/sleepmode"
)

// downloadLifetime is how long a kubeconfig made on the Connect page can
// be downloaded.
const downloadLifetime = 10 * time.Minute

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
	Snapshots                []snapshotRow
	SnapshotsError           string
	// Fork is the fork form sent back with what is wrong with it.
	Fork forkForm
}

func (u *UI) vcPath(cluster, ns, name string) string {
	return storagePath(cluster, ns, "virtualclusters/"+url.PathEscape(name))
}

func (u *UI) detail(r *http.Request, sess *session) (*detailData, error) {
	d := &detailData{Cluster: r.PathValue("cluster"), Namespace: r.PathValue("namespace"), Name: r.PathValue("name")}
	vc := &storagev1.VirtualCluster{}
	if err := u.call(r, sess.key, http.MethodGet, u.vcPath(d.Cluster, d.Namespace, d.Name), "", nil, vc); err != nil {
		return nil, err
	}
	d.VC = vc
	d.Age = platformapi.Age(vc.CreationTimestamp.UTC().Format(time.RFC3339))
	if vc.Status.SleepingSince != nil {
		d.Asleep = platformapi.Age(vc.Status.SleepingSince.UTC().Format(time.RFC3339))
	}
	events := &corev1.EventList{}
	sel := url.Values{"fieldSelector": {"involvedObject.kind=VirtualCluster,involvedObject.name=" + d.Name}}
	if err := u.call(r, sess.key, http.MethodGet, "/kubernetes/cluster/"+url.PathEscape(d.Cluster)+"/api/v1/namespaces/"+url.PathEscape(d.Namespace)+"/events?"+sel.Encode(), "", nil, events); err != nil {
		d.EventsError = "Events are not shown: " + err.Error()
	}
	d.Events = events.Items
	sort.Slice(d.Events, func(i, j int) bool { return eventTime(&d.Events[i]).After(eventTime(&d.Events[j])) })
	if len(d.Events) > 20 {
		d.Events = d.Events[:20]
	}
	return d, nil
}

// SnapshotsBusy: a snapshot is still being written, so the list changes.
func (d *detailData) SnapshotsBusy() bool {
	for _, s := range d.Snapshots {
		if !s.Completed && s.Phase != string(storagev1.SnapshotFailed) {
			return true
		}
	}
	return false
}

// fullDetail is detail with the cluster's snapshots, for the whole page.
func (u *UI) fullDetail(r *http.Request, sess *session) (*detailData, error) {
	d, err := u.detail(r, sess)
	if err != nil {
		return nil, err
	}
	if d.Snapshots, err = u.snapshots(r, sess, d.Cluster, d.Namespace, d.Name); err != nil {
		d.SnapshotsError = "Snapshots are not shown: " + err.Error()
	}
	return d, nil
}

// renderDetailProblem shows the detail page again with problem (and the
// fork form f as sent, if any) after an action that did not happen.
func (u *UI) renderDetailProblem(w http.ResponseWriter, r *http.Request, sess *session, code int, problem string, f *forkForm) {
	d, err := u.fullDetail(r, sess)
	if err != nil {
		u.failPage(w, sess, "Virtual cluster "+r.PathValue("name"), err)
		return
	}
	if f != nil {
		d.Fork = *f
	}
	page := sessionPage(sess, "Virtual cluster "+d.Name, "list", d)
	page.Error = problem
	u.render(w, code, "detail", page)
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

func (u *UI) detailPage(w http.ResponseWriter, r *http.Request, sess *session) {
	name := r.URL.Query().Get("fragment")
	var d *detailData
	var err error
	switch name {
	case "status":
		d, err = u.detail(r, sess)
	case "snapshots":
		d = &detailData{Cluster: r.PathValue("cluster"), Namespace: r.PathValue("namespace"), Name: r.PathValue("name")}
		d.Snapshots, err = u.snapshots(r, sess, d.Cluster, d.Namespace, d.Name)
	default:
		name = "detail"
		d, err = u.fullDetail(r, sess)
	}
	if err != nil {
		u.failPage(w, sess, "Virtual cluster "+r.PathValue("name"), err)
		return
	}
	u.render(w, http.StatusOK, name, pageData{Title: "Virtual cluster " + d.Name, Nav: "list", User: sess.user, CSRF: sess.csrf, Flash: r.URL.Query().Get("flash"), Data: d})
}

// vcAction: sleep, wake, delete (the name typed to confirm), connect (an
// access key and a kubeconfig for this cluster), snapshot (take one),
// fork (a new cluster from one of its snapshots).
func (u *UI) vcAction(w http.ResponseWriter, r *http.Request, sess *session) {
	cluster, ns, name, action := r.PathValue("cluster"), r.PathValue("namespace"), r.PathValue("name"), r.PathValue("action")
	path := u.vcPath(cluster, ns, name)
	back := vcURL(cluster, ns, name)
	patch := func(set map[string]*string) error {
		return u.call(r, sess.key, http.MethodPatch, path, "application/merge-patch+json", json.RawMessage(sleepmode.AnnotationsPatch(set)), nil)
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
			u.renderDetailProblem(w, r, sess, http.StatusUnprocessableEntity, fmt.Sprintf("To delete it, type its name, %s, in the box.", name), nil)
			return
		}
		if err = u.call(r, sess.key, http.MethodDelete, path, "", nil, nil); err == nil {
			http.Redirect(w, r, "/?flash="+url.QueryEscape("Deleting virtual cluster "+name+"."), http.StatusSeeOther)
			return
		}
	case "connect":
		u.connect(w, r, sess, cluster, ns, name)
		return
	case "snapshot":
		snap, serr := u.takeSnapshot(r, sess, cluster, ns, name)
		if serr != nil {
			u.renderDetailProblem(w, r, sess, problemCode(serr), serr.Error(), nil)
			return
		}
		flash = "Taking snapshot " + snap + "; it is listed under Snapshots."
	case "fork":
		u.fork(w, r, sess, cluster, ns, name)
		return
	default:
		http.NotFound(w, r)
		return
	}
	if err != nil {
		u.failPage(w, sess, "Virtual cluster "+name, err)
		return
	}
	http.Redirect(w, r, back+"?flash="+url.QueryEscape(flash), http.StatusSeeOther)
}

// connect makes an access key scoped to this virtual cluster (expiring
// with the session's key, if that expires) and shows a kubeconfig with it:
// the platform's address alone, which the key routes to the cluster.
func (u *UI) connect(w http.ResponseWriter, r *http.Request, sess *session, cluster, ns, name string) {
	d, err := u.fullDetail(r, sess)
	if err != nil {
		u.failPage(w, sess, "Virtual cluster "+name, err)
		return
	}
	var key platformapi.AccessKeyInfo
	if err := u.call(r, sess.key, http.MethodPost, "/api/v1/accesskeys", "", platformapi.AccessKeyRequest{
		Description:    fmt.Sprintf("kubeconfig for virtual cluster %s/%s/%s (web UI)", cluster, ns, name),
		VirtualCluster: &storagev1.VirtualClusterScope{Cluster: cluster, Namespace: ns, Name: name}}, &key); err != nil {
		u.failPage(w, sess, "Virtual cluster "+name, err)
		return
	}
	ctxName := fmt.Sprintf("sublet_%s_%s_%s", cluster, ns, name)
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[ctxName] = &clientcmdapi.Cluster{Server: "https://" + r.Host, CertificateAuthorityData: u.ca()}
	cfg.AuthInfos[ctxName] = &clientcmdapi.AuthInfo{Token: key.Key}
	cfg.Contexts[ctxName] = &clientcmdapi.Context{Cluster: ctxName, AuthInfo: ctxName}
	cfg.CurrentContext = ctxName
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		u.failPage(w, sess, "Virtual cluster "+name, err)
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
	u.render(w, http.StatusOK, "detail", pageData{Title: "Virtual cluster " + name, Nav: "list", User: sess.user, CSRF: sess.csrf,
		Flash: "Access key " + key.Name + ", good for this virtual cluster alone, was made for this kubeconfig; it is shown only now.", Data: d})
}

func (u *UI) downloadKubeconfig(w http.ResponseWriter, r *http.Request, sess *session) {
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
