package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/sublet-dev/sublet/internal/controlplane"
	"github.com/sublet-dev/sublet/internal/exitcode"
)

func newControlPlaneCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:    "controlplane",
		Short:  "Run a bare Kubernetes control plane (for tests and debugging)",
		Hidden: true,
	}
	cmd.AddCommand(newControlPlaneRunCommand())
	return cmd
}

func newControlPlaneRunCommand() *cobra.Command {
	o := controlplane.NewOptions()
	var mode string
	cmd := &cobra.Command{
		Use:   "run --data-dir DIR",
		Short: "Run kube-apiserver, controller-manager and a datastore in this process",
		Long: `Runs a Kubernetes control plane in this process until interrupted. In virtual
mode (the default) there is no scheduler and no node or volume controllers, as
in a virtual cluster; host mode adds kube-scheduler.`,
		Example: `  sublet controlplane run --data-dir /tmp/cp --port 0`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Mode = controlplane.Mode(mode)
			return runServer(o, o, "control-plane.log", func(cp *controlplane.ControlPlane, logFile string) error {
				return cp.Run(cmd.Context(), func(info controlplane.Info) error {
					printReady(cmd.OutOrStdout(), "control plane", info, logFile, o.DataDir)
					return nil
				})
			})
		},
	}
	o.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&mode, "mode", string(controlplane.ModeVirtual), "Controller set: virtual (no scheduler, no node/volume controllers) or host.")
	return cmd
}

// serverOptions are the options of a command that runs a control plane.
type serverOptions interface {
	Complete() error
	Validate() error
}

// runServer completes and validates o, checks and locks the data dir of the
// control plane cpOpts describes, sends the components' logs to logName in
// it, and calls run.
func runServer(o serverOptions, cpOpts *controlplane.Options, logName string, run func(cp *controlplane.ControlPlane, logFile string) error) error {
	if err := o.Complete(); err != nil {
		return err
	}
	if err := o.Validate(); err != nil {
		return exitcode.ConfigErr(err)
	}
	cp := controlplane.New(*cpOpts, klog.Background())
	if err := cp.Prepare(); err != nil {
		return err
	}
	logFile, closeLog := redirectComponentLogs(cp, logName)
	defer closeLog()
	return run(cp, logFile)
}

// redirectComponentLogs sends the Kubernetes components' logs to a file in
// the data dir and returns its path ("" if they stay on stderr) and a func
// that closes it.
func redirectComponentLogs(cp *controlplane.ControlPlane, name string) (string, func()) {
	path := filepath.Join(cp.DataDir(), "logs", name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return "", func() {}
	}
	klog.LogToStderr(false)
	klog.SetOutput(f)
	cp.SetLogOutput(f)
	return path, func() { klog.Flush(); f.Close() }
}

func printReady(w io.Writer, what string, info controlplane.Info, logFile, dataDir string) {
	fmt.Fprintf(w, "Sublet %s is ready (Kubernetes %s) at %s\n", what, info.Version, info.URL)
	fmt.Fprintf(w, "Admin kubeconfig: %s\n\n", info.AdminKubeconfig)
	fmt.Fprintf(w, "Try:\n  export KUBECONFIG=%s\n  kubectl get namespaces\n\n", info.AdminKubeconfig)
	if logFile != "" {
		fmt.Fprintf(w, "Logs: %s\n", logFile)
	}
	fmt.Fprintf(w, "Press Ctrl-C to stop; the data stays in %s for the next start.\n", dataDir)
}
