package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/platformapi"
)

// annotationMovedFrom marks a virtual cluster made by a move with the
// cluster it came from.
const annotationMovedFrom = storagev1.AnnotationMovedFrom

// movingState are the source's annotations a move does not carry over:
// its state (sleep, a move, a restore), not the user's settings.
var movingState = map[string]bool{
	storagev1.AnnotationRestoreFrom: true, storagev1.AnnotationForkFrom: true, storagev1.AnnotationSeedFailed: true,
	storagev1.AnnotationMovingTo: true, storagev1.AnnotationMovingUntil: true, annotationMovedFrom: true, storagev1.AnnotationMovedFromUID: true,
	storagev1.AnnotationSleepingSince: true, storagev1.AnnotationForceSleep: true, storagev1.AnnotationPreventWakeup: true,
	storagev1.AnnotationLastActivity: true,
}

type moveOptions struct {
	target  vclusterTarget
	to, via string
	timeout time.Duration
}

func newMoveCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "move", Short: "Move a virtual cluster to another connected cluster"}
	o := &moveOptions{}
	vc := &cobra.Command{
		Use:   "vcluster NAME --to-cluster OTHER [--via oci://REGISTRY/PREFIX/NAMESPACE/REPO:TAG]",
		Short: "Move a virtual cluster to another connected cluster, same name, namespace and identity",
		Long: `Moves virtual cluster NAME to connected cluster OTHER, with its objects, its identity (CA,
service-account key: tokens stay valid), its spec, labels and annotations:

 1. The source is held still: it is put to sleep, and while the move holds it the platform answers
    its requests 503 with Retry-After (clients such as kubectl wait and retry) instead of waking it,
    so nothing written to it is left behind.
 2. A snapshot of it is written to the OCI location --via (a repository both clusters' agents
    allow, see their --snapshot-registries; default oci://MOVE-REGISTRY/NAMESPACE/NAME:move-TIME
    when the platform names one, its server's --move-registry).
 3. It is restored in OTHER under the same name and namespace, and once it answers there through
    the platform, the access keys scoped to the source are given to it: every kube-context of it
    that 'sublet use vcluster' wrote, whoever's, reaches it unchanged (same name, server and key;
    --path-form contexts name the old cluster and need 'sublet use vcluster' again).
 4. The source is deleted.

A failure at any step before the last deletes what was made in OTHER and wakes the source (if it
was awake). A move whose CLI is stopped frees the source within 15 s, and the next move replaces
what it left in OTHER.
`,
		Example: `  # Through the platform's move registry
  sublet move vcluster demo --to-cluster eu-2

  # Through a location of your own
  sublet move vcluster demo --to-cluster eu-2 --via oci://registry.example.com/snapshots/vcluster-demo/demo:move`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMove(cmd, o, args[0])
		},
	}
	o.target.addFlags(vc)
	vc.Flags().StringVar(&o.to, "to-cluster", "", "Connected cluster to move to (required).")
	vc.Flags().StringVar(&o.via, "via", "", "OCI location the snapshot travels through, oci://REGISTRY/PREFIX/NAMESPACE/REPO:TAG; default: under the platform's move registry.")
	vc.Flags().DurationVar(&o.timeout, "timeout", 10*time.Minute, "How long each step may take.")
	cmd.AddCommand(vc)
	return cmd
}

// move is one move, as it goes.
type move struct {
	o        *moveOptions
	c        *loginConfig
	out      io.Writer
	name, ns string
	from     string
	// via is where the snapshot travels: --via, or under the platform's
	// move registry.
	via            string
	src, dst       client.Client
	srcVC, created *storagev1.VirtualCluster
	// wasAwake, hadForceSleep: the source's state before freeze.
	wasAwake, hadForceSleep bool
}

func runMove(cmd *cobra.Command, o *moveOptions, name string) error {
	ctx := cmd.Context()
	m, err := prepareMove(ctx, cmd.OutOrStdout(), o, name)
	if err != nil {
		return err
	}
	stopRenewing, err := m.freeze(ctx)
	if err == nil {
		err = m.copy(ctx)
	}
	if err == nil {
		// First, so the user's own kube-context keeps its key too.
		m.moveKeys(ctx)
		err = m.switchContext(ctx)
	}
	stopRenewing()
	if err != nil {
		// Nothing of the move stays: the source serves as before.
		if m.created != nil {
			_ = m.dst.Delete(context.WithoutCancel(ctx), m.created)
		}
		if terr := m.thaw(ctx); terr != nil {
			return fmt.Errorf("%w; virtual cluster %s stays in cluster %s, but could not be woken (%v): 'sublet wakeup vcluster %s' wakes it", err, name, m.from, terr, name)
		}
		return fmt.Errorf("%w; virtual cluster %s keeps serving in cluster %s", err, name, m.from)
	}
	return m.deleteSource(ctx)
}

