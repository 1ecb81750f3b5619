package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAgentFailsWhatCannotRun: a VirtualCluster the runtime would refuse
// (a name too long or with dots; a service CIDR that does not hold the
// host's) goes to Failed with a condition naming the rule, instead of a
// child that crash-loops; fixing the values brings it up without a restart.
func TestAgentFailsWhatCannotRun(t *testing.T) {
	needHost(t)
	agent, stateDir, ns := agentWithNamespace(t, "vc-refuse")
	hk := host.Kubeconfig
	status := func(name string) string {
		out, _ := exec.Command("kubectl", "--kubeconfig", hk, "get", "vc", name, "-n", ns, "-o",
			`jsonpath={.status.phase}|{.status.conditions[?(@.type=="ConfigurationValid")].status}|{.status.conditions[?(@.type=="ConfigurationValid")].message}|{.status.message}`).Output()
		return string(out)
	}

	// Names the runtime refuses: Failed at once, no child started.
	for name, rule := range map[string]string{
		strings.Repeat("a", 41): "41 characters long; a virtual cluster's name may have at most 40",
		strings.Repeat("b", 63): "63 characters long; a virtual cluster's name may have at most 40",
		"team.a":                "must not contain dots",
	} {
		kubectl(t, hk, fmt.Sprintf("apiVersion: storage.loft.sh/v1\nkind: VirtualCluster\nmetadata: {name: %s, namespace: %s}\n", name, ns), "apply", "-f", "-")
		poll(t, 30*time.Second, "Failed naming the rule for "+name, func(context.Context) (bool, error) {
			s := status(name)
			return strings.HasPrefix(s, "Failed|False|") && strings.Contains(s, rule), nil
		})
		if _, err := os.Stat(filepath.Join(stateDir, "vclusters", ns, name)); !os.IsNotExist(err) {
			t.Errorf("the runtime was started for refused name %s (err=%v)", name, err)
		}
		if events := kubectl(t, hk, "", "get", "events", "-n", ns, "--field-selector", "involvedObject.name="+name+",reason=InvalidName", "-o", "name"); events == "" {
			t.Errorf("no InvalidName event for %s", name)
		}
	}

	// A service range that does not hold the host's: the child refuses it
	// and exits; the cluster is Failed with the child's own message, and
	// is not restarted with backoff.
	apply := func(cidr string) {
		kubectl(t, hk, fmt.Sprintf(`apiVersion: storage.loft.sh/v1
kind: VirtualCluster
metadata: {name: narrow, namespace: %s}
spec:
  helmRelease:
    values: |
      virtualCluster:
        extraArgs: [--service-cidr=%s]
`, ns, cidr), "apply", "-f", "-")
	}
	apply("10.200.0.0/16")
	poll(t, 60*time.Second, "Failed with the runtime's message", func(context.Context) (bool, error) {
		s := status("narrow")
		return strings.HasPrefix(s, "Failed|False|") && strings.Contains(s, "--service-cidr 10.200.0.0/16 does not hold the host's service range 10.96.0.0/16"), nil
	})
	starts := 0
	for _, l := range strings.Split(agent.Output(), "\n") {
		if strings.Contains(l, `"started virtual cluster"`) && strings.Contains(l, `virtualcluster="`+ns+`/narrow"`) {
			starts++
		}
	}
	if starts != 1 {
		t.Errorf("the refused child was started %d times, want once:\n%s", starts, agent.Output())
	}
	if n := processesWith(filepath.Join(stateDir, "vclusters", ns, "narrow")); n != 0 {
		t.Errorf("%d processes run for the refused virtual cluster", n)
	}
	// Fixed values: up without restarting anything.
	apply("10.96.0.0/16")
	kubectl(t, hk, "", "wait", "--for=jsonpath={.status.phase}=Ready", "virtualcluster/narrow", "-n", ns, "--timeout=120s")
	if s := status("narrow"); !strings.HasPrefix(s, "Ready|True|") {
		t.Errorf("after the fix: %s", s)
	}
}
