package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/platformapi"
	"github.com/sublet-dev/sublet/internal/sleepmode"
)

func newSnapshotCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Short: "Snapshot a virtual cluster"}
	var t vclusterTarget
	var to, name string
	var noWait bool
	var timeout time.Duration
	vc := &cobra.Command{
		Use:   "vcluster NAME [--to DEST]",
		Short: "Write a snapshot of a virtual cluster, awake or asleep, and print its name last",
		Long: `Writes a consistent snapshot of one virtual cluster: every object in its datastore (SQLite's
online backup), its values and template, and its identity (CA, service-account key), all but a
small clear manifest encrypted with the platform's snapshot key. A running cluster keeps running;
a sleeping one is not woken. A VirtualClusterSnapshot object in the cluster's namespace records
it (kubectl get vcsnap); deleting the object deletes a snapshot kept as a file.

DEST is where it goes: empty for a file under the agent's snapshot dir, an absolute path under
that dir's directory of the namespace, or oci://REGISTRY/REPO:TAG in a repository the host
admin allows (the agent's --snapshot-registries; namespace NS writes under PREFIX/NS/).
The last line printed is the snapshot's name, for scripts:
  snap=$(sublet snapshot vcluster demo | tail -n1)`,
		Example: `  sublet snapshot vcluster demo
  sublet snapshot vcluster demo --to oci://registry.example.com/snapshots/vcluster-demo/demo:monday`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSnapshot(cmd, &t, args[0], name, to, noWait, timeout)
		},
	}
	t.addFlags(vc)
	vc.Flags().StringVar(&to, "to", "", "Where the snapshot goes: empty (a file the agent keeps), an absolute path, or oci://REGISTRY/REPO:TAG.")
	vc.Flags().StringVar(&name, "name", "", "Name of the VirtualClusterSnapshot; default NAME-YYYYMMDD-HHMMSS.")
	vc.Flags().BoolVar(&noWait, "no-wait", false, "Return once the snapshot is asked for.")
	vc.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "How long to wait for the snapshot.")
	cmd.AddCommand(vc)
	return cmd
}

// runSnapshot asks for a snapshot of virtual cluster vcName and waits for
// it.
func runSnapshot(cmd *cobra.Command, t *vclusterTarget, vcName, name, to string, noWait bool, timeout time.Duration) error {
	if err := validateTarget(vcName, t.space); err != nil {
		return err
	}
	ctx := cmd.Context()
	cl, cluster, ns, err := t.client(ctx, vcName)
	if err != nil {
		return err
	}
	if err := cl.Get(ctx, types.NamespacedName{Namespace: ns, Name: vcName}, &storagev1.VirtualCluster{}); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("virtual cluster %s does not exist in namespace %s of cluster %s", vcName, ns, cluster)
		}
		return fmt.Errorf("virtual cluster %s: %w", vcName, err)
	}
	snap, err := createSnapshot(ctx, cl, ns, vcName, name, to)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "Snapshotting virtual cluster %s (namespace %s, cluster %s) as %s\n", vcName, ns, cluster, snap.Name)
	if !noWait {
		if snap, err = waitSnapshot(ctx, out, cl, ns, snap.Name, timeout); err != nil {
			return err
		}
		fmt.Fprintf(out, "Snapshot %s: %d bytes at %s (Kubernetes %s)\n", snap.Name, snap.Status.Size, snap.Status.Location, snap.Status.KubernetesVersion)
	}
	fmt.Fprintln(out, snap.Name)
	return nil
}

