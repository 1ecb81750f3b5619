package syncer

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sublet-dev/sublet/internal/isolation"
	"github.com/sublet-dev/sublet/internal/translate"
)

func TestHostService(t *testing.T) {
	tr := translate.Translator{VCluster: "demo", HostNamespace: "host-ns"}
	v := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team", UID: "u1", Annotations: map[string]string{"a": "b"}},
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeNodePort,
			ClusterIP: "10.96.1.2",
			Selector:  map[string]string{"app": "web"},
			Ports:     []corev1.ServicePort{{Name: "http", Port: 80, NodePort: 30080}},
		},
	}
	// Node ports allowed: the host allocates its own.
	h, _, ok := hostService(&Context{Translator: tr, Policy: isolation.Policy{Services: isolation.ServicePolicy{AllowNodePort: true}}}, v)
	if !ok || h.Spec.Type != corev1.ServiceTypeNodePort {
		t.Fatalf("host service %v %+v", ok, h.Spec)
	}
	if h.Name != "web-x-team-x-demo" || h.Namespace != "host-ns" {
		t.Errorf("host service %s/%s", h.Namespace, h.Name)
	}
	if h.Spec.ClusterIP != "10.96.1.2" {
		t.Errorf("host service does not ask for the virtual ClusterIP: %q", h.Spec.ClusterIP)
	}
	if h.Spec.Ports[0].NodePort != 0 {
		t.Error("host service asks for the virtual node port; the host must allocate its own")
	}
	want := tr.HostSelector("team", map[string]string{"app": "web"})
	if len(h.Spec.Selector) != len(want) || h.Spec.Selector[translate.LabelKey("app")] != "web" || h.Spec.Selector[translate.LabelCopyOf] != "demo" {
		t.Errorf("selector %v, want %v", h.Spec.Selector, want)
	}
	if h.Annotations["a"] != "b" || h.Annotations[translate.AnnotationObjectUID] != "u1" {
		t.Errorf("annotations %v", h.Annotations)
	}
	if v.Spec.Ports[0].NodePort != 30080 || v.Spec.Selector["app"] != "web" {
		t.Error("hostService modified the virtual service")
	}
}

func TestMergeNodePorts(t *testing.T) {
	ports := []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: 31000}, {Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}
	from := []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, NodePort: 32053}, {Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: 32080}}
	got := mergeNodePorts(ports, from)
	if got[0].NodePort != 32080 || got[1].NodePort != 32053 {
		t.Errorf("merged %v", got)
	}
	if ports[0].NodePort != 31000 {
		t.Error("mergeNodePorts modified its input")
	}
	if !portsEqualIgnoringNodePort(ports, got) {
		t.Error("ports differing only in node ports compare unequal")
	}
}
