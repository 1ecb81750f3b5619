package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// A tenant's ValidatingAdmissionPolicies work in its virtual cluster as in
// any cluster: the virtual API server enforces a bound policy, and the
// virtual controller-manager type-checks every policy's expressions against
// the schemas of the kinds it matches and reports what does not check in
// the policy's status.
func TestVClusterValidatingAdmissionPolicy(t *testing.T) {
	needHost(t)
	hostNS := createNamespace(t, host.Client, "vc-vap")
	vc := startVCluster(t, "vap", hostNS)

	kubectl(t, vc.Kubeconfig, admissionPolicies, "apply", "-f", "-")

	// Type checking: a field Deployment does not have.
	poll(t, 60*time.Second, "the type-checking warning in the misspelled policy's status", func(ctx context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", vc.Kubeconfig, "get", "validatingadmissionpolicy", "misspelled",
			"-o", "jsonpath={.status.typeChecking.expressionWarnings[*].warning}").CombinedOutput()
		return err == nil && strings.Contains(string(out), "replicaz"), nil
	})

	// Enforcement, once the API server has loaded the bound policy; dry
	// runs go through admission and leave nothing behind.
	var denied string
	poll(t, 60*time.Second, "the replica limit denying a deployment of 10", func(ctx context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", vc.Kubeconfig, "create", "deployment", "big", "--image=example.com/app",
			"--replicas=10", "--dry-run=server").CombinedOutput()
		denied = string(out)
		return err != nil && strings.Contains(denied, "at most 5 replicas"), nil
	})
	if !strings.Contains(denied, "replica-limit") {
		t.Errorf("the refusal does not name the policy:\n%s", denied)
	}
	kubectl(t, vc.Kubeconfig, "", "create", "deployment", "small", "--image=example.com/app", "--replicas=3", "--dry-run=server")
}

const admissionPolicies = `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: replica-limit
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: ["apps"]
      apiVersions: ["v1"]
      operations: ["CREATE", "UPDATE"]
      resources: ["deployments"]
  validations:
  - expression: "object.spec.replicas <= 5"
    message: at most 5 replicas
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: replica-limit
spec:
  policyName: replica-limit
  validationActions: [Deny]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: misspelled
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: ["apps"]
      apiVersions: ["v1"]
      operations: ["CREATE"]
      resources: ["deployments"]
  validations:
  - expression: "object.spec.replicaz <= 5"
`
