package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/pathflag"
	"github.com/sublet-dev/sublet/internal/platformapi"
)

func newLoginCommand() *cobra.Command {
	c := &loginConfig{}
	cmd := &cobra.Command{
		Use:   "login URL --access-key KEY",
		Short: "Log in to a Sublet platform server with an access key",
		Example: `  sublet login https://localhost:9443 --access-key slk_... --ca-file ~/.sublet/server/pki/ca.crt
  sublet login https://platform.example.com --access-key "$KEY"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c.Server = strings.TrimSuffix(args[0], "/")
			if !strings.HasPrefix(c.Server, "https://") {
				return fmt.Errorf("server URL %q must start with https://", c.Server)
			}
			if c.AccessKey == "" {
				return errors.New("--access-key is required (create one with 'sublet create accesskey')")
			}
			u, err := c.whoami(cmd.Context())
			if err != nil {
				return fmt.Errorf("log in to %s: %w", c.Server, err)
			}
			if err := c.save(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Logged in to %s as %s\n", c.Server, u.Name)
			return nil
		},
	}
	cmd.Flags().StringVar(&c.AccessKey, "access-key", "", "Access key to authenticate with.")
	pathflag.Var(cmd.Flags(), &c.CAFile, "ca-file", "", "CA certificate the server's certificate is signed by (sublet server prints its path).")
	cmd.Flags().BoolVar(&c.Insecure, "insecure", false, "Do not verify the server's certificate.")
	return cmd
}

func newLogoutCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Forget the platform server and access key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := os.Remove(configPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Logged out")
			return nil
		},
	}
}

// printList prints rows as a table, or items as JSON or YAML.
func printList(w io.Writer, output string, items interface{}, header []string, rows [][]string) error {
	switch output {
	case "", "table", "wide":
		tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
		fmt.Fprintln(tw, strings.Join(header, "\t"))
		for _, r := range rows {
			fmt.Fprintln(tw, strings.Join(r, "\t"))
		}
		return tw.Flush()
	case "json":
		data, err := json.MarshalIndent(items, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(data))
		return err
	case "yaml":
		data, err := yaml.Marshal(items)
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	}
	return fmt.Errorf("-o %q: must be table, json or yaml", output)
}

func newListCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{Use: "list", Short: "List clusters, virtual clusters, snapshots or access keys of the platform"}
	cmd.PersistentFlags().StringVarP(&output, "output", "o", "table", "Output format: table, json or yaml.")
	cmd.AddCommand(newListAccessKeysCommand(&output), newListSnapshotsCommand(&output))
	cmd.AddCommand(&cobra.Command{
		Use: "clusters", Aliases: []string{"cluster"}, Short: "List the connected host clusters", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadLogin()
			if err != nil {
				return err
			}
			var list []platformapi.ClusterInfo
			if err := c.getJSON(cmd.Context(), "/api/v1/clusters", &list); err != nil {
				return err
			}
			var rows [][]string
			for _, cl := range list {
				rows = append(rows, []string{cl.Name, cl.DisplayName, cl.Phase})
			}
			return printList(cmd.OutOrStdout(), output, list, []string{"NAME", "DISPLAY NAME", "PHASE"}, rows)
		},
	}, &cobra.Command{
		Use: "vclusters", Aliases: []string{"vcluster"}, Short: "List the virtual clusters you may use, across clusters", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadLogin()
			if err != nil {
				return err
			}
			return listVirtualClusters(cmd.Context(), cmd.OutOrStdout(), c, output)
		},
	})
	return cmd
}

func listVirtualClusters(ctx context.Context, w io.Writer, c *loginConfig, output string) error {
	var list []platformapi.VirtualClusterInfo
	if err := c.getJSON(ctx, "/api/v1/virtualclusters", &list); err != nil {
		return err
	}
	var rows [][]string
	for _, v := range list {
		phase := v.Phase
		if v.SleepingSince != "" {
			phase += " (" + platformapi.Age(v.SleepingSince) + ")"
		}
		rows = append(rows, []string{v.Name, v.Namespace, v.Cluster, phase, v.Version, platformapi.Age(v.Created)})
	}
	return printList(w, output, list, []string{"NAME", "NAMESPACE", "CLUSTER", "PHASE", "VERSION", "AGE"}, rows)
}

// vclusterTarget is what names a virtual cluster on the command line.
type vclusterTarget struct {
	cluster, space string
}

func (t *vclusterTarget) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&t.cluster, "cluster", "", "Connected cluster; default: the only one.")
	cmd.Flags().StringVar(&t.space, "space", "", "Namespace of the virtual cluster; default: vcluster-NAME.")
}

// client logs in and returns a client for the cluster that holds virtual
// cluster name, and its cluster and namespace.
func (t *vclusterTarget) client(ctx context.Context, name string) (cl client.Client, cluster, ns string, err error) {
	c, err := loadLogin()
	if err != nil {
		return nil, "", "", err
	}
	if cluster, ns, err = t.resolve(ctx, c, name); err != nil {
		return nil, "", "", err
	}
	cl, err = c.clusterClient(cluster)
	return cl, cluster, ns, err
}

// resolve fills the cluster and namespace of virtual cluster name.
func (t *vclusterTarget) resolve(ctx context.Context, c *loginConfig, name string) (cluster, ns string, err error) {
	if cluster, err = c.pickCluster(ctx, t.cluster); err != nil {
		return "", "", err
	}
	ns = t.space
	if ns == "" {
		ns = storagev1.DefaultNamespace(name)
	}
	return cluster, ns, nil
}

// waitReady waits for phase Ready, printing each change of phase.
func waitReady(ctx context.Context, w io.Writer, cl client.Client, ns, name string, timeout time.Duration) error {
	return waitPhase(ctx, w, func(ctx context.Context) (*storagev1.VirtualCluster, error) {
		vc := &storagev1.VirtualCluster{}
		return vc, cl.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, vc)
	}, storagev1.PhaseReady, timeout)
}

// waitPhase waits until the virtual cluster get returns has phase want (for
// Sleeping: and its control plane has stopped), printing each change.
func waitPhase(ctx context.Context, w io.Writer, get func(context.Context) (*storagev1.VirtualCluster, error), want storagev1.VirtualClusterPhase, timeout time.Duration) error {
	start, last := time.Now(), ""
	// A pooled create is ready in well under a second.
	err := poll(ctx, 100*time.Millisecond, timeout, func(ctx context.Context) (bool, error) {
		vc, err := get(ctx)
		if err != nil {
			return false, nil
		}
		line := string(vc.Status.Phase)
		if vc.Status.Message != "" {
			line += ": " + vc.Status.Message
		}
		if line != last && line != "" {
			fmt.Fprintf(w, "  %5.1fs  %s\n", time.Since(start).Seconds(), line)
			last = line
		}
		switch vc.Status.Phase {
		case want:
			return vc.Status.Reason != "Stopping", nil
		case storagev1.PhaseFailed:
			return false, fmt.Errorf("virtual cluster %s failed: %s", vc.Name, vc.Status.Message)
		}
		return false, nil
	})
	if errors.Is(err, errTimedOut) {
		return fmt.Errorf("virtual cluster not %s after %s (last: %s)", want, timeout, last)
	}
	return err
}

func newUseCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "use", Short: "Switch kubectl to a virtual cluster"}
	var t vclusterTarget
	var pathForm bool
	vc := &cobra.Command{
		Use:   "vcluster [NAME]",
		Short: "Add or switch to the kube-context of a virtual cluster; without NAME, list the ones you may use",
		Example: `  sublet use vcluster                 # shows a list of all available vclusters
  sublet use vcluster demo --cluster local --space vcluster-demo`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadLogin()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if len(args) == 0 {
				return listVirtualClusters(ctx, cmd.OutOrStdout(), c, "table")
			}
			name := args[0]
			cluster, ns, err := t.resolve(ctx, c, name)
			if err != nil {
				return err
			}
			if t.space == "" {
				// Without --space, find it among the ones the user may use.
				var list []platformapi.VirtualClusterInfo
				if err := c.getJSON(ctx, "/api/v1/virtualclusters", &list); err != nil {
					return err
				}
				var found []platformapi.VirtualClusterInfo
				for _, v := range list {
					if v.Name == name && v.Cluster == cluster {
						found = append(found, v)
					}
				}
				switch len(found) {
				case 0:
					return fmt.Errorf("no virtual cluster %s you may use in cluster %s (sublet use vcluster lists them)", name, cluster)
				case 1:
					ns = found[0].Namespace
				default:
					return fmt.Errorf("virtual clusters named %s exist in several namespaces of cluster %s; pass --space", name, cluster)
				}
			}
			ctxName, err := useContext(ctx, c, cluster, ns, name, pathForm)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Switched to context %s (virtual cluster %s in namespace %s of cluster %s)\n", ctxName, name, ns, cluster)
			return nil
		},
	}
	t.addFlags(vc)
	addPathFormFlag(vc, &pathForm)
	cmd.AddCommand(vc)
	return cmd
}

func newDeleteCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "delete", Short: "Delete a virtual cluster or an access key"}
	cmd.AddCommand(newDeleteAccessKeyCommand())
	var t vclusterTarget
	var noWait bool
	vc := &cobra.Command{
		Use:     "vcluster NAME",
		Short:   "Delete a virtual cluster, its host objects and its kube-context",
		Example: `  sublet delete vcluster demo`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			ctx := cmd.Context()
			cl, cluster, ns, err := t.client(ctx, name)
			if err != nil {
				return err
			}
			obj := &storagev1.VirtualCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
			if err := cl.Delete(ctx, obj); err != nil {
				if apierrors.IsNotFound(err) {
					return fmt.Errorf("virtual cluster %s does not exist in namespace %s of cluster %s", name, ns, cluster)
				}
				return fmt.Errorf("delete virtual cluster %s: %w", name, err)
			}
			if !noWait {
				err := poll(ctx, 300*time.Millisecond, 2*time.Minute, func(ctx context.Context) (bool, error) {
					err := cl.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &storagev1.VirtualCluster{})
					return apierrors.IsNotFound(err), nil
				})
				if errors.Is(err, errTimedOut) {
					return fmt.Errorf("virtual cluster %s still being deleted after 2m (see 'sublet list vclusters' and its status message)", name)
				}
				if err != nil {
					return err
				}
			}
			if err := removeContext(cluster, ns, name); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Deleted virtual cluster %s (namespace %s, cluster %s) and its kube-context\n", name, ns, cluster)
			return nil
		},
	}
	t.addFlags(vc)
	vc.Flags().BoolVar(&noWait, "no-wait", false, "Return once deletion has started.")
	cmd.AddCommand(vc)
	return cmd
}