// prepareMove checks everything a move needs before it changes anything.
func prepareMove(ctx context.Context, out io.Writer, o *moveOptions, name string) (*move, error) {
	switch {
	case o.to == "":
		return nil, fmt.Errorf("--to-cluster is required: the connected cluster to move to (sublet list clusters)")
	}
	if err := validateTarget(name, o.target.space); err != nil {
		return nil, err
	}
	c, err := loadLogin()
	if err != nil {
		return nil, err
	}
	m := &move{o: o, c: c, out: out, name: name}
	if m.from, m.ns, err = o.target.resolve(ctx, c, name); err != nil {
		return nil, err
	}
	to := o.to
	if err := connected(ctx, c, to); err != nil {
		return nil, err
	}
	if m.via, err = moveVia(ctx, c, o.via, m.ns, name); err != nil {
		return nil, err
	}
	if to == m.from {
		return nil, fmt.Errorf("virtual cluster %s is already in cluster %s", name, to)
	}
	if m.src, err = c.clusterClient(m.from); err != nil {
		return nil, err
	}
	if m.dst, err = c.clusterClient(to); err != nil {
		return nil, err
	}
	m.srcVC = &storagev1.VirtualCluster{}
	if err := m.src.Get(ctx, types.NamespacedName{Namespace: m.ns, Name: name}, m.srcVC); err != nil {
		return nil, fmt.Errorf("virtual cluster %s in namespace %s of cluster %s: %w", name, m.ns, m.from, err)
	}
	return m, m.clearTarget(ctx)
}

// clearTarget refuses a move onto a virtual cluster of that name in the
// target cluster, unless it is what an interrupted move of this one left
// (annotated moved-from the source's cluster): that is deleted, and the
// move starts again.
func (m *move) clearTarget(ctx context.Context) error {
	key := types.NamespacedName{Namespace: m.ns, Name: m.name}
	old := &storagev1.VirtualCluster{}
	err := m.dst.Get(ctx, key, old)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cluster %s: %w", m.o.to, err)
	}
	if old.Annotations[annotationMovedFrom] != m.from {
		return fmt.Errorf("virtual cluster %s already exists in namespace %s of cluster %s; nothing was moved", m.name, m.ns, m.o.to)
	}
	fmt.Fprintf(m.out, "Deleting what an interrupted move left in cluster %s\n", m.o.to)
	if err := m.dst.Delete(ctx, old); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return poll(ctx, 300*time.Millisecond, m.o.timeout, func(ctx context.Context) (bool, error) {
		return apierrors.IsNotFound(m.dst.Get(ctx, key, &storagev1.VirtualCluster{})), nil
	})
}

// copy snapshots the source to --via and restores it in --to-cluster
// until it answers there through the platform.
func (m *move) copy(ctx context.Context) error {
	snap, err := createSnapshot(ctx, m.src, m.ns, m.name, "", m.via)
	if err != nil {
		return err
	}
	fmt.Fprintf(m.out, "Snapshotting virtual cluster %s (namespace %s, cluster %s) to %s\n", m.name, m.ns, m.from, m.via)
	if snap, err = waitSnapshot(ctx, m.out, m.src, m.ns, snap.Name, m.o.timeout); err != nil {
		return err
	}
	if err := ensureNamespace(ctx, m.c, m.o.to, m.ns, m.name); err != nil {
		return err
	}
	vc := storagev1.StartedFrom(m.name, m.ns, snap, storagev1.AnnotationRestoreFrom, snap.Status.Location)
	vc.Spec = *m.srcVC.Spec.DeepCopy()
	vc.Labels = maps.Clone(m.srcVC.Labels)
	for k, v := range m.srcVC.Annotations {
		if !movingState[k] {
			vc.Annotations[k] = v
		}
	}
	vc.Annotations[annotationMovedFrom] = m.from
	vc.Annotations[storagev1.AnnotationMovedFromUID] = string(m.srcVC.UID)
	if err := m.dst.Create(ctx, vc); err != nil {
		return fmt.Errorf("make virtual cluster %s in cluster %s: %w", m.name, m.o.to, err)
	}
	m.created = vc
	fmt.Fprintf(m.out, "Restoring it in cluster %s\n", m.o.to)
	if err := waitSeeded(ctx, m.dst, m.ns, m.name, storagev1.AnnotationRestoreFrom, snap.Status.Location, m.o.timeout); err != nil {
		return err
	}
	if err := waitReady(ctx, m.out, m.dst, m.ns, m.name, m.o.timeout); err != nil {
		return err
	}
	return waitAnswers(ctx, m.c, m.o.to, m.ns, m.name, m.o.timeout)
}

