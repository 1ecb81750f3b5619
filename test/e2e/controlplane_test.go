package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/utils/ptr"

	"github.com/sublet-dev/sublet/internal/testenv"
)

// kubernetesModuleVersion reads the k8s.io/kubernetes version from go.mod:
// the version the binary must report.
func kubernetesModuleVersion(t *testing.T) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*k8s\.io/kubernetes (v\S+)`).FindSubmatch(data)
	if m == nil {
		t.Fatal("k8s.io/kubernetes not in go.mod")
	}
	return string(m[1])
}

func serverVersion(t *testing.T, p *testenv.Process) *version.Info {
	t.Helper()
	raw, err := p.Client.Discovery().RESTClient().Get().AbsPath("/version").DoRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var info version.Info
	if err := json.Unmarshal(raw, &info); err != nil {
		t.Fatal(err)
	}
	return &info
}

func TestControlPlaneLifecycle(t *testing.T) {
	needHost(t) // not the host itself, but as heavy as one: skipped with -short
	for _, store := range []string{"etcd", "sqlite"} {
		t.Run(store, func(t *testing.T) {
			testControlPlaneLifecycle(t, store)
		})
	}
}

func testControlPlaneLifecycle(t *testing.T, store string) {
	ctx := context.Background()
	dir := t.TempDir()
	cp, err := testenv.StartControlPlane(ctx, dir, "--datastore", store)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Kill()

	if got, want := serverVersion(t, cp).GitVersion, kubernetesModuleVersion(t); got != want {
		t.Errorf("/version gitVersion = %q, want %q", got, want)
	}

	cs := cp.Client
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps("team-a").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "settings"}, Data: map[string]string{"color": "blue"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ext := apiextensionsclient.NewForConfigOrDie(cp.Config)
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "widgets.example.com"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "example.com",
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "widgets", Singular: "widget", Kind: "Widget", ListKind: "WidgetList"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: ptr.To(true),
				}},
			}},
		},
	}
	if _, err := ext.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The controller-manager turns a Deployment into a ReplicaSet and Pods.
	if _, err := cs.AppsV1().Deployments("team-a").Create(ctx, deployment("api", "api:1", 2), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		rs, err := cs.AppsV1().ReplicaSets("team-a").List(ctx, metav1.ListOptions{LabelSelector: "app=api"})
		if err != nil || len(rs.Items) != 1 {
			return false, nil
		}
		pods, err := cs.CoreV1().Pods("team-a").List(ctx, metav1.ListOptions{LabelSelector: "app=api"})
		return err == nil && len(pods.Items) == 2, nil
	})
	if err != nil {
		t.Fatalf("deployment did not produce a ReplicaSet and 2 pods: %v", err)
	}

	// Stop cleanly and start again on the same data dir: everything is kept.
	if err := cp.Stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, cp.Output())
	}
	// The datastore outlives the API server's shutdown (kine once stopped
	// with the context and left the API server waiting 30 s).
	if logs, err := os.ReadFile(filepath.Join(dir, "logs", "control-plane.log")); err != nil {
		t.Error(err)
	} else if bytes.Contains(logs, []byte("did not stop in")) {
		t.Errorf("the control plane did not stop cleanly: its log says a component did not stop in time")
	}
	cp, err = testenv.StartControlPlane(ctx, dir, "--datastore", store)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Kill()
	cm, err := cp.Client.CoreV1().ConfigMaps("team-a").Get(ctx, "settings", metav1.GetOptions{})
	if err != nil || cm.Data["color"] != "blue" {
		t.Errorf("configmap after restart: %v %v", cm, err)
	}
	ext = apiextensionsclient.NewForConfigOrDie(cp.Config)
	if _, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, "widgets.example.com", metav1.GetOptions{}); err != nil {
		t.Errorf("CRD after restart: %v", err)
	}
	if _, err := cp.Client.AppsV1().Deployments("team-a").Get(ctx, "api", metav1.GetOptions{}); err != nil {
		t.Errorf("deployment after restart: %v", err)
	}
	if err := cp.Stop(); err != nil {
		t.Errorf("second stop: %v", err)
	}
}

func TestControlPlaneEmulatedVersion(t *testing.T) {
	needHost(t)
	cp, err := testenv.StartControlPlane(context.Background(), t.TempDir(), "--kubernetes-version", "v1.35")
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Kill()
	info := serverVersion(t, cp)
	if info.EmulationMajor != "1" || info.EmulationMinor != "35" {
		t.Errorf("emulation version = %s.%s, want 1.35 (%+v)", info.EmulationMajor, info.EmulationMinor, info)
	}
}
