package values

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/sublet-dev/sublet/internal/isolation"
	"github.com/sublet-dev/sublet/internal/kubeversion"
)

// seedValues is the values block of the seed's VirtualCluster manifest.
const seedValues = `virtualCluster:
  image: rancher/k3s:v1.21.2-k3s1
  extraArgs:
  - --service-cidr=10.96.0.0/12
`

func TestSeedValues(t *testing.T) {
	e, err := Merge(Layer{Source: "spec.helmRelease.values", YAML: seedValues})
	if err != nil {
		t.Fatal(err)
	}
	oldest, _ := kubeversion.Range()
	if e.Version.Asked != "1.21.2" || !e.Version.Fallback || e.Version.Run != fmt.Sprintf("1.%d", oldest) {
		t.Errorf("version %+v", e.Version)
	}
	args := strings.Join(e.RunArgs(), " ")
	if !strings.Contains(args, "--service-cidr=10.96.0.0/12") || !strings.Contains(args, fmt.Sprintf("--kubernetes-version=v1.%d", oldest)) {
		t.Errorf("run args %s", args)
	}
}

// TestFromHostSelectorArg: a selector in values reaches the runtime as a
// --from-host-selector in kubectl's syntax.
func TestFromHostSelectorArg(t *testing.T) {
	e, err := Merge(Layer{Source: "values", YAML: "sync:\n  storageclasses:\n    selector:\n      matchLabels: {team: a}\n      matchExpressions: [{key: tier, operator: In, values: [gold, silver]}]\n"})
	if err != nil {
		t.Fatal(err)
	}
	want := "--from-host-selector=storageclasses=team=a,tier in (gold,silver)"
	args := e.RunArgs()
	if !slices.Contains(args, want) {
		t.Errorf("run args %q lack %q", args, want)
	}
}

func TestDatastoreArg(t *testing.T) {
	e, err := Merge(Layer{Source: "values", YAML: "virtualCluster:\n  extraArgs: [--datastore=etcd]\n"})
	if err != nil {
		t.Fatal(err)
	}
	if args := strings.Join(e.RunArgs(), " "); !strings.Contains(args, "--datastore=etcd") || strings.Contains(args, "--apiserver-arg=--datastore") {
		t.Errorf("run args %s, want --datastore=etcd for vcluster run itself", args)
	}
}

