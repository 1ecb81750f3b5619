package syncer

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sublet-dev/sublet/internal/translate"
)

func TestHostPod(t *testing.T) {
	tr := translate.Translator{VCluster: "demo", HostNamespace: "host-ns"}
	v := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-1", Namespace: "team", UID: "uid-1",
			Labels:      map[string]string{"app": "web"},
			Annotations: map[string]string{"cert-manager.io/issuer": "le"},
		},
		Spec: corev1.PodSpec{
			NodeName:           "virtual-node",
			ServiceAccountName: "builder",
			PriorityClassName:  "tenant-high",
			Volumes: []corev1.Volume{
				{Name: "kube-api-access-abcde", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{}}},
				{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}},
				{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}},
			},
			Containers: []corev1.Container{{
				Name: "web", Image: "nginx",
				Env: []corev1.EnvVar{{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "password"}}}},
				VolumeMounts: []corev1.VolumeMount{{Name: "kube-api-access-abcde", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}, {Name: "cfg", MountPath: "/etc/cfg"}},
			}},
		},
	}
	h := hostPod(tr, v)

	checks := []struct {
		what      string
		got, want string
	}{
		{"name", h.Name, "web-1-x-team-x-demo"},
		{"namespace", h.Namespace, "host-ns"},
		{"node name (host schedules)", h.Spec.NodeName, ""},
		{"service account", h.Spec.ServiceAccountName, ""},
		{"priority class", h.Spec.PriorityClassName, ""},
		{"hostname", h.Spec.Hostname, "web-1"},
		{"configmap volume", h.Spec.Volumes[0].ConfigMap.Name, "settings-x-team-x-demo"},
		{"pvc volume", h.Spec.Volumes[1].PersistentVolumeClaim.ClaimName, "data-x-team-x-demo"},
		{"secret env", h.Spec.Containers[0].Env[0].ValueFrom.SecretKeyRef.Name, "db-x-team-x-demo"},
		{"annotation kept", h.Annotations["cert-manager.io/issuer"], "le"},
		{"owner uid", h.Annotations[translate.AnnotationObjectUID], "uid-1"},
		{"owner label", h.Labels[translate.LabelManagedBy], "demo"},
		{"translated label", h.Labels[translate.LabelKey("app")], "web"},
		{"untranslated label", h.Labels["app"], ""},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if len(h.Spec.Volumes) != 2 || len(h.Spec.Containers[0].VolumeMounts) != 1 {
		t.Errorf("service-account token volume not dropped: volumes %v mounts %v", h.Spec.Volumes, h.Spec.Containers[0].VolumeMounts)
	}
	if h.Spec.AutomountServiceAccountToken == nil || *h.Spec.AutomountServiceAccountToken {
		t.Error("host pod would mount the host's service-account token")
	}
	if v.Spec.Volumes[1].ConfigMap.Name != "settings" || v.Spec.NodeName != "virtual-node" {
		t.Error("hostPod modified the virtual pod")
	}
}

func TestSelection(t *testing.T) {
	sel, err := Selection(nil, []string{"pods"})
	if err != nil || sel["pods"] {
		t.Errorf("disable pods: %v %v", sel, err)
	}
	if _, err := Selection([]string{"gadgets"}, nil); err == nil {
		t.Error("unknown resource accepted")
	}
}
