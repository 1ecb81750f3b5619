package syncer

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestPodSecurityCheck(t *testing.T) {
	plain := corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}}
	with := func(f func(s *corev1.PodSpec)) corev1.PodSpec {
		s := *plain.DeepCopy()
		f(&s)
		return s
	}
	privileged := with(func(s *corev1.PodSpec) {
		s.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
	})
	hostPath := with(func(s *corev1.PodSpec) {
		s.Volumes = []corev1.Volume{{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}
	})
	hostNS := with(func(s *corev1.PodSpec) { s.HostNetwork, s.HostPID = true, true })
	for _, tc := range []struct {
		level string
		spec  corev1.PodSpec
		want  []string // "" allowed
	}{
		{"baseline", plain, nil},
		{"baseline", privileged, []string{`baseline:latest`, `privileged`, `container "c"`}},
		{"baseline", hostPath, []string{`hostPath volumes`, `"root"`}},
		{"baseline", hostNS, []string{`host namespaces`, `hostNetwork=true`, `hostPID=true`}},
		{"restricted", plain, []string{`restricted:latest`, `runAsNonRoot`}},
		{"privileged", privileged, nil},
		{"privileged", hostPath, nil},
	} {
		p, err := NewPodSecurity(tc.level)
		if err != nil {
			t.Fatal(err)
		}
		got := p.Check(&metav1.ObjectMeta{Name: "p"}, &tc.spec)
		if tc.want == nil {
			if got != "" {
				t.Errorf("%s: refused %q", tc.level, got)
			}
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q does not say %q", tc.level, got, w)
			}
		}
	}
	if _, err := NewPodSecurity("lax"); err == nil {
		t.Error("unknown level accepted")
	}
}
