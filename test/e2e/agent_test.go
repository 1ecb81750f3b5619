package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/version"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/testenv"
)

// TestAgentSeedManifest: the seed's `kubectl apply -f vcluster.yaml` comes
// up Ready under the agent, is reachable with the published kubeconfig,
// survives an agent restart without a second process, reports invalid
// values, and deleting it removes everything it owned.
func TestAgentSeedManifest(t *testing.T) {
	needHost(t)
	stateDir := t.TempDir()
	t.Cleanup(func() { killChildren(stateDir) })
	agent := startAgent(t, stateDir)
	ns := createNamespace(t, host.Client, "vc-agent")
	hk := host.Kubeconfig

	kubectl(t, hk, seedManifest("demo", ns, "10.96.0.0/16"), "apply", "-f", "-")
	kubectl(t, hk, "", "wait", "--for=jsonpath={.status.phase}=Ready", "virtualcluster/demo", "-n", ns, "--timeout=120s")
	table := kubectl(t, hk, "", "get", "virtualclusters", "-n", ns)
	if !strings.Contains(table, "PHASE") || !strings.Contains(table, "VERSION") || !strings.Contains(table, "Ready") {
		t.Errorf("kubectl get virtualclusters:\n%s", table)
	}
	statusVersion := kubectl(t, hk, "", "get", "vc", "demo", "-n", ns, "-o", "jsonpath={.status.kubernetesVersion}")
	fallback := kubectl(t, hk, "", "get", "vc", "demo", "-n", ns, "-o", `jsonpath={.status.conditions[?(@.type=="VersionFallback")].status}`)
	if fallback != "True" {
		t.Errorf("VersionFallback condition %q, want True for k3s v1.21.2", fallback)
	}
	events := kubectl(t, hk, "", "get", "events", "-n", ns, "--field-selector", "reason=VersionFallback", "-o", "jsonpath={.items[*].message}")
	if !strings.Contains(events, "1.21.2") || !strings.Contains(events, strings.TrimPrefix(statusVersion, "v")) {
		t.Errorf("VersionFallback event %q does not name both versions (running %s)", events, statusVersion)
	}

	// The published admin kubeconfig reaches the virtual cluster.
	vkc := publishedKubeconfig(t, ns, "demo")
	nsList := kubectl(t, vkc, "", "get", "namespaces", "-o", "name")
	for _, want := range []string{"namespace/default", "namespace/kube-system", "namespace/kube-public"} {
		if !strings.Contains(nsList, want) {
			t.Errorf("virtual cluster namespaces lack %s:\n%s", want, nsList)
		}
	}
	var v version.Info
	if err := json.Unmarshal([]byte(kubectl(t, vkc, "", "get", "--raw", "/version")), &v); err != nil {
		t.Fatal(err)
	}
	if served := "v" + v.EmulationMajor + "." + v.EmulationMinor; served != statusVersion {
		t.Errorf("/version serves %s (git %s), status.kubernetesVersion says %s", served, v.GitVersion, statusVersion)
	}
	kubectl(t, vkc, "", "create", "deployment", "web", "--image=nginx")
	poll(t, 60*time.Second, "the virtual cluster's pod on the host", func(ctx context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", hk, "get", "pods", "-n", ns, "-l", "sublet.dev/managed-by=demo", "-o", "name").Output()
		return err == nil && strings.Count(string(out), "pod/") == 1, nil
	})

	// The agent restarts: it adopts the running virtual cluster.
	dataDir := filepath.Join(stateDir, "vclusters", ns, "demo", "data")
	pidBefore, _ := os.ReadFile(filepath.Join(stateDir, "vclusters", ns, "demo", "pid"))
	agent.Kill()
	agent = startAgent(t, stateDir)
	// The new agent has seen the running child once it says it adopted it.
	adopted := fmt.Sprintf(`virtualcluster="%s/demo"`, ns)
	poll(t, 60*time.Second, "the restarted agent adopts the running virtual cluster", func(context.Context) (bool, error) {
		for _, l := range strings.Split(agent.Output(), "\n") {
			if strings.Contains(l, "adopted a running virtual cluster") && strings.Contains(l, adopted) {
				return true, nil
			}
		}
		return false, nil
	})
	pidAfter, _ := os.ReadFile(filepath.Join(stateDir, "vclusters", ns, "demo", "pid"))
	if string(pidBefore) != string(pidAfter) || processesWith(dataDir) != 1 {
		t.Errorf("after an agent restart: pid %s → %s, %d processes for the data dir", pidBefore, pidAfter, processesWith(dataDir))
	}
	kubectl(t, hk, "", "wait", "--for=jsonpath={.status.phase}=Ready", "virtualcluster/demo", "-n", ns, "--timeout=30s")

	// Invalid values: Failed, with the path and the reason.
	kubectl(t, hk, `apiVersion: storage.loft.sh/v1
kind: VirtualCluster
metadata:
  name: broken
spec:
  helmRelease:
    values: |
      virtualCluster:
        imag: rancher/k3s:v1.35.0-k3s1
`, "apply", "-n", ns, "-f", "-")
	kubectl(t, hk, "", "wait", "--for=jsonpath={.status.phase}=Failed", "virtualcluster/broken", "-n", ns, "--timeout=30s")
	msg := kubectl(t, hk, "", "get", "vc", "broken", "-n", ns, "-o", `jsonpath={.status.conditions[?(@.type=="ValuesValid")].message}`)
	if !strings.Contains(msg, "virtualCluster.imag") {
		t.Errorf("ValuesValid message %q does not name the bad key", msg)
	}

	// Deleting it stops the runtime and removes what it owned.
	kubectl(t, hk, "", "delete", "virtualcluster", "demo", "-n", ns, "--timeout=60s")
	if n := processesWith(dataDir); n != 0 {
		t.Errorf("%d processes still run the deleted virtual cluster", n)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "vclusters", ns, "demo")); !os.IsNotExist(err) {
		t.Errorf("data of the deleted virtual cluster left (%v)", err)
	}
	left := kubectl(t, hk, "", "get", "pods,services,configmaps,secrets,serviceaccounts,roles,rolebindings", "-n", ns, "-l", "sublet.dev/managed-by=demo", "-o", "name")
	left += kubectl(t, hk, "", "get", "serviceaccounts,roles,rolebindings,secrets", "-n", ns, "-o", "name")
	for _, l := range strings.Fields(left) {
		if strings.Contains(l, "demo") || strings.Contains(l, "-x-default-x-demo") {
			t.Errorf("host object of the deleted virtual cluster left: %s", l)
		}
	}
	kubectl(t, hk, "", "delete", "virtualcluster", "broken", "-n", ns, "--timeout=30s")

	// Deleting the namespace deletes its virtual cluster cleanly too.
	ns2 := createNamespace(t, host.Client, "vc-agent-ns")
	kubectl(t, hk, seedManifest("second", ns2, "10.96.0.0/16"), "apply", "-f", "-")
	kubectl(t, hk, "", "wait", "--for=jsonpath={.status.phase}=Ready", "virtualcluster/second", "-n", ns2, "--timeout=120s")
	kubectl(t, hk, "", "delete", "namespace", ns2, "--timeout=90s")
	if n := processesWith(filepath.Join(stateDir, "vclusters", ns2, "second", "data")); n != 0 {
		t.Errorf("%d processes still run the virtual cluster of the deleted namespace", n)
	}
}

