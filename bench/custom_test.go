package bench

import (
	"os/exec"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/sublet-dev/sublet/internal/syncer/kinds"
	"github.com/sublet-dev/sublet/internal/testenv"
)

// BenchmarkCustomSync is BenchmarkRouteSync for a custom resource row of
// values: Certificates of a CRD the benchmark gives the host, with a
// reference translated (spec.secretName, a Secret the host's controller
// returns).
func BenchmarkCustomSync(b *testing.B) {
	rows := []kinds.Custom{{CRD: "certificates.pki.example.com", References: []kinds.Reference{{Path: "spec.secretName", Kind: "Secret", Returned: true}}}}
	mirrorBench{
		gvr:     schema.GroupVersionResource{Group: "pki.example.com", Version: "v1", Resource: "certificates"},
		install: installCertificateCRD,
		args:    []string{"--custom-resources=" + kinds.FormatCustom(rows)},
		object: func(name string) *unstructured.Unstructured {
			return &unstructured.Unstructured{Object: map[string]interface{}{
				"apiVersion": "pki.example.com/v1", "kind": "Certificate",
				"metadata": map[string]interface{}{"name": name},
				"spec":     map[string]interface{}{"secretName": name + "-tls", "dnsNames": []interface{}{name + ".example.com"}},
			}}
		},
		status: func(*unstructured.Unstructured) interface{} { return map[string]interface{}{"state": "Ready"} },
		statusBack: func(u *unstructured.Unstructured) bool {
			s, _, _ := unstructured.NestedString(u.Object, "status", "state")
			return s == "Ready"
		},
	}.run(b)
}

// installCertificateCRD gives host h a namespaced Certificate kind that
// keeps any spec and status.
func installCertificateCRD(b *testing.B, h *testenv.Process) {
	crd := testenv.OpenCRD("pki.example.com", "certificates", "Certificate", "Namespaced")
	cmd := exec.Command("kubectl", "--kubeconfig", h.Kubeconfig, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(crd)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("install the Certificate CRD: %v\n%s", err, out)
	}
	if out, err := exec.Command("kubectl", "--kubeconfig", h.Kubeconfig, "wait", "--for=condition=Established",
		"crd/certificates.pki.example.com", "--timeout=60s").CombinedOutput(); err != nil {
		b.Fatalf("wait for the Certificate CRD: %v\n%s", err, out)
	}
}