// waitAnswers waits until virtual cluster ns/name of cluster answers
// through the platform (which may still hold the address it had before a
// restart for a few seconds).
func waitAnswers(ctx context.Context, c *loginConfig, cluster, ns, name string, timeout time.Duration) error {
	kube, err := kubernetes.NewForConfig(c.restConfig(fmt.Sprintf("/kubernetes/virtualcluster/%s/%s/%s", cluster, ns, name)))
	if err != nil {
		return err
	}
	err = poll(ctx, 200*time.Millisecond, timeout, func(ctx context.Context) (bool, error) {
		_, err := kube.Discovery().ServerVersion()
		return err == nil, nil
	})
	if errors.Is(err, errTimedOut) {
		return fmt.Errorf("virtual cluster %s is ready but does not answer through the platform after %s", name, timeout)
	}
	return err
}

// moveKeys has the platform give the keys scoped to the source (every
// kube-context of it that 'sublet use vcluster' wrote, whoever's) to the
// moved cluster. The move goes on without: those kube-contexts then need
// 'sublet use vcluster NAME --cluster OTHER' again.
func (m *move) moveKeys(ctx context.Context) {
	var res platformapi.MoveResult
	req := platformapi.MoveRequest{Cluster: m.from, Namespace: m.ns, Name: m.name, ToCluster: m.o.to}
	if err := m.c.callJSON(ctx, "POST", "/api/v1/moves", req, &res); err != nil {
		fmt.Fprintf(m.out, "Warning: the access keys scoped to it were not given to the moved cluster (%v): other kube-contexts of it need 'sublet use vcluster %s --cluster %s'\n", err, m.name, m.o.to)
		return
	}
	fmt.Fprintf(m.out, "%d access keys scoped to it (its kube-contexts) now reach it in cluster %s\n", res.Keys, m.o.to)
}

// switchContext points the user's kube-context at the moved cluster.
func (m *move) switchContext(ctx context.Context) error {
	ctxName, had, err := moveContext(ctx, m.c, m.from, m.o.to, m.ns, m.name)
	if err != nil {
		return fmt.Errorf("virtual cluster %s ran in cluster %s, but its kube-context %s could not be switched (%w), so the move is undone", m.name, m.o.to, ctxName, err)
	}
	if had {
		fmt.Fprintf(m.out, "kube-context %s now reaches it in cluster %s\n", ctxName, m.o.to)
	}
	return nil
}

// deleteSource deletes the source, which the move holds still.
func (m *move) deleteSource(ctx context.Context) error {
	if err := m.src.Delete(ctx, m.srcVC); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("virtual cluster %s runs in cluster %s, but the source in cluster %s could not be deleted (%w); it serves again within %s: delete it", m.name, m.o.to, m.from, err, moveLease)
	}
	fmt.Fprintf(m.out, "Moved virtual cluster %s (namespace %s) from cluster %s to cluster %s\n", m.name, m.ns, m.from, m.o.to)
	return nil
}

// moveVia is the location a move of ns/name goes through: via, or one
// under the platform's move registry.
func moveVia(ctx context.Context, c *loginConfig, via, ns, name string) (string, error) {
	if via != "" {
		return via, nil
	}
	var info platformapi.Info
	if err := c.getJSON(ctx, "/api/v1/info", &info); err != nil {
		return "", err
	}
	if info.MoveRegistry == "" {
		return "", fmt.Errorf("--via is required: this platform names no move registry (its server's --move-registry); give an OCI location oci://REGISTRY/PREFIX/NAMESPACE/REPO:TAG both clusters' agents allow (their --snapshot-registries)")
	}
	return fmt.Sprintf("oci://%s/%s/%s:move-%s", info.MoveRegistry, ns, name, time.Now().UTC().Format("20060102-150405")), nil
}

// connected fails unless cluster name is connected to the platform.
func connected(ctx context.Context, c *loginConfig, name string) error {
	var clusters []platformapi.ClusterInfo
	if err := c.getJSON(ctx, "/api/v1/clusters", &clusters); err != nil {
		return err
	}
	var names []string
	for _, cl := range clusters {
		if cl.Name == name {
			return nil
		}
		names = append(names, cl.Name)
	}
	return fmt.Errorf("cluster %q is not connected (connected: %s)", name, strings.Join(names, ", "))
}
