package charts

import (
	"bytes"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chartutil"
	kubefake "helm.sh/helm/v3/pkg/kube/fake"
	"helm.sh/helm/v3/pkg/storage"
	"helm.sh/helm/v3/pkg/storage/driver"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	rbacvalidation "k8s.io/component-helpers/auth/rbac/validation"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/config/crd"
	"github.com/sublet-dev/sublet/internal/syncer/kinds"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// renderChart is `helm template RELEASE CHART -n NAMESPACE` with vals; the
// manifest includes hooks, as `helm template` prints them.
func renderChart(c *chart.Chart, release, namespace string, vals map[string]interface{}) (string, error) {
	cfg := &action.Configuration{
		Releases:     storage.Init(driver.NewMemory()),
		KubeClient:   &kubefake.PrintingKubeClient{Out: os.Stderr},
		Capabilities: chartutil.DefaultCapabilities,
		Log:          func(string, ...interface{}) {},
	}
	install := action.NewInstall(cfg)
	install.ClientOnly, install.DryRun = true, true
	install.ReleaseName, install.Namespace = release, namespace
	rel, err := install.Run(c, vals)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(rel.Manifest)
	for _, h := range rel.Hooks {
		b.WriteString("\n---\n# Source: " + h.Path + "\n" + h.Manifest + "\n")
	}
	if rel.Info.Notes != "" {
		b.WriteString("\n---\n# NOTES.txt\n" + commentLines(rel.Info.Notes))
	}
	return b.String(), nil
}

// commentLines makes text a YAML comment, so golden files stay YAML.
func commentLines(text string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		b.WriteString(strings.TrimRight("# "+l, " ") + "\n")
	}
	return b.String()
}

// render is `helm template demo charts/vcluster -n team-a` with vals.
func render(t *testing.T, vals map[string]interface{}) string {
	t.Helper()
	c, err := VCluster()
	if err != nil {
		t.Fatal(err)
	}
	out, err := renderChart(c, "demo", "team-a", vals)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// documents splits a rendered manifest and parses each document.
func documents(t *testing.T, manifest string) []map[string]interface{} {
	t.Helper()
	var docs []map[string]interface{}
	for _, doc := range strings.Split(manifest, "\n---") {
		var m map[string]interface{}
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("rendered document is not YAML: %v\n%s", err, doc)
		}
		if m != nil {
			docs = append(docs, m)
		}
	}
	return docs
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden.yaml")
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
}

