package e2e

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/release"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/sublet-dev/sublet/charts"
	"github.com/sublet-dev/sublet/config/crd"
	"github.com/sublet-dev/sublet/config/policy"
)

// chartNamespace is where the platform chart must be installed.
const chartNamespace = "sublet-system"

// chartRelease is the name of the test's release of charts/sublet.
const chartRelease = "sublet"

// installChart installs charts/sublet into namespace sublet-system, which
// enforces the restricted Pod Security Standard, and uninstalls it when the
// test ends.
func installChart(t *testing.T, extra map[string]interface{}) (*action.Configuration, *release.Release) {
	t.Helper()
	ctx := context.Background()
	_, err := host.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   chartNamespace,
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"},
	}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		kubectl(t, host.Kubeconfig, "", "label", "--overwrite", "namespace", chartNamespace,
			"pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/enforce-version=latest")
	} else if err != nil {
		t.Fatal(err)
	}
	waitDefaultServiceAccount(t, host.Client, chartNamespace)
	adoptCRDs(t)
	cfg := helmConfig(t)
	install := action.NewInstall(cfg)
	install.ReleaseName, install.Namespace, install.Timeout = chartRelease, chartNamespace, 2*time.Minute
	rel, err := install.RunWithContext(ctx, subletChart(t), chartValues(extra))
	if err != nil {
		t.Fatalf("helm install charts/sublet: %v", err)
	}
	t.Cleanup(func() {
		if _, err := action.NewUninstall(helmConfig(t)).Run(chartRelease); err != nil {
			t.Errorf("helm uninstall: %v", err)
		}
		// A hook's object outlives the release (NOTES.txt says so).
		_ = exec.Command("kubectl", "--kubeconfig", host.Kubeconfig, "delete", "accesskey", chartRelease+"-admin-key", "--ignore-not-found").Run()
	})
	return cfg, rel
}

// helmConfig is a Helm SDK configuration against the shared host.
func helmConfig(t *testing.T) *action.Configuration {
	t.Helper()
	flags := genericclioptions.NewConfigFlags(false)
	ns := chartNamespace
	flags.Namespace = &ns
	flags.WrapConfigFn = func(*rest.Config) *rest.Config { return rest.CopyConfig(host.Config) }
	cfg := &action.Configuration{}
	if err := cfg.Init(flags, chartNamespace, "secret", t.Logf); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func subletChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := charts.Sublet()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// chartValues are the test's values: an image of a registry nothing pulls
// from (the simulated nodes run no containers).
func chartValues(extra map[string]interface{}) map[string]interface{} {
	vals := map[string]interface{}{
		"image": map[string]interface{}{"repository": "registry.local:5000/sublet", "tag": "e2e"},
	}
	for k, v := range extra {
		vals[k] = v
	}
	return vals
}

// adoptCRDs lets the release take over the CRDs and admission policy an
// agent of another test created (helm refuses objects without its
// ownership metadata), as an admin moving to the chart would.
func adoptCRDs(t *testing.T) {
	t.Helper()
	// Every CRD and policy the agent installs, as config/ holds them.
	var objects []string
	files, err := fs.Glob(crd.Files, "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		group, resource, _ := strings.Cut(strings.TrimSuffix(f, ".yaml"), "_")
		objects = append(objects, "crd/"+resource+"."+group)
	}
	policies, bindings, err := policy.Objects()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range policies {
		objects = append(objects, "validatingadmissionpolicy/"+p.Name)
	}
	for _, b := range bindings {
		objects = append(objects, "validatingadmissionpolicybinding/"+b.Name)
	}
	for _, obj := range objects {
		out, err := exec.Command("kubectl", "--kubeconfig", host.Kubeconfig, "get", obj, "-o", "name").CombinedOutput()
		if err != nil {
			if strings.Contains(string(out), "NotFound") {
				continue
			}
			t.Fatalf("get %s: %v\n%s", obj, err, out)
		}
		kubectl(t, host.Kubeconfig, "", "label", "--overwrite", obj, "app.kubernetes.io/managed-by=Helm")
		kubectl(t, host.Kubeconfig, "", "annotate", "--overwrite", obj,
			"meta.helm.sh/release-name="+chartRelease, "meta.helm.sh/release-namespace="+chartNamespace)
	}
}

func secretData(t *testing.T, name string) map[string][]byte {
	t.Helper()
	s, err := host.Client.CoreV1().Secrets(chartNamespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s.Data
}

func adminKeyOf(t *testing.T) string {
	t.Helper()
	key := string(secretData(t, "sublet-admin-key")["key"])
	if !strings.HasPrefix(key, "slk_") {
		t.Fatalf("admin key %q is not an access key", key)
	}
	return key
}

// tokenKubeconfig writes a kubeconfig for the host with token, inline.
func tokenKubeconfig(t *testing.T, name, token string) string {
	t.Helper()
	ca := host.Config.CAData
	if len(ca) == 0 {
		var err error
		if ca, err = os.ReadFile(host.Config.CAFile); err != nil {
			t.Fatal(err)
		}
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["host"] = &clientcmdapi.Cluster{Server: host.Config.Host, CertificateAuthorityData: ca}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: "host", AuthInfo: name}
	cfg.CurrentContext = name
	path := filepath.Join(t.TempDir(), name+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// connectChartCluster connects the host as cluster, as NOTES.txt connects
// "local": with the chart's cluster-access token Secret, through the CLI
// logged in to the server.
func connectChartCluster(t *testing.T, cluster string) {
	t.Helper()
	var token []byte
	poll(t, 60*time.Second, "the cluster-access token Secret filled in", func(ctx context.Context) (bool, error) {
		s, err := host.Client.CoreV1().Secrets(chartNamespace).Get(ctx, "sublet-cluster-token", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		token = s.Data["token"]
		return len(token) > 0, nil
	})
	sublet(t, "connect", "cluster", cluster, "--kubeconfig", tokenKubeconfig(t, "sublet-cluster", string(token)))
	t.Cleanup(func() {
		_ = exec.Command("kubectl", "--kubeconfig", host.Kubeconfig, "delete", "cluster.storage.loft.sh", cluster).Run()
		_ = host.Client.CoreV1().Secrets(chartNamespace).Delete(context.Background(), "cluster-"+cluster, metav1.DeleteOptions{})
	})
}

// noForbidden fails if a component logged an RBAC refusal.
func noForbidden(t *testing.T, what, output string) {
	t.Helper()
	for _, l := range strings.Split(output, "\n") {
		if strings.Contains(l, "forbidden") || strings.Contains(l, "Forbidden") {
			t.Errorf("%s was refused by RBAC: %s", what, l)
		}
	}
}
