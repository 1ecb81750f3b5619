package cli

import (
	"fmt"
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
			return runServer(o, o.ControlPlane, "vcluster.log", func(cp *controlplane.ControlPlane, logFile string) error {
				return vcluster.Run(cmd.Context(), cp, *o, klog.Background(), legacyregistry.Registerer(), func(info vcluster.Info) error {
					printReady(cmd.OutOrStdout(), "virtual cluster "+info.Name, info.Info, logFile, o.ControlPlane.DataDir)
					fmt.Fprintf(cmd.OutOrStdout(), "Cluster DNS: %s (UDP and TCP)\n", info.DNSAddress)
					return nil
				})
			})
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}
