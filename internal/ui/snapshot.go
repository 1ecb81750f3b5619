package ui

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/platformapi"
	"github.com/sublet-dev/sublet/internal/translate"
)

// snapshotNameTries bounds the names tried for one snapshot taken in a
// second that already has one (as the CLI does).
const snapshotNameTries = 20

// snapshotRow is one VirtualClusterSnapshot on its virtual cluster's page.
type snapshotRow struct {
	Name, Phase, Size, Version, Age, Message string
	// Completed snapshots can be forked.
	Completed bool
}

// forkForm is the fork form of one snapshot as it was sent, with what is
// wrong with it; the zero value is no form sent.
type forkForm struct {
	Snapshot, Name, Namespace string
	NameError, NamespaceError string
}

// storagePath is the path, through the cluster proxy, of resource (a
// storage.loft.sh/v1 kind's plural) in namespace ns of cluster.
func storagePath(cluster, ns, resource string) string {
	return "/kubernetes/cluster/" + url.PathEscape(cluster) + "/apis/storage.loft.sh/v1/namespaces/" + url.PathEscape(ns) + "/" + resource
}

// snapshots lists the snapshots of virtual cluster name in namespace ns,
// newest first.
func (u *UI) snapshots(r *http.Request, sess *session, cluster, ns, name string) ([]snapshotRow, error) {
	list := &storagev1.VirtualClusterSnapshotList{}
	if err := u.call(r, sess.key, http.MethodGet, storagePath(cluster, ns, "virtualclustersnapshots"), "", nil, list); err != nil {
		return nil, err
	}
	return snapshotRows(list.Items, name), nil
}

// snapshotRows are the rows of the snapshots of virtual cluster vcName
// among items, newest first.
func snapshotRows(items []storagev1.VirtualClusterSnapshot, vcName string) []snapshotRow {
	var mine []storagev1.VirtualClusterSnapshot
	for _, s := range items {
		if s.Spec.VirtualCluster == vcName {
			mine = append(mine, s)
		}
	}
	sort.SliceStable(mine, func(i, j int) bool {
		a, b := mine[i].CreationTimestamp.Time, mine[j].CreationTimestamp.Time
		if !a.Equal(b) {
			return a.After(b)
		}
		return mine[i].Name > mine[j].Name
	})
	rows := make([]snapshotRow, 0, len(mine))
	for _, s := range mine {
		row := snapshotRow{Name: s.Name, Phase: string(s.Status.Phase), Version: s.Status.KubernetesVersion,
			Age:       platformapi.Age(s.CreationTimestamp.UTC().Format(time.RFC3339)),
			Completed: s.Status.Phase == storagev1.SnapshotCompleted}
		if row.Phase == "" {
			row.Phase = string(storagev1.SnapshotPending)
		}
		if s.Status.Size > 0 || row.Completed {
			row.Size = humanSize(s.Status.Size)
		}
		if s.Status.Phase == storagev1.SnapshotFailed {
			row.Message = s.Status.Message
		}
		rows = append(rows, row)
	}
	return rows
}

// humanSize is n bytes in binary units with one decimal: 512 B, 1.5 KiB.
func humanSize(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	const units = "KMGTPE"
	f, i := float64(n)/1024, 0
	// 1023.95 KiB and up would print as 1024.0 KiB: that is 1.0 MiB.
	for f >= 1023.95 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, units[i])
}

// takeSnapshot asks for a snapshot of virtual cluster vcName and returns
// its name; the agent writes it and reports in its status.
func (u *UI) takeSnapshot(r *http.Request, sess *session, cluster, ns, vcName string) (string, error) {
	now := time.Now()
	for i := 1; ; i++ {
		snap := &storagev1.VirtualClusterSnapshot{
			TypeMeta:   metav1.TypeMeta{APIVersion: storagev1.GroupVersion.String(), Kind: "VirtualClusterSnapshot"},
			ObjectMeta: metav1.ObjectMeta{Name: storagev1.SnapshotName(vcName, now, i), Namespace: ns},
			Spec:       storagev1.VirtualClusterSnapshotSpec{VirtualCluster: vcName},
		}
		err := u.call(r, sess.key, http.MethodPost, storagePath(cluster, ns, "virtualclustersnapshots"), "", snap, nil)
		if err == nil {
			return snap.Name, nil
		}
		if callCode(err) != http.StatusConflict || i == snapshotNameTries {
			return "", fmt.Errorf("the snapshot was not taken: %w", err)
		}
	}
}

// check fills in what is wrong with the form, as `sublet create vcluster`
// refuses a name or --space; false if anything is.
func (f *forkForm) check() bool {
	if msgs := translate.ValidateVClusterName(f.Name); len(msgs) > 0 {
		f.NameError = fmt.Sprintf("name %q %s; choose another name", f.Name, strings.Join(msgs, "; "))
	}
	if f.Namespace != "" {
		if msgs := translate.ValidateHostNamespace(f.Namespace); len(msgs) > 0 {
			f.NamespaceError = fmt.Sprintf("namespace %q is not a namespace name: %s", f.Namespace, strings.Join(msgs, "; "))
		}
	}
	return f.NameError == "" && f.NamespaceError == ""
}