// TestAgentTemplatesAndBadValues: a default template's values reach a
// virtual cluster without values, its own values override them; bad
// values fail with a precise message and fixing them brings it up with no
// agent restart; deleting one of two virtual clusters in a namespace leaves
// the other's host objects alone.
func TestAgentTemplatesAndBadValues(t *testing.T) {
	needHost(t)
	_, _, ns := agentWithNamespace(t, "vc-tmpl")
	hk := host.Kubeconfig
	t.Cleanup(func() {
		_ = exec.Command("kubectl", "--kubeconfig", hk, "delete", "virtualclustertemplate", "e2e-base", "--ignore-not-found").Run()
	})
	kubectl(t, hk, `apiVersion: storage.loft.sh/v1
kind: VirtualClusterTemplate
metadata:
  name: e2e-base
  annotations:
    storage.loft.sh/default-template: "true"
spec:
  displayName: Base
  template:
    helmRelease:
      values: |
        virtualCluster:
          image: rancher/k3s:v1.35.4-k3s1
        sync:
          ingresses:
            enabled: false
`, "apply", "-f", "-")
	kubectl(t, hk, fmt.Sprintf(`apiVersion: storage.loft.sh/v1
kind: VirtualCluster
metadata: {name: plain, namespace: %[1]s}
---
apiVersion: storage.loft.sh/v1
kind: VirtualCluster
metadata: {name: own, namespace: %[1]s}
spec:
  helmRelease:
    values: |
      virtualCluster:
        image: rancher/k3s:v1.36.1-k3s1
`, ns), "apply", "-f", "-")
	for name, want := range map[string]string{"plain": "v1.35", "own": "v1.36"} {
		kubectl(t, hk, "", "wait", "--for=jsonpath={.status.phase}=Ready", "virtualcluster/"+name, "-n", ns, "--timeout=120s")
		got := kubectl(t, hk, "", "get", "vc", name, "-n", ns, "-o", "jsonpath={.status.kubernetesVersion}")
		eff := kubectl(t, hk, "", "get", "vc", name, "-n", ns, "-o", "jsonpath={.status.effectiveValues}")
		if got != want || !strings.Contains(eff, "ingresses") {
			t.Errorf("%s: version %s (want %s), effective values:\n%s", name, got, want, eff)
		}
	}

	// Bad values, one after another, then fixed.
	apply := func(values string) {
		kubectl(t, hk, fmt.Sprintf(`apiVersion: storage.loft.sh/v1
kind: VirtualCluster
metadata: {name: fixme, namespace: %s}
spec:
  helmRelease:
    values: |
%s`, ns, indent(values, "      ")), "apply", "-f", "-")
	}
	for _, bad := range []struct{ values, want string }{
		{"virtualCluster:\n  extraArgs: [--service-cidr=10.96.0.0/99]\n", "virtualCluster.extraArgs[0]"},
		{"virtualCluster:\n  image: rancher/k3s\n", "virtualCluster.image"},
		{"virtualCluster: [\n", "not valid YAML"},
		{"virtualClusterr: {}\n", "virtualClusterr"},
	} {
		apply(bad.values)
		poll(t, 30*time.Second, "Failed naming "+bad.want, func(ctx context.Context) (bool, error) {
			out, err := exec.Command("kubectl", "--kubeconfig", hk, "get", "vc", "fixme", "-n", ns, "-o",
				`jsonpath={.status.phase} {.status.conditions[?(@.type=="ValuesValid")].message}`).Output()
			return err == nil && strings.HasPrefix(string(out), "Failed ") && strings.Contains(string(out), bad.want), nil
		})
	}
	apply("virtualCluster:\n  extraArgs: [--service-cidr=10.96.0.0/16]\n")
	kubectl(t, hk, "", "wait", "--for=jsonpath={.status.phase}=Ready", "virtualcluster/fixme", "-n", ns, "--timeout=120s")

	// Two virtual clusters in one namespace: deleting one leaves the other.
	for _, name := range []string{"plain", "own"} {
		kubectl(t, publishedKubeconfig(t, ns, name), "", "create", "deployment", "web", "--image=nginx")
	}
	var plainPods string
	poll(t, 60*time.Second, "a host pod per virtual cluster", func(ctx context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", hk, "get", "pods", "-n", ns, "-l", "sublet.dev/managed-by", "-o",
			`jsonpath={range .items[*]}{.metadata.labels.sublet\.dev/managed-by} {.metadata.uid}{"\n"}{end}`).Output()
		plainPods = ""
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "plain ") {
				plainPods += l + "\n"
			}
		}
		return err == nil && strings.Count(string(out), "plain ") == 1 && strings.Count(string(out), "own ") == 1, nil
	})
	kubectl(t, hk, "", "delete", "virtualcluster", "own", "-n", ns, "--timeout=60s")
	out := kubectl(t, hk, "", "get", "pods", "-n", ns, "-l", "sublet.dev/managed-by", "-o",
		`jsonpath={range .items[*]}{.metadata.labels.sublet\.dev/managed-by} {.metadata.uid}{"\n"}{end}`)
	if strings.Contains(out, "own ") || !strings.Contains(out, strings.TrimSpace(plainPods)) {
		t.Errorf("after deleting own, host pods:\n%s\nwant plain's unchanged:\n%s", out, plainPods)
	}
	if phase := kubectl(t, hk, "", "get", "vc", "plain", "-n", ns, "-o", "jsonpath={.status.phase}"); phase != "Ready" {
		t.Errorf("plain is %s after its neighbour was deleted", phase)
	}
}

