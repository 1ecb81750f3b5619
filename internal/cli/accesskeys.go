package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/pathflag"
	"github.com/sublet-dev/sublet/internal/platformapi"
)

func newCreateAccessKeyCommand() *cobra.Command {
	req := platformapi.AccessKeyRequest{}
	var output, vcluster string
	var t vclusterTarget
	cmd := &cobra.Command{
		Use:   "accesskey",
		Short: "Create an access key; the key is printed once, alone on stdout",
		Long: `Creates an access key for you (or, with the right to create accesskeys in the
management cluster, for another user). A key made while logged in with an expiring
key expires no later than it, and is revoked when that key is revoked.

With --vcluster the key is scoped to that virtual cluster: it is good for its
Kubernetes API alone, and nothing else of the platform. Any client reaches the
cluster with the platform's address, its CA and the key (no path, no TLS server
name): the server routes the key to its cluster. The key's user must be allowed to
use that virtual cluster (get it on its host cluster), on every request too; it is
revoked when the virtual cluster is deleted.`,
		Example: `  KEY=$(sublet create accesskey --ttl 720h)
  sublet create accesskey --user alice --group team-a     # needs the right to create accesskeys
  KEY=$(sublet create accesskey --vcluster demo --ttl 24h)  # for CI: server https://HOST:9443, token KEY`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" && output != "yaml" {
				return fmt.Errorf("-o %q: must be json or yaml (or left out for the key alone)", output)
			}
			c, err := loadLogin()
			if err != nil {
				return err
			}
			if vcluster == "" && (t.cluster != "" || t.space != "") {
				return fmt.Errorf("--cluster and --space name a virtual cluster's place: use them with --vcluster NAME")
			}
			if vcluster != "" {
				if err := validateTarget(vcluster, t.space); err != nil {
					return err
				}
				cluster, ns, err := t.resolve(cmd.Context(), c, vcluster)
				if err != nil {
					return err
				}
				req.VirtualCluster = &storagev1.VirtualClusterScope{Cluster: cluster, Namespace: ns, Name: vcluster}
			}
			info := platformapi.AccessKeyInfo{}
			if err := c.callJSON(cmd.Context(), "POST", "/api/v1/accesskeys", req, &info); err != nil {
				return fmt.Errorf("create access key: %w", err)
			}
			if output != "" {
				return printList(cmd.OutOrStdout(), output, info, nil, nil)
			}
			fmt.Fprintln(cmd.OutOrStdout(), info.Key)
			exp := "never"
			if info.Expiration != "" {
				exp = info.Expiration
			}
			scope := ""
			if sc := info.VirtualCluster; sc != nil {
				scope = fmt.Sprintf(", good for virtual cluster %s/%s of cluster %s alone: server %s with this key as token", sc.Namespace, sc.Name, sc.Cluster, c.Server)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Access key %s for user %s (expires: %s%s). It is shown only now.\n", info.Name, info.User, exp, scope)
			return nil
		},
	}
	cmd.Flags().StringVar(&req.User, "user", "", "User the key authenticates as; default: you.")
	cmd.Flags().StringSliceVar(&req.Groups, "group", nil, "Group of the user (repeatable); default: your groups when the key is yours.")
	cmd.Flags().StringVar(&req.TTL, "ttl", "", "Lifetime, e.g. 720h; default: no expiry.")
	cmd.Flags().StringVar(&req.Description, "description", "", "What the key is for.")
	cmd.Flags().StringVarP(&output, "output", "o", "", "json or yaml: print the key with its name and expiry instead of the key alone.")
	cmd.Flags().StringVar(&vcluster, "vcluster", "", "Scope the key to this virtual cluster: good for its API alone (see --cluster and --space).")
	t.addFlags(cmd)
	return cmd
}