func TestVClusterChartGolden(t *testing.T) {
	for name, vals := range map[string]map[string]interface{}{
		"default": nil,
		"custom": {
			"args":  []interface{}{"--kubernetes-version=v1.35", "--disable-sync-resources=ingresses"},
			"image": map[string]interface{}{"repository": "registry.local:5000/sublet", "tag": "dev"},
			"rbac": map[string]interface{}{"nodes": false, "customResources": map[string]interface{}{
				"toHost": []interface{}{"certificates.cert-manager.io"}, "fromHost": []interface{}{"clusterissuers.cert-manager.io"}}},
		},
	} {
		t.Run(name, func(t *testing.T) {
			got := render(t, vals)
			documents(t, got)
			golden(t, "vcluster-"+name, got)
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

// generated are the values the chart makes up at install time (the CA, the
// admin key), masked in golden files.
var generated = regexp.MustCompile(`(?m)^(\s+(?:ca\.crt|ca\.key|key|keySHA256)): \S+$`)

// subletValues are the golden cases of the platform chart.
var subletValues = map[string]map[string]interface{}{
	"default": nil,
	"custom": {
		"image":            map[string]interface{}{"repository": "registry.local:5000/sublet", "tag": "dev", "pullPolicy": "Always"},
		"imagePullSecrets": []interface{}{map[string]interface{}{"name": "registry"}},
		"installCRDs":      false,
		"agent": map[string]interface{}{"runtime": "process", "defaultTemplate": "small", "replicas": 2,
			"customResources": map[string]interface{}{
				"toHost":   []interface{}{"certificates.cert-manager.io", "issuers.cert-manager.io", "widgets.example.com"},
				"fromHost": []interface{}{"clusterissuers.cert-manager.io"},
			}},
		"server": map[string]interface{}{
			"tls": map[string]interface{}{"secretName": "platform-tls"},
			"ingress": map[string]interface{}{
				"enabled": true, "className": "nginx", "host": "sublet.example.com", "tlsSecretName": "sublet-example-com",
				"annotations": map[string]interface{}{
					"cert-manager.io/cluster-issuer":               "letsencrypt",
					"nginx.ingress.kubernetes.io/backend-protocol": "HTTPS",
				},
			},
		},
		"adminAccessKey": map[string]interface{}{"enabled": false},
		"clusterAccess":  map[string]interface{}{"enabled": false},
	},
}

func renderSublet(t *testing.T, vals map[string]interface{}) string {
	t.Helper()
	c, err := Sublet()
	if err != nil {
		t.Fatal(err)
	}
	out, err := renderChart(c, "sublet", "sublet-system", vals)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSubletChartGolden(t *testing.T) {
	for name, vals := range subletValues {
		t.Run(name, func(t *testing.T) {
			got := renderSublet(t, vals)
			documents(t, got)
			golden(t, "sublet-"+name, generated.ReplaceAllString(got, "$1: GENERATED"))
		})
	}
}

func TestSubletChartLint(t *testing.T) {
	for name, vals := range subletValues {
		t.Run(name, func(t *testing.T) {
			lint := action.NewLint()
			lint.Strict, lint.Namespace = true, "sublet-system"
			res := lint.Run([]string{"sublet"}, vals)
			for _, m := range res.Messages {
				t.Logf("%s", m)
			}
			if len(res.Errors) > 0 {
				t.Errorf("helm lint: %v", res.Errors)
			}
		})
	}
}

// TestSubletChartBadValues: values the chart cannot serve fail the install
// with a message naming the value.
func TestSubletChartBadValues(t *testing.T) {
	c, err := Sublet()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, namespace string
		vals            map[string]interface{}
		want            []string
	}{
		{"no image", "sublet-system", map[string]interface{}{"image": map[string]interface{}{"repository": ""}}, []string{"/image/repository"}},
		{"unknown key", "sublet-system", map[string]interface{}{"agent": map[string]interface{}{"runtim": "pod"}}, []string{"agent", "runtim"}},
		{"unknown top-level key", "sublet-system", map[string]interface{}{"serverr": map[string]interface{}{}}, []string{"serverr"}},
		{"bad runtime", "sublet-system", map[string]interface{}{"agent": map[string]interface{}{"runtime": "vm"}}, []string{"/agent/runtime", "pod", "process"}},
		{"not a CRD name", "sublet-system", map[string]interface{}{"agent": map[string]interface{}{"customResources": map[string]interface{}{
			"toHost": []interface{}{"Certificates"}}}}, []string{"/agent/customResources/toHost/0"}},
		{"ingress without host", "sublet-system", map[string]interface{}{"server": map[string]interface{}{"ingress": map[string]interface{}{"enabled": true}}}, []string{"/server/ingress/host"}},
		{"other namespace", "platform", nil, []string{`release namespace "platform"`, "sublet-system"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderChart(c, "sublet", tc.namespace, tc.vals)
			if err == nil {
				t.Fatalf("installed; want an error naming %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

// TestChartsShareVersion: the platform and the pod runtime are released
// together, from one image.
func TestChartsShareVersion(t *testing.T) {
	s, err := Sublet()
	if err != nil {
		t.Fatal(err)
	}
	v, err := VCluster()
	if err != nil {
		t.Fatal(err)
	}
	if s.Metadata.Version != v.Metadata.Version || s.Metadata.AppVersion != v.Metadata.AppVersion {
		t.Errorf("sublet chart %s (app %s), vcluster chart %s (app %s): release them together",
			s.Metadata.Version, s.Metadata.AppVersion, v.Metadata.Version, v.Metadata.AppVersion)
	}
	si, vi := s.Values["image"].(map[string]interface{}), v.Values["image"].(map[string]interface{})
	if si["repository"] != vi["repository"] {
		t.Errorf("image repositories differ: sublet %v, vcluster %v", si["repository"], vi["repository"])
	}
}

// TestSubletChartCRDs: the chart's CRDs are config/crd's (generated by
// hack/update-codegen.sh); -update copies them.
func TestSubletChartCRDs(t *testing.T) {
	dir := filepath.Join("sublet", "files", "crds")
	want, err := fs.Glob(crd.Files, "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		old, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		for _, f := range old {
			_ = os.Remove(f)
		}
		for _, f := range want {
			data, _ := crd.Files.ReadFile(f)
			if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	have, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if len(have) != len(want) {
		t.Errorf("%s has %d CRDs, config/crd %d (go test ./charts -update)", dir, len(have), len(want))
	}
	for _, f := range want {
		data, _ := crd.Files.ReadFile(f)
		got, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s/%s is not config/crd/%s (go test ./charts -update): %v", dir, f, f, err)
		}
	}
	out := renderSublet(t, nil)
	for _, f := range want {
		data, _ := crd.Files.ReadFile(f)
		var m struct {
			Metadata struct{ Name string }
		}
		if err := yaml.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "name: "+m.Metadata.Name+"\n") {
			t.Errorf("the rendered chart lacks CRD %s", m.Metadata.Name)
		}
	}
	if out := renderSublet(t, map[string]interface{}{"installCRDs": false}); strings.Contains(out, "kind: CustomResourceDefinition") {
		t.Error("installCRDs=false still renders CRDs")
	}
}

// objectsOf parses the rendered documents of kind into out's element type.
func objectsOf[T any](t *testing.T, manifest, kind string) []T {
	t.Helper()
	var out []T
	for _, doc := range strings.Split(manifest, "\n---") {
		var head struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil || head.Kind != kind {
			continue
		}
		var o T
		if err := yaml.UnmarshalStrict([]byte(doc), &o); err != nil {
			t.Fatalf("%s: %v\n%s", kind, err, doc)
		}
		out = append(out, o)
	}
	return out
}

// TestSubletChartPodSecurity: the agent and server pods pass the
// restricted Pod Security Standard (the upstream evaluator).
func TestSubletChartPodSecurity(t *testing.T) {
	eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	restricted := psapi.LevelVersion{Level: psapi.LevelRestricted, Version: psapi.LatestVersion()}
	for name, vals := range subletValues {
		deps := objectsOf[appsv1.Deployment](t, renderSublet(t, vals), "Deployment")
		if len(deps) != 2 {
			t.Errorf("%s: %d Deployments, want agent and server", name, len(deps))
		}
		for _, d := range deps {
			res := policy.AggregateCheckResults(eval.EvaluatePod(restricted, &d.Spec.Template.ObjectMeta, &d.Spec.Template.Spec))
			if !res.Allowed {
				t.Errorf("%s: Deployment %s violates restricted: %s", name, d.Name, res.ForbiddenDetail())
			}
			for _, c := range d.Spec.Template.Spec.Containers {
				if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
					t.Errorf("%s: container %s/%s lacks a CPU request or a memory limit", name, d.Name, c.Name)
				}
			}
		}
	}
}

// TestAgentRBACCoversVClusterChart: Kubernetes lets the agent create a
// virtual cluster's Role and node-reader ClusterRole (charts/vcluster)
// only with rights it holds itself; its ClusterRole must cover them.
func TestAgentRBACCoversVClusterChart(t *testing.T) {
	for _, runtime := range []string{"pod", "process"} {
		platform := renderSublet(t, map[string]interface{}{"agent": map[string]interface{}{"runtime": runtime}})
		var agent []rbacv1.PolicyRule
		for _, cr := range objectsOf[rbacv1.ClusterRole](t, platform, "ClusterRole") {
			if cr.Name == "sublet-agent" {
				agent = cr.Rules
			}
		}
		if agent == nil {
			t.Fatal("no ClusterRole sublet-agent")
		}
		vc := render(t, nil)
		var granted []rbacv1.PolicyRule
		for _, r := range objectsOf[rbacv1.Role](t, vc, "Role") {
			granted = append(granted, r.Rules...)
		}
		for _, r := range objectsOf[rbacv1.ClusterRole](t, vc, "ClusterRole") {
			granted = append(granted, r.Rules...)
		}
		if len(granted) == 0 {
			t.Fatal("the vcluster chart grants nothing?")
		}
		if ok, missing := rbacvalidation.Covers(agent, granted); !ok {
			t.Errorf("runtime %s: the agent cannot grant what charts/vcluster's syncer role holds; missing: %v", runtime, missing)
		}
		for _, r := range agent {
			for _, f := range [][]string{r.Verbs, r.Resources, r.APIGroups} {
				for _, v := range f {
					if v == "*" || v == "escalate" || v == "bind" {
						t.Errorf("runtime %s: agent rule %v is broader than granting needs", runtime, r)
					}
				}
			}
		}
	}
}

// TestVClusterChartPodSecurity: the virtual cluster's pod passes the
// restricted Pod Security Standard (the upstream evaluator), so the pod
// runtime works in a tenant namespace that enforces it.
func TestVClusterChartPodSecurity(t *testing.T) {
	eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	restricted := psapi.LevelVersion{Level: psapi.LevelRestricted, Version: psapi.LatestVersion()}
	sets := objectsOf[appsv1.StatefulSet](t, render(t, nil), "StatefulSet")
	if len(sets) != 1 {
		t.Fatalf("%d StatefulSets, want 1", len(sets))
	}
	tmpl := sets[0].Spec.Template
	if res := policy.AggregateCheckResults(eval.EvaluatePod(restricted, &tmpl.ObjectMeta, &tmpl.Spec)); !res.Allowed {
		t.Errorf("StatefulSet %s violates restricted: %s", sets[0].Name, res.ForbiddenDetail())
	}
}

// TestVClusterChartNames: the chart names the kubeconfig Secret and the
// syncer's ServiceAccount as the agent, the server and the CLI do
// (api/storage/v1's derived names), so each finds what the other made.
func TestVClusterChartNames(t *testing.T) {
	manifest := render(t, nil) // release demo
	sets := objectsOf[appsv1.StatefulSet](t, manifest, "StatefulSet")
	if len(sets) != 1 {
		t.Fatalf("%d StatefulSets, want 1", len(sets))
	}
	pod := sets[0].Spec.Template.Spec
	if want := "--kubeconfig-secret=" + storagev1.KubeconfigSecretName("demo"); !slices.Contains(pod.Containers[0].Args, want) {
		t.Errorf("the container's args %q lack %s", pod.Containers[0].Args, want)
	}
	if want := storagev1.SyncerName("demo"); pod.ServiceAccountName != want {
		t.Errorf("the pod runs as ServiceAccount %s, want %s", pod.ServiceAccountName, want)
	}
	var names []string
	for _, o := range objectsOf[corev1.ServiceAccount](t, manifest, "ServiceAccount") {
		names = append(names, "ServiceAccount "+o.Name)
	}
	for _, o := range objectsOf[rbacv1.Role](t, manifest, "Role") {
		names = append(names, "Role "+o.Name)
	}
	for _, o := range objectsOf[rbacv1.RoleBinding](t, manifest, "RoleBinding") {
		names = append(names, "RoleBinding "+o.Name)
	}
	want := []string{"ServiceAccount " + storagev1.SyncerName("demo"), "Role " + storagev1.SyncerName("demo"), "RoleBinding " + storagev1.SyncerName("demo")}
	if !slices.Equal(names, want) {
		t.Errorf("the chart's syncer identity: %q, want %q", names, want)
	}
}

// TestCustomResourceRBAC: the vcluster chart's rbac.customResources
// grants the syncer what the agent grants for the same rows (kinds'
// CustomHostRules and CustomClusterRules, the same names), and the platform
// chart's agent.customResources gives the agent those rights, which it
// lacks without them.
func TestCustomResourceRBAC(t *testing.T) {
	for _, tc := range []struct {
		name             string
		toHost, fromHost []string
	}{
		{"both ways, two groups", []string{"widgets.example.com", "issuers.cert-manager.io", "certificates.cert-manager.io"}, []string{"clusterissuers.cert-manager.io"}},
		{"only from the host", nil, []string{"clusterissuers.cert-manager.io", "nodepools.example.com"}},
		{"only to the host", []string{"certificates.cert-manager.io"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rows []kinds.Custom
			for _, n := range tc.toHost {
				rows = append(rows, kinds.Custom{CRD: n})
			}
			for _, n := range tc.fromHost {
				rows = append(rows, kinds.Custom{CRD: n, FromHost: true})
			}
			lists := map[string]interface{}{"toHost": valueList(tc.toHost), "fromHost": valueList(tc.fromHost)}
			vc := render(t, map[string]interface{}{"rbac": map[string]interface{}{"customResources": lists}})
			granted := checkCustomGrant(t, vc, rows)

			for _, runtime := range []string{"pod", "process"} {
				without := agentRules(t, renderSublet(t, map[string]interface{}{"agent": map[string]interface{}{"runtime": runtime}}))
				if ok, _ := rbacvalidation.Covers(without, granted); ok {
					t.Errorf("runtime %s: the agent holds the rows' rights without agent.customResources", runtime)
				}
				with := agentRules(t, renderSublet(t, map[string]interface{}{"agent": map[string]interface{}{"runtime": runtime, "customResources": lists}}))
				if ok, missing := rbacvalidation.Covers(with, granted); !ok {
					t.Errorf("runtime %s: with agent.customResources the agent cannot grant the rows' rights; missing: %v", runtime, missing)
				}
				cluster := kinds.CustomClusterRules(rows)
				want := append(append([]rbacv1.PolicyRule{cluster[0]}, kinds.CustomHostRules(rows)...), cluster[1:]...)
				if added := addedRules(without, with); !apiequality.Semantic.DeepEqual(added, want) {
					t.Errorf("runtime %s: agent.customResources adds rules %v, want exactly %v", runtime, added, want)
				}
			}
		})
	}
}

// checkCustomGrant checks the custom rows' Role, ClusterRole and bindings
// of the vcluster chart's manifest against kinds' rules for rows, and
// returns the rules granted.
func checkCustomGrant(t *testing.T, manifest string, rows []kinds.Custom) []rbacv1.PolicyRule {
	t.Helper()
	syncer := storagev1.SyncerName("demo")
	subjects := []rbacv1.Subject{{Kind: "ServiceAccount", Name: syncer, Namespace: "team-a"}}
	var granted []rbacv1.PolicyRule
	var roles []rbacv1.Role
	for _, r := range objectsOf[rbacv1.Role](t, manifest, "Role") {
		if r.Name == syncer+"-custom" {
			roles = append(roles, r)
			granted = append(granted, r.Rules...)
		}
	}
	if want := kinds.CustomHostRules(rows); len(want) == 0 && len(roles) > 0 {
		t.Errorf("no rows to the host, yet Role %s", roles[0].Name)
	} else if len(want) > 0 && (len(roles) != 1 || !apiequality.Semantic.DeepEqual(roles[0].Rules, want)) {
		t.Errorf("Role %s-custom: %v, want rules %v", syncer, roles, want)
	}
	var clusterRoles []rbacv1.ClusterRole
	for _, r := range objectsOf[rbacv1.ClusterRole](t, manifest, "ClusterRole") {
		if r.Name == "sublet:vc:team-a:demo:custom" {
			clusterRoles = append(clusterRoles, r)
			granted = append(granted, r.Rules...)
		}
	}
	if want := kinds.CustomClusterRules(rows); len(clusterRoles) != 1 || !apiequality.Semantic.DeepEqual(clusterRoles[0].Rules, want) {
		t.Errorf("ClusterRole sublet:vc:team-a:demo:custom: %v, want rules %v", clusterRoles, want)
	}
	bound := map[string]bool{}
	for _, b := range objectsOf[rbacv1.RoleBinding](t, manifest, "RoleBinding") {
		if b.Name == syncer+"-custom" && b.RoleRef.Kind == "Role" && b.RoleRef.Name == b.Name && apiequality.Semantic.DeepEqual(b.Subjects, subjects) {
			bound["Role"] = true
		}
	}
	for _, b := range objectsOf[rbacv1.ClusterRoleBinding](t, manifest, "ClusterRoleBinding") {
		if b.Name == "sublet:vc:team-a:demo:custom" && b.RoleRef.Kind == "ClusterRole" && b.RoleRef.Name == b.Name && apiequality.Semantic.DeepEqual(b.Subjects, subjects) {
			bound["ClusterRole"] = true
		}
	}
	if bound["Role"] != (len(roles) > 0) || !bound["ClusterRole"] {
		t.Errorf("bindings to the syncer %v; want one per role", bound)
	}
	return granted
}

// addedRules are the rules of with that base lacks, in order.
func addedRules(base, with []rbacv1.PolicyRule) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	for _, r := range with {
		if !slices.ContainsFunc(base, func(b rbacv1.PolicyRule) bool { return apiequality.Semantic.DeepEqual(b, r) }) {
			out = append(out, r)
		}
	}
	return out
}

// agentRules are the rules of the platform chart's agent ClusterRole.
func agentRules(t *testing.T, manifest string) []rbacv1.PolicyRule {
	t.Helper()
	for _, cr := range objectsOf[rbacv1.ClusterRole](t, manifest, "ClusterRole") {
		if cr.Name == "sublet-agent" {
			return cr.Rules
		}
	}
	t.Fatal("no ClusterRole sublet-agent")
	return nil
}

// valueList is a list of values as Helm reads it.
func valueList(ss []string) []interface{} {
	out := make([]interface{}, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
