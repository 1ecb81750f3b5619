package pod

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/sublet-dev/sublet/internal/isolation"
)

func TestRestrictScheduling(t *testing.T) {
	spec := func() *corev1.PodSpec {
		return &corev1.PodSpec{NodeSelector: map[string]string{"pool": "system", "zone": "a"}, Tolerations: []corev1.Toleration{
			{Operator: corev1.TolerationOpExists},
			{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists},
			{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
			{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule},
		}}
	}
	s := spec()
	r := RestrictScheduling(isolation.PodPolicy{}, s)
	if len(s.Tolerations) != 1 || s.Tolerations[0].Key != "node.kubernetes.io/not-ready" {
		t.Errorf("tolerations %+v", s.Tolerations)
	}
	if told := strings.Join(r, ";"); !strings.Contains(told, "every taint") || !strings.Contains(told, "control-plane") || !strings.Contains(told, "dedicated") {
		t.Errorf("told %q", told)
	}
	s = spec()
	r = RestrictScheduling(isolation.PodPolicy{AllowedTolerations: []string{"dedicated"}, NodeSelector: map[string]string{"pool": "tenants"}}, s)
	if len(s.Tolerations) != 2 || s.NodeSelector["pool"] != "tenants" || s.NodeSelector["zone"] != "a" {
		t.Errorf("tolerations %+v, node selector %v", s.Tolerations, s.NodeSelector)
	}
	if told := strings.Join(r, ";"); !strings.Contains(told, "nodeSelector pool=system") {
		t.Errorf("told %q", told)
	}
}
