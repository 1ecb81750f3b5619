package ui

import (
	"net/http"
	"sort"
	"strings"

	"github.com/sublet-dev/sublet/internal/platformapi"
)

// listRow is one virtual cluster in the list.
type listRow struct {
	platformapi.VirtualClusterInfo
	Asleep string
}

type listData struct {
	Rows                 []listRow
	Clusters, Phases     []string
	Name, Cluster, Phase string
	Total                int
	Query                string
}

func (u *UI) listPage(w http.ResponseWriter, r *http.Request, sess *session) {
	var all []platformapi.VirtualClusterInfo
	if err := u.call(r, sess.key, http.MethodGet, "/api/v1/virtualclusters", "", nil, &all); err != nil {
		u.failPage(w, sess, "Virtual clusters", err)
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
			row.Asleep = platformapi.Age(v.SleepingSince)
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
	u.render(w, http.StatusOK, name, pageData{Title: "Virtual clusters", Nav: "list", User: sess.user, CSRF: sess.csrf, Flash: r.URL.Query().Get("flash"), Data: d})
}

func (u *UI) clustersPage(w http.ResponseWriter, r *http.Request, sess *session) {
	var clusters []platformapi.ClusterInfo
	if err := u.call(r, sess.key, http.MethodGet, "/api/v1/clusters", "", nil, &clusters); err != nil {
		u.failPage(w, sess, "Clusters", err)
		return
	}
	u.render(w, http.StatusOK, "clusters", pageData{Title: "Connected clusters", Nav: "clusters", User: sess.user, CSRF: sess.csrf, Data: clusters})
}
