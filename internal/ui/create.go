package ui

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/kubeversion"
	"github.com/sublet-dev/sublet/internal/platformapi"
	"github.com/sublet-dev/sublet/internal/translate"
	"github.com/sublet-dev/sublet/internal/values"
)

type newData struct {
	Clusters                                     []platformapi.ClusterInfo
	Templates                                    []templateInfo
	Versions                                     []string
	Name, Cluster, Namespace, Template, Version  string
	SleepAfter, Values                           string
	NameError, ValuesError, SleepError, Problems string
}

func (u *UI) newForm(r *http.Request, sess *session, d *newData) {
	_ = u.call(r, sess.key, http.MethodGet, "/api/v1/clusters", "", nil, &d.Clusters)
	tmpls, errs := u.templates(r, sess)
	d.Templates = tmpls
	if len(errs) > 0 {
		d.Problems = "Templates could not be listed: " + strings.Join(errs, "; ")
	}
	oldest, newest := kubeversion.Range()
	for m := newest; m >= oldest; m-- {
		d.Versions = append(d.Versions, fmt.Sprintf("v1.%d", m))
	}
}

func (u *UI) newPage(w http.ResponseWriter, r *http.Request, sess *session) {
	d := &newData{}
	u.newForm(r, sess, d)
	u.render(w, http.StatusOK, "new", pageData{Title: "Create a virtual cluster", Nav: "new", User: sess.user, CSRF: sess.csrf, Data: d})
}

// create makes a virtual cluster from the form, as `sublet create vcluster`
// does: the values checked by the same strict parser first, the namespace
// created if the user may, the VirtualCluster created through the
// cluster's proxy as the user.
func (u *UI) create(w http.ResponseWriter, r *http.Request, sess *session) {
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
		u.newForm(r, sess, d)
		u.render(w, http.StatusUnprocessableEntity, "new", pageData{Title: "Create a virtual cluster", Nav: "new", User: sess.user, CSRF: sess.csrf, Data: d})
		return
	}
	u.ensureNamespace(r, sess, d.Cluster, d.Namespace, d.Name)
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
	if err := u.call(r, sess.key, http.MethodPost, storagePath(d.Cluster, d.Namespace, "virtualclusters"), "", vc, nil); err != nil {
		d.Problems = "The virtual cluster was not created: " + err.Error()
		u.newForm(r, sess, d)
		u.render(w, http.StatusUnprocessableEntity, "new", pageData{Title: "Create a virtual cluster", Nav: "new", User: sess.user, CSRF: sess.csrf, Data: d})
		return
	}
	http.Redirect(w, r, vcURL(d.Cluster, d.Namespace, d.Name), http.StatusSeeOther)
}

// ensureNamespace creates namespace ns of cluster for virtual cluster
// vcName, as the CLI does: a namespace the user may not create may still
// exist, and the VirtualCluster's create says whether they may use it.
func (u *UI) ensureNamespace(r *http.Request, sess *session, cluster, ns, vcName string) {
	_ = u.call(r, sess.key, http.MethodPost, "/kubernetes/cluster/"+url.PathEscape(cluster)+"/api/v1/namespaces", "", &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{storagev1.LabelNamespaceFor: vcName}},
	}, nil)
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
