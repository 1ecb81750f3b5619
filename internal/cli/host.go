package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/sublet-dev/sublet/internal/controlplane"
	"github.com/sublet-dev/sublet/internal/hostcluster"
)

func newHostCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "host",
		Short: "Run a local host cluster with simulated nodes",
	}
	cmd.AddCommand(newHostRunCommand())
	return cmd
}

func newHostRunCommand() *cobra.Command {
	o := hostcluster.NewOptions()
	cmd := &cobra.Command{
		Use:   "run --data-dir DIR [--nodes N]",
		Short: "Run a local Kubernetes host cluster on this machine",
		Long: `Runs a real Kubernetes control plane (kube-apiserver, controller-manager,
kube-scheduler and a datastore) in this process, with nodes and pods simulated
by KWOK: pods are scheduled, become Running and get pod IPs, and kubectl logs
and exec work. It writes an admin kubeconfig into the data dir and runs until
interrupted; the next start on the same data dir keeps every object.`,
		Example: `  # two nodes, data kept in ./host-data
  sublet host run --data-dir ./host-data --nodes 2

  # then, in another terminal
  export KUBECONFIG=./host-data/admin.kubeconfig
  kubectl get nodes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServer(o, o.ControlPlane, "host.log", func(cp *controlplane.ControlPlane, logFile string) error {
				var kwokLog io.Writer = os.Stderr
				if logFile != "" {
					if f, err := os.OpenFile(filepath.Join(filepath.Dir(logFile), "kwok.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
						defer f.Close()
						kwokLog = f
					}
				}
				return hostcluster.Run(cmd.Context(), cp, *o, klog.Background(), kwokLog, func(info hostcluster.Info) error {
					printReady(cmd.OutOrStdout(), fmt.Sprintf("host cluster with %d simulated nodes", len(info.Nodes)), info.Info, logFile, o.ControlPlane.DataDir)
					return nil
				})
			})
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}