// targetNamespace is the namespace of the fork: the one chosen, else the
// default one of its name, as on the create page.
func (f *forkForm) targetNamespace() string {
	if f.Namespace != "" {
		return f.Namespace
	}
	return storagev1.DefaultNamespace(f.Name)
}

// forkOf is virtual cluster name in namespace ns, a fork of snap, with
// the template and values of the cluster it was taken of.
func forkOf(name, ns string, snap *storagev1.VirtualClusterSnapshot) *storagev1.VirtualCluster {
	return storagev1.StartedFrom(name, ns, snap, storagev1.AnnotationForkFrom, storagev1.SnapshotRef(snap.Namespace, snap.Name, ns))
}

// completedSnapshot reads snapshot name of namespace ns and refuses one
// that is not Completed.
func (u *UI) completedSnapshot(r *http.Request, sess *session, cluster, ns, name string) (*storagev1.VirtualClusterSnapshot, error) {
	snap := &storagev1.VirtualClusterSnapshot{}
	if err := u.call(r, sess.key, http.MethodGet, storagePath(cluster, ns, "virtualclustersnapshots/"+url.PathEscape(name)), "", nil, snap); err != nil {
		if callCode(err) == http.StatusNotFound {
			return nil, &callError{code: http.StatusNotFound, msg: fmt.Sprintf("snapshot %s does not exist in namespace %s (any more)", name, ns)}
		}
		return nil, err
	}
	if snap.Status.Phase != storagev1.SnapshotCompleted {
		phase := string(snap.Status.Phase)
		if phase == "" {
			phase = string(storagev1.SnapshotPending)
		}
		msg := fmt.Sprintf("snapshot %s is %s, not Completed: only a completed snapshot can be forked", name, phase)
		if snap.Status.Message != "" {
			msg += " (" + snap.Status.Message + ")"
		}
		return nil, &callError{code: http.StatusConflict, msg: msg}
	}
	return snap, nil
}

// fork makes a new virtual cluster from a snapshot of virtual cluster
// vcName (namespace ns), as `sublet create vcluster NAME --from NS/SNAPSHOT`
// does, and goes to its page. A form with a bad name, or a create the
// cluster refuses (a name taken, a snapshot the user may not read), comes
// back on this page with why.
func (u *UI) fork(w http.ResponseWriter, r *http.Request, sess *session, cluster, ns, vcName string) {
	f := forkForm{Snapshot: r.PostFormValue("snapshot"), Name: strings.TrimSpace(r.PostFormValue("name")),
		Namespace: strings.TrimSpace(r.PostFormValue("namespace"))}
	if f.Snapshot == "" {
		http.Error(w, "the form names no snapshot to fork: reload the page and try again", http.StatusBadRequest)
		return
	}
	if !f.check() {
		u.renderDetailProblem(w, r, sess, http.StatusUnprocessableEntity, "The fork of "+f.Snapshot+" was not created: see its form below.", &f)
		return
	}
	target := f.targetNamespace()
	snap, err := u.completedSnapshot(r, sess, cluster, ns, f.Snapshot)
	if err == nil {
		u.ensureNamespace(r, sess, cluster, target, f.Name)
		err = u.call(r, sess.key, http.MethodPost, storagePath(cluster, target, "virtualclusters"), "", forkOf(f.Name, target, snap), nil)
		err = forkRefusal(err, &f, cluster, ns)
	}
	if err != nil {
		u.renderDetailProblem(w, r, sess, problemCode(err), "The fork of "+f.Snapshot+" was not created: "+err.Error(), &f)
		return
	}
	flash := fmt.Sprintf("Forking snapshot %s of %s/%s: a new cluster with its objects and a new identity.", f.Snapshot, ns, vcName)
	http.Redirect(w, r, vcURL(cluster, target, f.Name)+"?flash="+url.QueryEscape(flash), http.StatusSeeOther)
}

// forkRefusal says what would fix a refused create of fork f, of a
// snapshot of namespace srcNS: another name for one taken; a namespace
// the user may use when the default one was refused.
func forkRefusal(err error, f *forkForm, cluster, srcNS string) error {
	switch code := callCode(err); {
	case code == http.StatusConflict:
		return &callError{code: code, msg: fmt.Sprintf("virtual cluster %s already exists in namespace %s of cluster %s; choose another name", f.Name, f.targetNamespace(), cluster)}
	case code == http.StatusForbidden && f.Namespace == "":
		return &callError{code: code, msg: fmt.Sprintf("%v (the namespace was left empty, so it is %s; type one where you may create virtual clusters, such as %s)", err, f.targetNamespace(), srcNS)}
	}
	return err
}

// problemCode is the status of a page that shows err: the call's (403
// stays 403), else 502.
func problemCode(err error) int {
	if code := callCode(err); code != 0 {
		return code
	}
	return http.StatusBadGateway
}