// TestAgentPodRuntime: with --runtime pod the agent installs the vcluster
// chart as a Helm release per VirtualCluster. Pods are simulated here, so
// the test checks the release and its objects, not a running control
// plane; deleting the VirtualCluster uninstalls it.
func TestAgentPodRuntime(t *testing.T) {
	needHost(t)
	p, _, err := testenv.StartUntil(context.Background(), "Sublet agent is running",
		"agent", "--kubeconfig", host.Kubeconfig, "--state-dir", t.TempDir(), "--metrics-bind-address", "0",
		"--leader-elect=false", "--runtime", "pod", "--image", "registry.local:5000/sublet:e2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	ns := createNamespace(t, host.Client, "vc-pod")
	hk := host.Kubeconfig
	kubectl(t, hk, seedManifest("podvc", ns, "10.96.0.0/16"), "apply", "-f", "-")
	want := []string{"statefulset.apps/podvc", "service/podvc", "serviceaccount/vc-podvc-syncer", "role.rbac.authorization.k8s.io/vc-podvc-syncer",
		"rolebinding.rbac.authorization.k8s.io/vc-podvc-syncer", "secret/sh.helm.release.v1.podvc.v1"}
	poll(t, 60*time.Second, "the release's objects", func(ctx context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", hk, "get", "statefulsets,services,serviceaccounts,roles,rolebindings,secrets", "-n", ns, "-o", "name").Output()
		if err != nil {
			return false, nil
		}
		for _, w := range want {
			if !strings.Contains(string(out), w+"\n") {
				return false, nil
			}
		}
		return true, nil
	})
	sts := kubectl(t, hk, "", "get", "statefulset", "podvc", "-n", ns, "-o", "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].args}")
	for _, w := range []string{"registry.local:5000/sublet:e2e", "--kubernetes-version=v1.", "--service-cidr=10.96.0.0/16", "--kubeconfig-secret=vc-podvc"} {
		if !strings.Contains(sts, w) {
			t.Errorf("statefulset %q lacks %q", sts, w)
		}
	}
	status := kubectl(t, hk, "", "get", "vc", "podvc", "-n", ns, "-o", "jsonpath={.status.runtime} {.status.phase}")
	if status != "pod Deploying" {
		t.Errorf("status %q, want runtime pod, Deploying (no real pod runs here)", status)
	}
	// Sleep scales the StatefulSet to 0 and keeps the release; waking
	// scales it back.
	kubectl(t, hk, "", "annotate", "virtualcluster/podvc", "-n", ns, storagev1.AnnotationForceSleep+"=true")
	waitVCPhase(t, ns, "podvc", storagev1.PhaseSleeping, 90*time.Second)
	if r := kubectl(t, hk, "", "get", "statefulset", "podvc", "-n", ns, "-o", "jsonpath={.spec.replicas}"); r != "0" {
		t.Errorf("asleep: the StatefulSet has %s replicas, want 0", r)
	}
	kubectl(t, hk, "", "annotate", "virtualcluster/podvc", "-n", ns, storagev1.AnnotationForceSleep+"-",
		fmt.Sprintf("%s=%d", storagev1.AnnotationLastActivity, time.Now().Unix()+1), "--overwrite")
	poll(t, 60*time.Second, "the StatefulSet back to 1 replica", func(context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", hk, "get", "statefulset", "podvc", "-n", ns, "-o", "jsonpath={.spec.replicas}").Output()
		return err == nil && string(out) == "1", nil
	})

	kubectl(t, hk, "", "delete", "virtualcluster", "podvc", "-n", ns, "--timeout=60s")
	out := kubectl(t, hk, "", "get", "statefulsets,services,serviceaccounts,roles,rolebindings,secrets,persistentvolumeclaims", "-n", ns, "-o", "name")
	if strings.Contains(out, "podvc") {
		t.Errorf("objects of the uninstalled release left:\n%s", out)
	}
}
