package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// podAttacks are pod specs a tenant could use to reach the host machine,
// each with the Pod Security control that must refuse it.
var podAttacks = []struct {
	name    string
	spec    func(*corev1.PodSpec)
	control string
}{
	{"privileged", func(s *corev1.PodSpec) {
		s.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
	}, "privileged"},
	{"hostpath", func(s *corev1.PodSpec) {
		s.Volumes = []corev1.Volume{{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}
		s.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "root", MountPath: "/host"}}
	}, "hostPath volumes"},
	{"hostnetwork", func(s *corev1.PodSpec) { s.HostNetwork = true }, "host namespaces (hostNetwork=true)"},
	{"hostpid", func(s *corev1.PodSpec) { s.HostPID = true }, "host namespaces (hostPID=true)"},
	{"capabilities", func(s *corev1.PodSpec) {
		s.Containers[0].SecurityContext = &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}}}
	}, "non-default capabilities"},
}

func attackPod(name string, mutate func(*corev1.PodSpec)) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	if mutate != nil {
		mutate(&p.Spec)
	}
	return p
}

// probeWebhook is a ValidatingWebhookConfiguration for CREATE of configmaps
// labelled egress-probe=true, calling client (a clientConfig in YAML).
func probeWebhook(name, client string) string {
	return fmt.Sprintf(`apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: %s}
webhooks:
- name: probe.egress.example.com
  clientConfig: %s
  rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}]
  objectSelector: {matchLabels: {egress-probe: "true"}}
  failurePolicy: Fail
  sideEffects: None
  admissionReviewVersions: [v1]
  timeoutSeconds: 5
`, name, client)
}

// createProbes creates labelled configmaps in the virtual cluster until
// one's error (or success, for want "") says what want says: the webhook
// configuration has reached the API server's informer. It returns the
// last error.
func createProbes(t *testing.T, v kubernetes.Interface, want string) error {
	t.Helper()
	var last error
	n := 0
	poll(t, 60*time.Second, "a configmap create answered with "+want, func(ctx context.Context) (bool, error) {
		n++
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("probe-%d", n), Labels: map[string]string{"egress-probe": "true"}}}
		_, last = v.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{})
		if want == "" {
			return last == nil, nil
		}
		return last != nil && strings.Contains(last.Error(), want), nil
	})
	return last
}

// refusal is the start of the guard's message for a dial to target.
func refusal(target string) string { return "egress to " + target + " refused: " }