// createSnapshot creates a VirtualClusterSnapshot of vcName in ns.
// The default name is NAME-YYYYMMDD-HHMMSS, with -2, -3… when several are
// made in one second.
func createSnapshot(ctx context.Context, cl client.Client, ns, vcName, name, to string) (*storagev1.VirtualClusterSnapshot, error) {
	given, now := name != "", time.Now()
	for i := 1; ; i++ {
		if !given {
			name = storagev1.SnapshotName(vcName, now, i)
		}
		snap := &storagev1.VirtualClusterSnapshot{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec:       storagev1.VirtualClusterSnapshotSpec{VirtualCluster: vcName, Location: to},
		}
		err := cl.Create(ctx, snap)
		switch {
		case err == nil:
			return snap, nil
		case apierrors.IsAlreadyExists(err) && (given || i == 20):
			return nil, fmt.Errorf("snapshot %s already exists in namespace %s; pass another --name", name, ns)
		case !apierrors.IsAlreadyExists(err):
			return nil, fmt.Errorf("create snapshot %s: %w", name, err)
		}
	}
}

// waitSnapshot waits until snapshot name is Completed, printing each
// change of phase; Failed is an error with the agent's message.
func waitSnapshot(ctx context.Context, w io.Writer, cl client.Client, ns, name string, timeout time.Duration) (*storagev1.VirtualClusterSnapshot, error) {
	start, last := time.Now(), ""
	snap := &storagev1.VirtualClusterSnapshot{}
	err := poll(ctx, 100*time.Millisecond, timeout, func(ctx context.Context) (bool, error) {
		if err := cl.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, snap); err != nil {
			return false, nil
		}
		line := string(snap.Status.Phase)
		if line != last && line != "" {
			fmt.Fprintf(w, "  %5.1fs  %s\n", time.Since(start).Seconds(), line)
			last = line
		}
		switch snap.Status.Phase {
		case storagev1.SnapshotCompleted:
			return true, nil
		case storagev1.SnapshotFailed:
			return false, fmt.Errorf("snapshot %s failed: %s", name, snap.Status.Message)
		}
		return false, nil
	})
	if errors.Is(err, errTimedOut) {
		return nil, fmt.Errorf("snapshot %s not written after %s (last: %s); 'kubectl get vcsnap %s -n %s' shows its status", name, timeout, last, name, ns)
	}
	return snap, err
}

func newRestoreCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "restore", Short: "Put a virtual cluster back to a snapshot"}
	var t vclusterTarget
	var from string
	var timeout time.Duration
	vc := &cobra.Command{
		Use:   "vcluster NAME --from SNAPSHOT",
		Short: "Put a virtual cluster back to a snapshot, with the same identity; make it again if it was deleted",
		Long: `Puts virtual cluster NAME back to a snapshot: every object as it was (UIDs kept), the same CA
and service-account key (tokens issued before stay valid); the syncer then makes the host objects
match (pods started again, objects the snapshot lacks removed). The snapshot is read and checked in
full before the running cluster is stopped: a snapshot that cannot be used leaves it as it was.
If NAME was deleted, it is made again with the snapshot's values and template.
SNAPSHOT is a VirtualClusterSnapshot of NAME's namespace (sublet list snapshots), or a location.`,
		Example: `  sublet restore vcluster demo --from demo-20261206-101500`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRestore(cmd, &t, args[0], from, timeout)
		},
	}
	t.addFlags(vc)
	vc.Flags().StringVar(&from, "from", "", "The snapshot: a VirtualClusterSnapshot's name, oci://REGISTRY/REPO:TAG, or an absolute path (required).")
	vc.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "How long to wait until the cluster is ready again.")
	cmd.AddCommand(vc)
	return cmd
}

