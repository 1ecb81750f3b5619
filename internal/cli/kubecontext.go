package cli

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/platformapi"
)

// addPathFormFlag adds --path-form, which makes the kube-context use the
// seed's path form instead of the platform's address alone.
func addPathFormFlag(cmd *cobra.Command, pathForm *bool) {
	cmd.Flags().BoolVar(pathForm, "path-form", false,
		"Write the kube-context with server URL …/kubernetes/virtualcluster/CLUSTER/NAMESPACE/NAME instead of the platform's address alone (which the kube-context's key, scoped to the virtual cluster, routes to it; clients that drop or replace a URL's path, such as kubectl proxy, need the latter).")
}

func contextName(cluster, ns, name string) string {
	return fmt.Sprintf("sublet_%s_%s_%s", cluster, ns, name)
}

// useContext adds (or updates) and switches to the kube-context of a
// virtual cluster. Its token is an access key scoped to that virtual
// cluster, made with the user's own key (see scopedKey), and its server
// is the platform's address alone, which routes that key to the virtual
// cluster: every client reaches it, kubectl proxy, kubectl --server and
// clients that know only a host, a CA and a token included. With pathForm
// the server is the seed's form …/kubernetes/virtualcluster/C/NS/NAME.
// Other contexts stay as they are.
func useContext(ctx context.Context, c *loginConfig, cluster, ns, name string, pathForm bool) (string, error) {
	ctxName := contextName(cluster, ns, name)
	return ctxName, writeContext(ctx, c, ctxName, cluster, ns, name, pathForm, true)
}

// writeContext writes kube-context ctxName for virtual cluster ns/name of
// cluster, and makes it the current one if current.
func writeContext(ctx context.Context, c *loginConfig, ctxName, cluster, ns, name string, pathForm, current bool) error {
	po := clientcmd.NewDefaultPathOptions()
	cfg, err := po.GetStartingConfig()
	if err != nil {
		return err
	}
	// The CA goes in inline: a path would be resolved against the
	// kubeconfig's folder by kubectl and not at all by other clients.
	var caData []byte
	if c.CAFile != "" {
		if caData, err = os.ReadFile(c.CAFile); err != nil {
			return fmt.Errorf("read the platform server's CA (log in again with --ca-file): %w", err)
		}
	}
	old := ""
	if ai := cfg.AuthInfos[ctxName]; ai != nil {
		old = ai.Token
	}
	token, err := scopedKey(ctx, c, ctxName, old, storagev1.VirtualClusterScope{Cluster: cluster, Namespace: ns, Name: name})
	if err != nil {
		return err
	}
	srv := c.Server
	if pathForm {
		srv = fmt.Sprintf("%s/kubernetes/virtualcluster/%s/%s/%s", c.Server, cluster, ns, name)
	}
	cfg.Clusters[ctxName] = &clientcmdapi.Cluster{Server: srv, CertificateAuthorityData: caData, InsecureSkipTLSVerify: c.Insecure}
	cfg.AuthInfos[ctxName] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[ctxName] = &clientcmdapi.Context{Cluster: ctxName, AuthInfo: ctxName}
	if current {
		cfg.CurrentContext = ctxName
	}
	return clientcmd.ModifyConfig(po, *cfg, true)
}

// moveContext points the kube-context of virtual cluster ns/name of
// cluster from, if there is one, at the cluster of that name in cluster
// to: same context name, a key scoped to the new one, the same form of
// server URL. It reports whether there was one.
func moveContext(ctx context.Context, c *loginConfig, from, to, ns, name string) (string, bool, error) {
	cfg, err := clientcmd.NewDefaultPathOptions().GetStartingConfig()
	if err != nil {
		return "", false, err
	}
	ctxName := contextName(from, ns, name)
	cl := cfg.Clusters[ctxName]
	if cl == nil || cfg.Contexts[ctxName] == nil {
		return ctxName, false, nil
	}
	pathForm := strings.Contains(cl.Server, "/kubernetes/virtualcluster/")
	return ctxName, true, writeContext(ctx, c, ctxName, to, ns, name, pathForm, cfg.CurrentContext == ctxName)
}

// scopedKey returns the token for a kube-context of virtual cluster sc:
// old, if it is still one of the user's keys scoped to that very cluster
// (so using a cluster again and again makes no new keys), else a new key
// scoped to it, made with the user's key (it ends when that key ends). An
// old key scoped to an earlier cluster of that name is revoked.
func scopedKey(ctx context.Context, c *loginConfig, ctxName, old string, sc storagev1.VirtualClusterScope) (string, error) {
	if old != "" {
		var keys []platformapi.AccessKeyInfo
		if err := c.getJSON(ctx, "/api/v1/accesskeys", &keys); err != nil {
			return "", err
		}
		hash := platformapi.HashKey(old)
		for _, k := range keys {
			ks := k.VirtualCluster
			if k.KeySHA256 != hash || ks == nil || ks.Cluster != sc.Cluster || ks.Namespace != sc.Namespace || ks.Name != sc.Name {
				continue
			}
			cl, err := c.clusterClient(sc.Cluster)
			if err != nil {
				return "", err
			}
			vc := &storagev1.VirtualCluster{}
			if err := cl.Get(ctx, types.NamespacedName{Namespace: sc.Namespace, Name: sc.Name}, vc); err != nil {
				return "", fmt.Errorf("virtual cluster %s/%s in cluster %s: %w", sc.Namespace, sc.Name, sc.Cluster, err)
			}
			if ks.UID == "" || ks.UID == vc.UID {
				return old, nil
			}
			_ = c.callJSON(ctx, "DELETE", "/api/v1/accesskeys/"+k.Name, nil, &platformapi.AccessKeyInfo{})
		}
	}
	info := platformapi.AccessKeyInfo{}
	req := platformapi.AccessKeyRequest{Description: "kube-context " + ctxName + " (sublet CLI)", VirtualCluster: &sc}
	if err := c.callJSON(ctx, "POST", "/api/v1/accesskeys", req, &info); err != nil {
		return "", fmt.Errorf("make an access key scoped to virtual cluster %s/%s of cluster %s for its kube-context: %w", sc.Namespace, sc.Name, sc.Cluster, err)
	}
	return info.Key, nil
}

// removeContext deletes a virtual cluster's kube-context, if present.
func removeContext(cluster, ns, name string) error {
	po := clientcmd.NewDefaultPathOptions()
	cfg, err := po.GetStartingConfig()
	if err != nil {
		return err
	}
	ctxName := contextName(cluster, ns, name)
	if _, ok := cfg.Contexts[ctxName]; !ok {
		return nil
	}
	delete(cfg.Contexts, ctxName)
	delete(cfg.Clusters, ctxName)
	delete(cfg.AuthInfos, ctxName)
	if cfg.CurrentContext == ctxName {
		cfg.CurrentContext = ""
	}
	return clientcmd.ModifyConfig(po, *cfg, true)
}
