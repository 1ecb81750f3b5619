package cli

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/klog/v2"

	"github.com/sublet-dev/sublet/internal/controlplane"
	"github.com/sublet-dev/sublet/internal/vcluster"
)

func newVClusterCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vcluster",
		Short: "Run a virtual cluster's runtime (control plane and syncer)",
	}
	cmd.AddCommand(newVClusterRunCommand())
	return cmd
}

func newVClusterRunCommand() *cobra.Command {
	o := vcluster.NewOptions()
	cmd := &cobra.Command{
		Use:   "run --name NAME --host-namespace NS --data-dir DIR",
		Short: "Run a virtual cluster whose workloads run in one host namespace",
		Long: `Runs the virtual cluster's control plane (kube-apiserver, controller-manager,
datastore; no scheduler) and the syncer that runs its pods in the host
namespace under names NAME-x-NAMESPACE-x-VCLUSTER and copies their status
back. Everything else (deployments, CRDs, RBAC, namespaces) stays virtual.`,
		Example: `  sublet vcluster run --name demo --host-kubeconfig host.kubeconfig \
    --host-namespace vcluster-demo --data-dir ./demo`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := finishReplacement(o.ControlPlane.DataDir); err != nil {
				return err
			}
			if o.DataOnly {
				return vcluster.RunDataOnly(cmd.Context(), *o, klog.Background())
			}
			err := runServer(o, o.ControlPlane, "vcluster.log", func(cp *controlplane.ControlPlane, logFile string) error {
				return vcluster.Run(cmd.Context(), cp, *o, klog.Background(), legacyregistry.Registerer(), func(info vcluster.Info) error {
					printReady(cmd.OutOrStdout(), "virtual cluster "+info.Name, info.Info, logFile, o.ControlPlane.DataDir)
					fmt.Fprintf(cmd.OutOrStdout(), "Cluster DNS: %s (UDP and TCP)\n", info.DNSAddress)
					return nil
				})
			})
			if errors.Is(err, vcluster.ErrDataReplaced) {
				return restartSelf()
			}
			return err
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// finishReplacement puts a data dir the agent replaced through the data
// endpoint in place, before anything reads the data dir.
func finishReplacement(dataDir string) error {
	if dataDir == "" {
		return nil // Validate says it is required
	}
	done, err := controlplane.FinishReplacement(dataDir)
	if err != nil {
		return fmt.Errorf("put the new data dir in place (a restore or fork that was cut short; the next start tries again): %w", err)
	}
	if done {
		klog.Background().Info("The data dir was replaced by a restore or fork; starting on it", "dataDir", dataDir)
	}
	return nil
}

// restartSelf runs this binary again with the same arguments, in place of
// this process (same PID: a container keeps running, with no restart
// counted), once everything stopped.
func restartSelf() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("restart on the new data dir: %w", err)
	}
	klog.Flush()
	return fmt.Errorf("restart on the new data dir: %w", syscall.Exec(exe, os.Args, os.Environ()))
}
