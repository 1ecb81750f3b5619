package charts

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chartutil"
	kubefake "helm.sh/helm/v3/pkg/kube/fake"
	"helm.sh/helm/v3/pkg/storage"
	"helm.sh/helm/v3/pkg/storage/driver"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// render is `helm template demo charts/vcluster -n team-a` with vals.
func render(t *testing.T, vals map[string]interface{}) string {
	t.Helper()
	c, err := VCluster()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &action.Configuration{
		Releases:     storage.Init(driver.NewMemory()),
		KubeClient:   &kubefake.PrintingKubeClient{Out: os.Stderr},
		Capabilities: chartutil.DefaultCapabilities,
		Log:          t.Logf,
	}
	install := action.NewInstall(cfg)
	install.ClientOnly, install.DryRun = true, true
	install.ReleaseName, install.Namespace = "demo", "team-a"
	rel, err := install.Run(c, vals)
	if err != nil {
		t.Fatal(err)
	}
	return rel.Manifest
}

func TestVClusterChartGolden(t *testing.T) {
	for name, vals := range map[string]map[string]interface{}{
		"default": nil,
		"custom": {
			"args":  []interface{}{"--kubernetes-version=v1.35", "--disable-sync-resources=ingresses"},
			"image": map[string]interface{}{"repository": "registry.local:5000/sublet", "tag": "dev"},
			"rbac":  map[string]interface{}{"nodes": false},
		},
	} {
		t.Run(name, func(t *testing.T) {
			got := render(t, vals)
			// Every document parses as YAML.
			for _, doc := range strings.Split(got, "\n---") {
				var m map[string]interface{}
				if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
					t.Fatalf("rendered document is not YAML: %v\n%s", err, doc)
				}
			}
			path := filepath.Join("testdata", "vcluster-"+name+".golden.yaml")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./charts -update)", err)
			}
			if got != string(want) {
				t.Errorf("rendered chart differs from %s (if intended: go test ./charts -update)\n%s", path, got)
			}
		})
	}
}

func TestVClusterChartLint(t *testing.T) {
	lint := action.NewLint()
	lint.Strict = true
	res := lint.Run([]string{"vcluster"}, nil)
	for _, m := range res.Messages {
		t.Logf("%s", m)
	}
	if len(res.Errors) > 0 {
		t.Errorf("helm lint: %v", res.Errors)
	}
}
