package ui

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/platformapi"
)

// templateInfo is a template of a connected cluster.
type templateInfo struct {
	Cluster, Name, DisplayName, Values string
	Annotations                        map[string]string
}

// templates lists the templates of every connected cluster the user may
// list them in; errors are per cluster.
func (u *UI) templates(r *http.Request, sess *session) ([]templateInfo, []string) {
	var clusters []platformapi.ClusterInfo
	if err := u.call(r, sess.key, http.MethodGet, "/api/v1/clusters", "", nil, &clusters); err != nil {
		return nil, []string{err.Error()}
	}
	var out []templateInfo
	var errs []string
	for _, c := range clusters {
		list := &storagev1.VirtualClusterTemplateList{}
		if err := u.call(r, sess.key, http.MethodGet, "/kubernetes/cluster/"+url.PathEscape(c.Name)+"/apis/storage.loft.sh/v1/virtualclustertemplates", "", nil, list); err != nil {
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

func (u *UI) templatesPage(w http.ResponseWriter, r *http.Request, sess *session) {
	tmpls, errs := u.templates(r, sess)
	u.render(w, http.StatusOK, "templates", pageData{Title: "Templates", Nav: "templates", User: sess.user, CSRF: sess.csrf,
		Error: strings.Join(errs, "; "), Data: tmpls})
}

func (u *UI) templatePage(w http.ResponseWriter, r *http.Request, sess *session) {
	t := &storagev1.VirtualClusterTemplate{}
	cluster := r.PathValue("cluster")
	if err := u.call(r, sess.key, http.MethodGet, "/kubernetes/cluster/"+url.PathEscape(cluster)+"/apis/storage.loft.sh/v1/virtualclustertemplates/"+url.PathEscape(r.PathValue("name")), "", nil, t); err != nil {
		u.failPage(w, sess, "Template "+r.PathValue("name"), err)
		return
	}
	u.render(w, http.StatusOK, "template", pageData{Title: "Template " + t.Name, Nav: "templates", User: sess.user, CSRF: sess.csrf,
		Data: templateInfo{Cluster: cluster, Name: t.Name, DisplayName: t.Spec.DisplayName, Values: t.Spec.Template.HelmRelease.Values, Annotations: t.Annotations}})
}
