package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sublet-dev/sublet/internal/controlplane"
)

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the Kubernetes version this build of sublet runs",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "kubernetes: %s\n", controlplane.BinaryVersion())
		},
	}
}