// runRestore annotates (or makes again) virtual cluster name to be
// restored from a snapshot, and waits until it runs on it.
func runRestore(cmd *cobra.Command, t *vclusterTarget, name, from string, timeout time.Duration) error {
	if from == "" {
		return fmt.Errorf("--from is required: the snapshot to restore (sublet list snapshots)")
	}
	if err := validateTarget(name, t.space); err != nil {
		return err
	}
	ctx := cmd.Context()
	cl, cluster, ns, err := t.client(ctx, name)
	if err != nil {
		return err
	}
	snap, err := completedSnapshot(ctx, cl, ns, from)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	vc := &storagev1.VirtualCluster{}
	err = cl.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, vc)
	switch {
	case apierrors.IsNotFound(err):
		vc = storagev1.StartedFrom(name, ns, snap, storagev1.AnnotationRestoreFrom, from)
		if err := cl.Create(ctx, vc); err != nil {
			return fmt.Errorf("make virtual cluster %s again: %w", name, err)
		}
		fmt.Fprintf(out, "Making virtual cluster %s (namespace %s, cluster %s) again from %s\n", name, ns, cluster, from)
	case err != nil:
		return fmt.Errorf("virtual cluster %s: %w", name, err)
	default:
		patch := sleepmode.AnnotationsPatch(map[string]*string{storagev1.AnnotationRestoreFrom: ptr.To(from)})
		if err := cl.Patch(ctx, vc, client.RawPatch(types.MergePatchType, patch)); err != nil {
			return fmt.Errorf("virtual cluster %s: %w", name, err)
		}
		fmt.Fprintf(out, "Restoring virtual cluster %s (namespace %s, cluster %s) from %s\n", name, ns, cluster, from)
	}
	if err := waitSeeded(ctx, cl, ns, name, storagev1.AnnotationRestoreFrom, from, timeout); err != nil {
		return err
	}
	if err := waitReady(ctx, out, cl, ns, name, timeout); err != nil {
		return err
	}
	c, err := loadLogin()
	if err != nil {
		return err
	}
	if err := waitAnswers(ctx, c, cluster, ns, name, timeout); err != nil {
		return err
	}
	fmt.Fprintf(out, "Virtual cluster %s is restored from %s and ready\n", name, from)
	return nil
}

// completedSnapshot reads snapshot from of namespace ns when it names a
// VirtualClusterSnapshot (nil for a location), and refuses one that is not
// Completed.
func completedSnapshot(ctx context.Context, cl client.Client, ns, from string) (*storagev1.VirtualClusterSnapshot, error) {
	if strings.ContainsAny(from, "/:") {
		return nil, nil
	}
	snap := &storagev1.VirtualClusterSnapshot{}
	if err := cl.Get(ctx, types.NamespacedName{Namespace: ns, Name: from}, snap); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("snapshot %s does not exist in namespace %s (sublet list snapshots)", from, ns)
		}
		return nil, fmt.Errorf("snapshot %s: %w", from, err)
	}
	if snap.Status.Phase != storagev1.SnapshotCompleted {
		return nil, fmt.Errorf("snapshot %s is %s, not Completed: %s", from, cmp.Or(string(snap.Status.Phase), "Pending"), snap.Status.Message)
	}
	return snap, nil
}

// waitSeeded waits until the agent has carried out annotation (value from)
// on virtual cluster name: it removed the annotation, or refused it.
func waitSeeded(ctx context.Context, cl client.Client, ns, name, annotation, from string, timeout time.Duration) error {
	err := poll(ctx, 100*time.Millisecond, timeout, func(ctx context.Context) (bool, error) {
		vc := &storagev1.VirtualCluster{}
		if err := cl.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, vc); err != nil {
			return false, nil
		}
		c := meta.FindStatusCondition(vc.Status.Conditions, storagev1.ConditionRestored)
		failed := c != nil && c.Status == metav1.ConditionFalse && strings.Contains(c.Message, from)
		switch {
		case failed && (vc.Annotations[annotation] == "" || vc.Annotations[storagev1.AnnotationSeedFailed] == from):
			return false, fmt.Errorf("%s", c.Message)
		case vc.Annotations[storagev1.AnnotationSeedFailed] == from:
			return false, nil // refused; its condition is on its way
		}
		return vc.Annotations[annotation] == "", nil
	})
	if errors.Is(err, errTimedOut) {
		return fmt.Errorf("the agent has not taken up %s=%s on virtual cluster %s after %s; see its status", annotation, from, name, timeout)
	}
	return err
}