func TestValuesErrorsNamePathAndReason(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown key", "virtualCluster:\n  imag: x\n", []string{"virtualCluster.imag", "unknown field"}},
		{"unknown top-level key", "syncr: {}\n", []string{`"syncr"`}},
		{"wrong type", "virtualCluster:\n  extraArgs: --service-cidr=10.0.0.0/16\n", []string{"virtualCluster.extraArgs", "a list"}},
		{"bad bool", "sync:\n  ingresses:\n    enabled: maybe\n", []string{"sync.ingresses.enabled"}},
		{"invalid CIDR", "virtualCluster:\n  extraArgs: [--service-cidr=10.96.0.0/99]\n", []string{"virtualCluster.extraArgs[0]", "not a CIDR"}},
		{"flag not allowed", "virtualCluster:\n  extraArgs: [--etcd-servers=http://evil]\n", []string{"virtualCluster.extraArgs[0]", "--service-cidr"}},
		{"unknown datastore", "virtualCluster:\n  extraArgs: [--datastore=mysql]\n", []string{"virtualCluster.extraArgs[0]", "--datastore=sqlite", "--datastore=etcd"}},
		{"no tag", "virtualCluster:\n  image: rancher/k3s\n", []string{"virtualCluster.image", "no tag"}},
		{"tag without version", "virtualCluster:\n  image: rancher/k3s:latest\n", []string{"virtualCluster.image", "latest"}},
		{"unknown syncer", "syncer:\n  extraArgs: [--disable-sync-resources=gadgets]\n", []string{"syncer.extraArgs[0]", "ingresses"}},
		{"unknown sync key", "sync:\n  gadgets:\n    enabled: true\n", []string{"sync[gadgets]"}},
		{"selector on a synced kind", "sync:\n  pods:\n    selector: {matchLabels: {a: b}}\n", []string{"sync[pods].selector", "copied from the host"}},
		{"bad selector", "sync:\n  storageclasses:\n    selector: {matchExpressions: [{key: tier, operator: Near}]}\n", []string{"sync[storageclasses].selector", "Near"}},
		{"selector of the wrong type", "sync:\n  storageclasses:\n    selector: tier=gold\n", []string{"sync.storageclasses.selector"}},
		{"bad quantity", "isolation:\n  resourceQuota:\n    quota: {cpu: lots, memory: 4}\n", []string{"isolation.resourceQuota.quota[cpu]", "quantity"}},
		{"not YAML", "virtualCluster: [\n", []string{"not valid YAML"}},
		{"not a map", "- a\n- b\n", []string{"a map"}},
		{"duplicate key", "virtualCluster:\n  image: rancher/k3s:v1.35.0-k3s1\n  image: rancher/k3s:v1.36.0-k3s1\n", []string{"virtualCluster.image", "twice", "lines 2 and 3"}},
		{"duplicate top-level key", "sync: {}\nsync: {}\n", []string{"sync", "twice"}},
		{"duplicate key in a list item", "isolation:\n  resourceQuota:\n    quota: {cpu: 1, cpu: 2}\n", []string{"isolation.resourceQuota.quota.cpu", "twice"}},
		{"second document", "virtualCluster: {}\n---\nsync: {}\n", []string{"2 YAML documents", "line 3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Merge(Layer{Source: "spec.helmRelease.values", YAML: tc.yaml})
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestMergeOrder(t *testing.T) {
	e, err := Merge(
		Layer{Source: "cluster default", YAML: "virtualCluster:\n  image: rancher/k3s:v1.35.1-k3s1\nsync:\n  ingresses: {enabled: false}\n  nodes: {enabled: false}\n"},
		Layer{Source: `template "t"`, YAML: "sync:\n  nodes: {enabled: true}\n"},
		Layer{Source: "spec.helmRelease.values", YAML: "virtualCluster:\n  extraArgs: [--event-ttl=2h]\n"},
	)
	if err != nil {
		t.Fatal(err)
	}
	if e.Values.VirtualCluster.Image != "rancher/k3s:v1.35.1-k3s1" || len(e.Values.VirtualCluster.ExtraArgs) != 1 {
		t.Errorf("virtualCluster %+v", e.Values.VirtualCluster)
	}
	if *e.Values.Sync["nodes"].Enabled != true || *e.Values.Sync["ingresses"].Enabled != false {
		t.Errorf("sync %+v", e.Values.Sync)
	}
	args := strings.Join(e.RunArgs(), " ")
	for _, w := range []string{"--kubernetes-version=v1.35", "--apiserver-arg=--event-ttl=2h", "--sync=nodes", "--disable-sync-resources=ingresses"} {
		if !strings.Contains(args, w) {
			t.Errorf("args %q lack %q", args, w)
		}
	}
	if e.Version.Fallback {
		t.Error("a shipped version reported as fallback")
	}
	if !strings.Contains(e.YAML, "event-ttl") || !strings.Contains(e.YAML, "v1.35.1") {
		t.Errorf("merged YAML:\n%s", e.YAML)
	}
	// The failing layer is named.
	_, err = Merge(Layer{Source: `template "t"`, YAML: "bogus: 1\n"}, Layer{Source: "spec", YAML: ""})
	if err == nil || !strings.Contains(err.Error(), `template "t"`) {
		t.Errorf("error %v does not name the layer", err)
	}
}

func TestParseVersion(t *testing.T) {
	oldest, newest := kubeversion.Range()
	for _, tc := range []struct {
		image, run string
		fallback   bool
	}{
		{"", "", false},
		{fmt.Sprintf("rancher/k3s:v1.%d.0-k3s1", newest), fmt.Sprintf("1.%d", newest), false},
		{fmt.Sprintf("registry.local:5000/k3s:v1.%d.3", oldest), fmt.Sprintf("1.%d", oldest), false},
		{"rancher/k3s:v1.99.0-k3s1", fmt.Sprintf("1.%d", newest), true},
		{"rancher/k3s:v1.21.2-k3s1@sha256:abc", fmt.Sprintf("1.%d", oldest), true},
	} {
		v, err := ParseVersion(tc.image)
		if err != nil || v.Run != tc.run || v.Fallback != tc.fallback {
			t.Errorf("%s: %+v %v, want run %s fallback %v", tc.image, v, err, tc.run, tc.fallback)
		}
	}
	if _, err := ParseVersion("registry.local:5000/k3s"); err == nil {
		t.Error("a registry port taken for a tag")
	}
}

func TestNumericQuantities(t *testing.T) {
	e, err := Merge(Layer{Source: "values", YAML: "isolation:\n  resourceQuota:\n    quota: {cpu: 0.5, memory: 8589934592, pods: 10, storage: 8Gi}\n  limitRange:\n    default: {cpu: \"1.5\"}\n"})
	if err != nil {
		t.Fatal(err)
	}
	q := e.Values.Isolation.ResourceQuota.Quota
	for k, want := range map[string]Quantity{"cpu": "0.5", "memory": "8589934592", "pods": "10", "storage": "8Gi"} {
		if q[k] != want {
			t.Errorf("quota[%s] = %q, want %q", k, q[k], want)
		}
	}
	if got := e.Values.Isolation.LimitRange.Default["cpu"]; got != "1.5" {
		t.Errorf("limitRange.default[cpu] = %q", got)
	}
	if !strings.Contains(e.YAML, "8589934592") {
		t.Errorf("merged YAML lost the exact number:\n%s", e.YAML)
	}
	// Empty documents around the one document are fine.
	if _, err := Merge(Layer{Source: "values", YAML: "---\nsync: {}\n---\n"}); err != nil {
		t.Errorf("one document between separators refused: %v", err)
	}
}

// TestLooserThan: a VirtualCluster's own values may tighten every isolation
// setting of the layers below and loosen none.
func TestLooserThan(t *testing.T) {
	const baseDoc = "isolation:\n  enabled: true\n  resourceQuota:\n    quota: {count/pods: 10}\n  networkPolicy:\n    allowIngressFromNamespaces: [ingress-nginx, monitoring]\n"
	// over is the effective isolation of own values over baseDoc.
	over := func(doc string) Isolation {
		t.Helper()
		e, err := Merge(Layer{Source: "template", YAML: baseDoc}, Layer{Source: "own", YAML: doc})
		if err != nil {
			t.Fatal(err)
		}
		return e.Values.Isolation
	}
	merge := func(doc string) Isolation {
		t.Helper()
		e, err := Merge(Layer{Source: "test", YAML: doc})
		if err != nil {
			t.Fatal(err)
		}
		return e.Values.Isolation
	}
	vars := isolation.Vars{Name: "t1", Namespace: "team-t"}
	base := merge(baseDoc)
	for _, tighter := range []string{
		"",
		"isolation:\n  enabled: true\n  podSecurityStandard: restricted\n",
		"isolation:\n  enabled: true\n  resourceQuota:\n    quota: {count/pods: 5, requests.cpu: 2}\n",
		"isolation:\n  enabled: true\n  limitRange:\n    default: {cpu: 500m}\n",
		"isolation:\n  enabled: true\n  networkPolicy:\n    allowIngressFromNamespaces: [monitoring]\n",
	} {
		if ls := over(tighter).LooserThan(base, vars); len(ls) != 0 {
			t.Errorf("%q: looser %v", tighter, ls)
		}
	}
	for doc, path := range map[string]string{
		"isolation:\n  enabled: true\n  podSecurityStandard: privileged\n":                                                       "isolation.podSecurityStandard",
		"isolation:\n  enabled: false\n":                                                                                         "isolation.resourceQuota.enabled",
		"isolation:\n  enabled: true\n  resourceQuota:\n    quota: {count/pods: 11}\n":                                           "isolation.resourceQuota.quota.count/pods",
		"isolation:\n  enabled: true\n  resourceQuota:\n    quota: {requests.cpu: 100}\n":                                        "isolation.resourceQuota.quota.requests.cpu",
		"isolation:\n  enabled: true\n  limitRange:\n    defaultRequest: {memory: 1Gi}\n":                                        "isolation.limitRange.defaultRequest.memory",
		"isolation:\n  enabled: true\n  networkPolicy:\n    allowIngressFromNamespaces: [kube-system]\n":                         "isolation.networkPolicy.allowIngressFromNamespaces",
		"isolation:\n  enabled: true\n  services:\n    allowLoadBalancer: true\n":                                                "isolation.services.allowLoadBalancer",
		"isolation:\n  enabled: true\n  resourceQuota:\n    quota: {count/pods: 10}\n  egress:\n    allowedCIDRs: [0.0.0.0/0]\n": "isolation.egress.allowedCIDRs",
	} {
		found := false
		for _, l := range over(doc).LooserThan(base, vars) {
			found = found || l.Path == path
		}
		if !found {
			t.Errorf("%q: not looser at %s", doc, path)
		}
	}
	// Without any layer below, privileged is looser than the default.
	if ls := merge("isolation:\n  podSecurityStandard: privileged\n").LooserThan(Isolation{}, vars); len(ls) != 1 || ls[0].Path != "isolation.podSecurityStandard" {
		t.Errorf("privileged over the defaults: %v", ls)
	}
}

func TestRunArgsIsolationPolicy(t *testing.T) {
	e, err := Merge(Layer{Source: "test", YAML: "isolation:\n  services:\n    allowNodePort: true\n  pods:\n    nodeSelector: {pool: tenants}\n  egress:\n    allowedCIDRs: [10.20.0.0/16, 127.0.0.1/32]\n"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`--isolation-policy={"services":{"allowNodePort":true},"pods":{"nodeSelector":{"pool":"tenants"}}}`,
		"--egress-allowed-cidrs=10.20.0.0/16,127.0.0.1/32"} {
		if args := strings.Join(e.RunArgs(), " "); !strings.Contains(args, want) {
			t.Errorf("run args %s, want %s", args, want)
		}
	}
	if _, err := Merge(Layer{Source: "test", YAML: "isolation:\n  ingresses:\n    allowedHosts: [\"a.*.com\"]\n"}); err == nil || !strings.Contains(err.Error(), "isolation.ingresses.allowedHosts[0]") {
		t.Errorf("a bad host pattern: %v", err)
	}
}