func newListAccessKeysCommand(output *string) *cobra.Command {
	return &cobra.Command{
		Use: "accesskeys", Aliases: []string{"accesskey"}, Short: "List your access keys (all, if you may list them)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadLogin()
			if err != nil {
				return err
			}
			var list []platformapi.AccessKeyInfo
			if err := c.getJSON(cmd.Context(), "/api/v1/accesskeys", &list); err != nil {
				return err
			}
			var rows [][]string
			for _, k := range list {
				exp := k.Expiration
				if exp == "" {
					exp = "never"
				}
				scope := "*"
				if sc := k.VirtualCluster; sc != nil {
					scope = "vcluster " + sc.Cluster + "/" + sc.Namespace + "/" + sc.Name
				}
				rows = append(rows, []string{k.Name, k.User, strings.Join(k.Groups, ","), exp, scope})
			}
			return printList(cmd.OutOrStdout(), *output, list, []string{"NAME", "USER", "GROUPS", "EXPIRES", "SCOPE"}, rows)
		},
	}
}

func newDeleteAccessKeyCommand() *cobra.Command {
	return &cobra.Command{
		Use: "accesskey NAME", Short: "Revoke an access key (at once)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadLogin()
			if err != nil {
				return err
			}
			info := platformapi.AccessKeyInfo{}
			if err := c.callJSON(cmd.Context(), "DELETE", "/api/v1/accesskeys/"+args[0], nil, &info); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Deleted access key %s of user %s\n", info.Name, info.User)
			return nil
		},
	}
}

func newConnectCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "connect", Short: "Connect a host cluster to the platform"}
	var kubeconfig, kubeContext, display string
	var allowExec bool
	cl := &cobra.Command{
		Use:     "cluster NAME --kubeconfig FILE",
		Short:   "Connect a host cluster: virtual clusters can then be created in it",
		Example: `  sublet connect cluster prod --kubeconfig prod.kubeconfig --context admin@prod`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadLogin()
			if err != nil {
				return err
			}
			if kubeconfig == "" {
				return fmt.Errorf("--kubeconfig is required")
			}
			raw, err := clientcmd.LoadFromFile(kubeconfig)
			if err != nil {
				return fmt.Errorf("--kubeconfig: %w", err)
			}
			if kubeContext != "" {
				if _, ok := raw.Contexts[kubeContext]; !ok {
					return fmt.Errorf("context %q is not in %s", kubeContext, kubeconfig)
				}
				raw.CurrentContext = kubeContext
			}
			// One context, credentials inlined: the server has no files.
			if err := clientcmdapi.MinifyConfig(raw); err != nil {
				return err
			}
			if err := clientcmdapi.FlattenConfig(raw); err != nil {
				return err
			}
			data, err := clientcmd.Write(*raw)
			if err != nil {
				return err
			}
			info := platformapi.ClusterInfo{}
			req := platformapi.ConnectRequest{Name: args[0], DisplayName: display, Kubeconfig: string(data), AllowExecPlugin: allowExec}
			if err := c.callJSON(cmd.Context(), "POST", "/api/v1/clusters", req, &info); err != nil {
				return fmt.Errorf("connect cluster %s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Connected cluster %s\n", info.Name)
			return nil
		},
	}
	pathflag.Var(cl.Flags(), &kubeconfig, "kubeconfig", "", "Kubeconfig of the cluster (needs rights to impersonate users and to manage VirtualClusters).")
	cl.Flags().StringVar(&kubeContext, "context", "", "Context of --kubeconfig to use; default: its current context.")
	cl.Flags().StringVar(&display, "display-name", "", "Name shown in lists.")
	cl.Flags().BoolVar(&allowExec, "allow-exec-plugin", false, "Accept a kubeconfig whose user runs an exec plugin (aws, gke-gcloud-auth-plugin, …): the platform server then runs that command on its own machine, with its own privileges, for every request to the cluster. Without it such a kubeconfig is refused.")
	cmd.AddCommand(cl)
	return cmd
}