func newListSnapshotsCommand(output *string) *cobra.Command {
	var cluster, space string
	cmd := &cobra.Command{
		Use: "snapshots", Aliases: []string{"snapshot"}, Short: "List the snapshots of virtual clusters", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadLogin()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			name, err := c.pickCluster(ctx, cluster)
			if err != nil {
				return err
			}
			cl, err := c.clusterClient(name)
			if err != nil {
				return err
			}
			list := &storagev1.VirtualClusterSnapshotList{}
			if err := cl.List(ctx, list, client.InNamespace(space)); err != nil {
				return fmt.Errorf("list snapshots in cluster %s: %w", name, err)
			}
			var rows [][]string
			for _, s := range list.Items {
				rows = append(rows, []string{s.Name, s.Namespace, s.Spec.VirtualCluster, string(s.Status.Phase), fmt.Sprint(s.Status.Size),
					s.Status.KubernetesVersion, s.Status.Location, platformapi.Age(s.CreationTimestamp.UTC().Format(time.RFC3339))})
			}
			return printList(cmd.OutOrStdout(), *output, list.Items, []string{"NAME", "NAMESPACE", "VIRTUALCLUSTER", "PHASE", "SIZE", "VERSION", "LOCATION", "AGE"}, rows)
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "Connected cluster; default: the only one.")
	cmd.Flags().StringVar(&space, "space", "", "Namespace; default: all you may list.")
	return cmd
}

// forkOf is a new VirtualCluster name in ns annotated to fork from from:
// a virtual cluster of the same host cluster (in ns or its default one),
// snapshotted now; a snapshot (NAME in ns, or NAMESPACE/NAME); or a
// location. It has the source's template and values.
func forkOf(ctx context.Context, w io.Writer, cl client.Client, name, ns, from string, timeout time.Duration) (*storagev1.VirtualCluster, error) {
	if strings.Contains(from, ":") || strings.HasPrefix(from, "/") {
		return storagev1.StartedFrom(name, ns, nil, storagev1.AnnotationForkFrom, from), nil
	}
	if srcNS, snapName, ok := strings.Cut(from, "/"); ok {
		snap, err := completedSnapshot(ctx, cl, srcNS, snapName)
		if err != nil {
			return nil, err
		}
		return storagev1.StartedFrom(name, ns, snap, storagev1.AnnotationForkFrom, storagev1.SnapshotRef(srcNS, snapName, ns)), nil
	}
	// A virtual cluster of the fork's namespace, else of its own default.
	srcNS := ns
	err := cl.Get(ctx, types.NamespacedName{Namespace: srcNS, Name: from}, &storagev1.VirtualCluster{})
	if apierrors.IsNotFound(err) && storagev1.DefaultNamespace(from) != ns {
		srcNS = storagev1.DefaultNamespace(from)
		err = cl.Get(ctx, types.NamespacedName{Namespace: srcNS, Name: from}, &storagev1.VirtualCluster{})
	}
	if err == nil {
		snap, err := createSnapshot(ctx, cl, srcNS, from, "", "")
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(w, "Snapshotting virtual cluster %s (namespace %s) as %s to fork it\n", from, srcNS, snap.Name)
		if snap, err = waitSnapshot(ctx, w, cl, srcNS, snap.Name, timeout); err != nil {
			return nil, err
		}
		return storagev1.StartedFrom(name, ns, snap, storagev1.AnnotationForkFrom, storagev1.SnapshotRef(srcNS, snap.Name, ns)), nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("--from %s: %w", from, err)
	}
	snap, err := completedSnapshot(ctx, cl, ns, from)
	if err != nil {
		return nil, fmt.Errorf("--from %s is neither a virtual cluster in namespace %s nor a completed snapshot in namespace %s (%v); name a snapshot of another namespace as NAMESPACE/NAME", from, srcNS, ns, err)
	}
	return storagev1.StartedFrom(name, ns, snap, storagev1.AnnotationForkFrom, from), nil
}
