package syncer

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/sublet-dev/sublet/internal/translate"
)

func TestHostIngress(t *testing.T) {
	tr := translate.Translator{VCluster: "demo", HostNamespace: "host-ns"}
	svc := func(name string) networkingv1.IngressBackend {
		return networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: name, Port: networkingv1.ServiceBackendPort{Number: 80}}}
	}
	resource := networkingv1.IngressBackend{Resource: &corev1.TypedLocalObjectReference{APIGroup: ptr.To("example.com"), Kind: "Bucket", Name: "b"}}
	v := &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team", Annotations: map[string]string{"cert-manager.io/cluster-issuer": "letsencrypt"}},
		Spec: networkingv1.IngressSpec{
			IngressClassName: ptr.To("nginx"),
			DefaultBackend:   &resource,
			TLS:              []networkingv1.IngressTLS{{Hosts: []string{"web.example.com"}, SecretName: "web-tls"}},
			Rules: []networkingv1.IngressRule{{Host: "web.example.com", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
				Paths: []networkingv1.HTTPIngressPath{{Path: "/", Backend: svc("web")}, {Path: "/files", Backend: resource}},
			}}}},
		},
	}
	h := hostIngress(tr, v)
	if h.Name != "web-x-team-x-demo" || h.Namespace != "host-ns" {
		t.Errorf("host ingress %s/%s", h.Namespace, h.Name)
	}
	if h.Annotations["cert-manager.io/cluster-issuer"] != "letsencrypt" {
		t.Error("cert-manager annotation not kept")
	}
	if *h.Spec.IngressClassName != "nginx" {
		t.Error("ingress class changed")
	}
	paths := h.Spec.Rules[0].HTTP.Paths
	if len(paths) != 1 || paths[0].Backend.Service.Name != "web-x-team-x-demo" {
		t.Errorf("paths %+v: want only the service path, translated", paths)
	}
	if h.Spec.DefaultBackend != nil {
		t.Error("resource default backend kept; it names a virtual object")
	}
	if h.Spec.TLS[0].SecretName != "web-tls-x-team-x-demo" || h.Spec.TLS[0].Hosts[0] != "web.example.com" {
		t.Errorf("tls %+v", h.Spec.TLS)
	}
	if v.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Name != "web" || len(v.Spec.Rules[0].HTTP.Paths) != 2 {
		t.Error("hostIngress modified the virtual ingress")
	}
	if keys := tlsSecretNames(v); len(keys) != 1 || keys[0] != "team/web-tls" {
		t.Errorf("TLS secret keys %v", keys)
	}
}

func TestHostEndpoints(t *testing.T) {
	tr := translate.Translator{VCluster: "demo", HostNamespace: "host-ns"}
	v := &corev1.Endpoints{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "team"},
		Subsets: []corev1.EndpointSubset{{
			Addresses: []corev1.EndpointAddress{
				{IP: "10.1.2.3", TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "team", Name: "db-0"}},
				{IP: "192.168.1.9", TargetRef: &corev1.ObjectReference{Kind: "Node", Name: "n1"}},
			},
			Ports: []corev1.EndpointPort{{Port: 5432}},
		}},
	}
	h := hostEndpoints(tr, v)
	if h.Name != "db-x-team-x-demo" {
		t.Errorf("name %s: must equal the host service's", h.Name)
	}
	a := h.Subsets[0].Addresses
	if a[0].IP != "10.1.2.3" || a[0].TargetRef.Name != "db-0-x-team-x-demo" || a[0].TargetRef.Namespace != "host-ns" {
		t.Errorf("pod address %+v", a[0])
	}
	if a[1].TargetRef != nil {
		t.Error("reference to a virtual node kept")
	}
	if v.Subsets[0].Addresses[0].TargetRef.Name != "db-0" {
		t.Error("hostEndpoints modified the virtual object")
	}

	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "db-manual", Namespace: "team", Labels: map[string]string{discoveryv1.LabelServiceName: "db"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.1.2.3"}}},
	}
	hs := hostEndpointSlice(tr, es)
	if hs.Labels[discoveryv1.LabelServiceName] != "db-x-team-x-demo" || hs.Labels[discoveryv1.LabelManagedBy] != managedBySyncer || hs.Name != "db-manual-x-team-x-demo" {
		t.Errorf("host slice %s labels %v", hs.Name, hs.Labels)
	}
}
