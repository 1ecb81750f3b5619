package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/sublet-dev/sublet/internal/agent"
)

// agentReadyLine is printed once the agent reconciles; tests wait for it.
const agentReadyLine = "Sublet agent is running"

func newAgentCommand() *cobra.Command {
	o := agent.NewOptions()
	cmd := &cobra.Command{
		Use:   "agent --kubeconfig FILE --state-dir DIR",
		Short: "Run virtual clusters for the VirtualCluster objects of a host cluster",
		Long: `Reconciles storage.loft.sh/v1 VirtualCluster objects in the host cluster: merges
their values (default template, referenced template, the object's own), runs each
virtual cluster (with --runtime process: a 'sublet vcluster run' child process
with least-privilege credentials for its namespace and data under --state-dir),
publishes its admin kubeconfig in secret vc-NAME (key config) and reports phase,
conditions and events. Deleting a VirtualCluster stops it and removes its data
and every host object it owned. At start the CRDs are created or upgraded.`,
		Example: `  sublet agent --kubeconfig host.kubeconfig --state-dir ~/.sublet/agent
  kubectl apply -f vcluster.yaml
  kubectl get virtualclusters -A`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			return agent.Run(cmd.Context(), *o, klog.Background().WithName("agent"), func() {
				fmt.Fprintf(cmd.OutOrStdout(), "%s (runtime %s, state in %s)\n", agentReadyLine, o.Runtime, o.StateDir)
			})
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}
