// Package cli holds the sublet command tree.
package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sublet-dev/sublet/internal/exitcode"
)

// Execute runs the sublet command line and returns the process exit code:
// exitcode.Config when flags or options were refused (running it again
// unchanged will fail again), exitcode.Failure for any other error.
func Execute() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var profile cpuProfile
	cmd := NewRootCommand()
	profile.addFlag(cmd)
	err := cmd.ExecuteContext(ctx)
	profile.stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
	}
	return exitcode.Of(err)
}

// NewRootCommand builds the command tree.
func NewRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "sublet",
		Short: "Virtual Kubernetes clusters, each running inside one namespace of a host cluster",
		Long: `Sublet runs fully functional Kubernetes clusters whose control planes live in a
single namespace of a host cluster. Workloads are synced to the host; everything
else stays in the virtual cluster.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// component-base registers a --version flag on the process-wide flag
	// set, which cobra shows on every command; 'sublet version' is ours.
	if f := pflag.CommandLine.Lookup("version"); f != nil {
		f.Hidden = true
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return exitcode.Configf("%w (see '%s --help')", err, c.CommandPath())
	})
	root.AddCommand(newUpCommand(), newLoginCommand(), newLogoutCommand(), newCreateCommand(), newUseCommand(), newDeleteCommand(), newSleepCommand(), newWakeupCommand(), newSnapshotCommand(), newRestoreCommand(), newMoveCommand(), newListCommand(), newConnectCommand(),
		newHostCommand(), newVClusterCommand(), newAgentCommand(), newServerCommand(), newControlPlaneCommand(), newVersionCommand())
	return root
}
