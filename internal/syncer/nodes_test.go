package syncer

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestVirtualNode(t *testing.T) {
	h := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"kubernetes.io/hostname": "n1"}, Annotations: map[string]string{"host-only": "x"}},
		Spec:       corev1.NodeSpec{PodCIDR: "10.244.0.0/24", ProviderID: "cloud://n1", Taints: []corev1.Taint{{Key: "k", Effect: corev1.TaintEffectNoSchedule}}},
		Status: corev1.NodeStatus{
			Capacity:   corev1.ResourceList{corev1.ResourcePods: resource.MustParse("110")},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}},
		},
	}
	v := virtualNode(h, nil)
	if v.Name != "n1" || v.Labels[labelVirtualNode] != "true" || v.Labels["kubernetes.io/hostname"] != "n1" {
		t.Errorf("metadata %+v", v.ObjectMeta)
	}
	if len(v.Annotations) != 0 || v.Spec.PodCIDR != "" || v.Spec.ProviderID != "" {
		t.Error("host-only annotations or spec fields leaked into the virtual node")
	}
	if len(v.Spec.Taints) != 1 || v.Status.Capacity.Pods().Value() != 110 || v.Status.Conditions[0].Type != corev1.NodeReady {
		t.Errorf("taints, capacity or conditions not copied: %+v", v)
	}
	if _, ok := h.Labels[labelVirtualNode]; ok {
		t.Error("virtualNode modified the host node's labels")
	}
	// With a kubelet proxy, the virtual API server reaches it, not the
	// host's kubelet.
	v = virtualNode(h, &KubeletEndpoint{Address: "192.0.2.7", Port: 10777})
	if v.Status.Addresses[0].Address != "192.0.2.7" || v.Status.DaemonEndpoints.KubeletEndpoint.Port != 10777 || h.Status.Addresses[0].Address != "10.0.0.1" {
		t.Errorf("kubelet endpoint: %+v %+v", v.Status.Addresses, v.Status.DaemonEndpoints)
	}
}
