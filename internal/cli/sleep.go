package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/sleepmode"
)

func newSleepCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "sleep", Short: "Put a virtual cluster to sleep"}
	var t vclusterTarget
	var preventWakeup, noWait bool
	vc := &cobra.Command{
		Use:   "vcluster NAME",
		Short: "Put a virtual cluster to sleep now: its control plane stops and its host pods go; everything else is kept",
		Long: `Puts a virtual cluster to sleep now, as its sleep mode would after inactivity: the control plane
stops (process runtime: the child exits; pod runtime: the StatefulSet is scaled to 0) and the
cluster's host pods are deleted. Its objects, data, host services, ingresses, PVCs and secrets stay.
The next request through the platform (kubectl, the CLI) wakes it, unless --prevent-wakeup is given:
then only 'sublet wakeup vcluster NAME' does.`,
		Example: `  sublet sleep vcluster demo
  sublet sleep vcluster team-a --prevent-wakeup`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			set := map[string]*string{storagev1.AnnotationForceSleep: ptr.To("true"), storagev1.AnnotationPreventWakeup: nil}
			if preventWakeup {
				set[storagev1.AnnotationPreventWakeup] = ptr.To("true")
			}
			return changeSleep(cmd, &t, args[0], set, storagev1.PhaseSleeping, noWait)
		},
	}
	t.addFlags(vc)
	vc.Flags().BoolVar(&preventWakeup, "prevent-wakeup", false, "Requests do not wake it; only 'sublet wakeup vcluster NAME' does.")
	vc.Flags().BoolVar(&noWait, "no-wait", false, "Return once the request is recorded.")
	cmd.AddCommand(vc)
	return cmd
}

func newWakeupCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "wakeup", Short: "Wake a sleeping virtual cluster"}
	var t vclusterTarget
	var noWait bool
	vc := &cobra.Command{
		Use:     "vcluster NAME",
		Short:   "Wake a sleeping virtual cluster and wait until it is ready",
		Example: `  sublet wakeup vcluster demo`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return changeSleep(cmd, &t, args[0], sleepmode.WakeupAnnotations(time.Now()), storagev1.PhaseReady, noWait)
		},
	}
	t.addFlags(vc)
	vc.Flags().BoolVar(&noWait, "no-wait", false, "Return once the request is recorded.")
	cmd.AddCommand(vc)
	return cmd
}

// changeSleep patches the sleep annotations of virtual cluster name and
// waits until it reaches phase want.
func changeSleep(cmd *cobra.Command, t *vclusterTarget, name string, set map[string]*string, want storagev1.VirtualClusterPhase, noWait bool) error {
	if err := validateTarget(name, t.space); err != nil {
		return err
	}
	ctx := cmd.Context()
	cl, cluster, ns, err := t.client(ctx, name)
	if err != nil {
		return err
	}
	obj := &storagev1.VirtualCluster{}
	obj.Namespace, obj.Name = ns, name
	if err := cl.Patch(ctx, obj, client.RawPatch(types.MergePatchType, sleepmode.AnnotationsPatch(set))); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("virtual cluster %s does not exist in namespace %s of cluster %s", name, ns, cluster)
		}
		return fmt.Errorf("virtual cluster %s: %w", name, err)
	}
	out := cmd.OutOrStdout()
	verb := map[storagev1.VirtualClusterPhase]string{storagev1.PhaseSleeping: "Putting", storagev1.PhaseReady: "Waking"}[want]
	fmt.Fprintf(out, "%s virtual cluster %s (namespace %s, cluster %s)%s\n", verb, name, ns, cluster,
		map[storagev1.VirtualClusterPhase]string{storagev1.PhaseSleeping: " to sleep"}[want])
	if noWait {
		return nil
	}
	if want == storagev1.PhaseReady {
		return waitReady(ctx, out, cl, ns, name, 5*time.Minute)
	}
	return waitPhase(ctx, out, func(ctx context.Context) (*storagev1.VirtualCluster, error) {
		vc := &storagev1.VirtualCluster{}
		return vc, cl.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, vc)
	}, want, 2*time.Minute)
}
