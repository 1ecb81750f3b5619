package syncer

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/randfill"

	"github.com/sublet-dev/sublet/internal/isolation"
	"github.com/sublet-dev/sublet/internal/translate"
)

func policyContext(p isolation.Policy) *Context {
	return &Context{Translator: translate.Translator{VCluster: "t1", HostNamespace: "team-t"}, Policy: p}
}

// TestHostMetaClearsHostOwnedFields: whatever a tenant's object carries in
// its metadata, the host copy has only the translated name, namespace,
// labels and the annotations the base rule passes, plus the owner's.
func TestHostMetaClearsHostOwnedFields(t *testing.T) {
	tr := translate.Translator{VCluster: "t1", HostNamespace: "team-t"}
	f := randfill.New().NilChance(0).NumElements(1, 3)
	for i := 0; i < 50; i++ {
		var v metav1.ObjectMeta
		f.Fill(&v)
		v.Annotations["k8s.v1.cni.cncf.io/networks"] = "host-net"
		v.Annotations["checksum/config"] = "abc"
		h := hostMeta(tr, &v)
		got := reflect.ValueOf(h)
		for j := 0; j < got.NumField(); j++ {
			name := got.Type().Field(j).Name
			switch name {
			case "Name", "Namespace", "Labels", "Annotations":
				continue
			}
			if !got.Field(j).IsZero() {
				t.Errorf("host copy's %s = %v, want it left to the host", name, got.Field(j).Interface())
			}
		}
		if h.Namespace != "team-t" || h.Labels[translate.LabelCopyOf] != "t1" || h.Annotations[translate.AnnotationObjectName] != v.Name {
			t.Errorf("host meta %+v", h)
		}
		if _, ok := h.Annotations["k8s.v1.cni.cncf.io/networks"]; ok {
			t.Error("a CNI annotation reached the host copy")
		}
		if h.Annotations["checksum/config"] != "abc" {
			t.Error("a plain annotation was dropped")
		}
		for k := range v.Labels {
			if _, ok := h.Labels[k]; ok && k != translate.LabelCopyOf && k != translate.LabelVirtualNS {
				t.Errorf("tenant label %s reached the host untranslated", k)
			}
		}
	}
}

func TestHostServicePolicy(t *testing.T) {
	svc := func(mutate func(*corev1.ServiceSpec)) *corev1.Service {
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", Annotations: map[string]string{
			"service.beta.kubernetes.io/aws-load-balancer-internal": "false", "external-dns.alpha.kubernetes.io/hostname": "platform.example.com"}},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80, NodePort: 30080}}, Selector: map[string]string{"app": "web"}}}
		mutate(&s.Spec)
		return s
	}
	lb := func(s *corev1.ServiceSpec) {
		s.Type = corev1.ServiceTypeLoadBalancer
		s.LoadBalancerClass = ptr.To("internal")
		s.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		s.LoadBalancerSourceRanges = []string{"0.0.0.0/0"}
	}
	for _, c := range []struct {
		name   string
		policy isolation.Policy
		spec   func(*corev1.ServiceSpec)
		ok     bool
		check  func(h *corev1.Service) string
		told   string
	}{
		{"externalIPs", isolation.Policy{}, func(s *corev1.ServiceSpec) { s.ExternalIPs = []string{"10.96.0.1"} }, true,
			func(h *corev1.Service) string { return nonEmpty(h.Spec.ExternalIPs, "externalIPs") }, "externalIPs 10.96.0.1"},
		{"load balancer by default", isolation.Policy{}, lb, true, func(h *corev1.Service) string {
			if h.Spec.Type != corev1.ServiceTypeClusterIP || h.Spec.LoadBalancerClass != nil || h.Spec.ExternalTrafficPolicy != "" || h.Spec.LoadBalancerSourceRanges != nil {
				return "not ClusterIP: " + h.Spec.String()
			}
			return ""
		}, "type LoadBalancer"},
		{"node port by default", isolation.Policy{}, func(s *corev1.ServiceSpec) { s.Type = corev1.ServiceTypeNodePort }, true, func(h *corev1.Service) string {
			if h.Spec.Type != corev1.ServiceTypeClusterIP || h.Spec.Ports[0].NodePort != 0 {
				return "not ClusterIP: " + h.Spec.String()
			}
			return ""
		}, "type NodePort"},
		{"load balancer allowed, class not", isolation.Policy{Services: isolation.ServicePolicy{AllowLoadBalancer: true, LoadBalancerClasses: []string{"public"}}}, lb, true,
			func(h *corev1.Service) string {
				if h.Spec.Type != corev1.ServiceTypeClusterIP {
					return "not ClusterIP"
				}
				return ""
			}, `loadBalancerClass "internal"`},
		{"load balancer allowed, no node ports", isolation.Policy{Services: isolation.ServicePolicy{AllowLoadBalancer: true, LoadBalancerClasses: []string{"internal"},
			AllowedAnnotations: []string{"service.beta.kubernetes.io/*"}}}, lb, true, func(h *corev1.Service) string {
			if h.Spec.Type != corev1.ServiceTypeLoadBalancer || h.Spec.AllocateLoadBalancerNodePorts == nil || *h.Spec.AllocateLoadBalancerNodePorts || h.Spec.Ports[0].NodePort != 0 {
				return "want a load balancer without node ports: " + h.Spec.String()
			}
			if h.Annotations["service.beta.kubernetes.io/aws-load-balancer-internal"] != "false" {
				return "an allowed annotation was dropped"
			}
			return ""
		}, "external-dns.alpha.kubernetes.io/hostname"},
		{"node port allowed", isolation.Policy{Services: isolation.ServicePolicy{AllowNodePort: true}}, func(s *corev1.ServiceSpec) { s.Type = corev1.ServiceTypeNodePort }, true,
			func(h *corev1.Service) string {
				if h.Spec.Type != corev1.ServiceTypeNodePort {
					return "not NodePort"
				}
				return ""
			}, "service.beta.kubernetes.io/aws-load-balancer-internal"},
		{"external name in the host cluster", isolation.Policy{}, func(s *corev1.ServiceSpec) {
			s.Type, s.ExternalName, s.Selector = corev1.ServiceTypeExternalName, "kubernetes.default.svc.cluster.local", nil
		}, false, nil, "names a service of the host cluster"},
		{"external name outside", isolation.Policy{}, func(s *corev1.ServiceSpec) {
			s.Type, s.ExternalName, s.Selector = corev1.ServiceTypeExternalName, "db.example.com", nil
		}, true, func(h *corev1.Service) string { return "" }, "annotations"},
		{"external name in the host cluster, allowed", isolation.Policy{Services: isolation.ServicePolicy{AllowExternalNameInCluster: true}}, func(s *corev1.ServiceSpec) {
			s.Type, s.ExternalName, s.Selector = corev1.ServiceTypeExternalName, "10.0.0.1", nil
		}, true, func(h *corev1.Service) string { return "" }, "annotations"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, r, ok := hostService(policyContext(c.policy), svc(c.spec))
			if ok != c.ok {
				t.Fatalf("host copy made: %v, want %v (%v)", ok, c.ok, r)
			}
			if c.check != nil {
				if msg := c.check(h); msg != "" {
					t.Error(msg)
				}
			}
			if told := strings.Join(r, "; "); !strings.Contains(told, c.told) {
				t.Errorf("told %q, want it to name %q", told, c.told)
			}
		})
	}
}

func nonEmpty(l []string, what string) string {
	if len(l) > 0 {
		return what + " copied: " + strings.Join(l, ",")
	}
	return ""
}

func TestInHostCluster(t *testing.T) {
	for name, want := range map[string]bool{
		"kubernetes": true, "kubernetes.default": false, "kubernetes.default.svc": true, "kubernetes.default.svc.cluster.local": true,
		"kubernetes.default.svc.cluster.local.": true, "10.0.0.1": true, "fd00::1": true, "db.example.com": false, "cluster.local": true,
	} {
		if got := inHostCluster(name, ""); got != want {
			t.Errorf("inHostCluster(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestRestrictEndpoints(t *testing.T) {
	c := policyContext(isolation.Policy{Endpoints: isolation.EndpointPolicy{AllowedCIDRs: []string{"192.168.10.0/24"}}})
	own := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-x-default-x-t1", Namespace: "team-t", Labels: c.Translator.OwnerLabels("default"),
		Annotations: map[string]string{translate.AnnotationObjectName: "web"}}, Status: corev1.PodStatus{PodIP: "10.244.1.5", PodIPs: []corev1.PodIP{{IP: "10.244.1.5"}}}}
	foreign := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "team-t"}, Status: corev1.PodStatus{PodIPs: []corev1.PodIP{{IP: "10.244.1.6"}}}}
	// The syncer's host pod informer, never started: the pods are put in
	// its store as a list would.
	f := informers.NewSharedInformerFactory(kubernetes.NewForConfigOrDie(&rest.Config{Host: "https://127.0.0.1:1"}), 0)
	c.Addresses = &OwnedAddresses{}
	if err := c.Addresses.watch(c.Translator, f); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*corev1.Pod{own, foreign} {
		if err := podInformer(f).GetIndexer().Add(p); err != nil {
			t.Fatal(err)
		}
	}
	h := &corev1.Endpoints{Subsets: []corev1.EndpointSubset{
		{Addresses: []corev1.EndpointAddress{{IP: "10.244.1.5"}, {IP: "10.0.0.1"}, {IP: "10.244.1.6"}}, NotReadyAddresses: []corev1.EndpointAddress{{IP: "192.168.10.7"}}},
		{Addresses: []corev1.EndpointAddress{{IP: "169.254.169.254"}}},
	}}
	r, ok, err := restrictEndpoints(c, nil, h)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if len(h.Subsets) != 1 || len(h.Subsets[0].Addresses) != 1 || h.Subsets[0].Addresses[0].IP != "10.244.1.5" || h.Subsets[0].NotReadyAddresses[0].IP != "192.168.10.7" {
		t.Errorf("subsets %+v", h.Subsets)
	}
	if told := strings.Join(r, ";"); !strings.Contains(told, "10.0.0.1, 10.244.1.6, 169.254.169.254") {
		t.Errorf("told %q", told)
	}
	slice := &discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeIPv4, Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}}, {Addresses: []string{"10.244.1.5"}}}}
	if _, ok, _ := restrictSlice(c, nil, slice); !ok || len(slice.Endpoints) != 1 || slice.Endpoints[0].Addresses[0] != "10.244.1.5" {
		t.Errorf("slice %+v", slice.Endpoints)
	}
	if _, ok, _ := restrictSlice(c, nil, &discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeFQDN}); ok {
		t.Error("an FQDN slice is copied")
	}
}

func TestHostPodPolicy(t *testing.T) {
	c := policyContext(isolation.Policy{})
	v := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "u1",
		Annotations: map[string]string{"k8s.v1.cni.cncf.io/networks": "macvlan", "cni.projectcalico.org/ipAddrs": `["10.0.0.1"]`, "kubectl.kubernetes.io/restartedAt": "now"}},
		Spec: podSpec(func(s *corev1.PodSpec) {
			s.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
			s.Volumes = []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{
				VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{translate.LabelCopyOf: "other-cluster"}, Annotations: map[string]string{"volume.kubernetes.io/selected-node": "cp-1"}},
					Spec: corev1.PersistentVolumeClaimSpec{VolumeName: "host-pv", Selector: &metav1.LabelSelector{}, StorageClassName: ptr.To("fast"),
						DataSource: &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "data"}},
				}}}}}
		})}
	h, _, r := hostPod(c, v, nil)
	if _, ok := h.Annotations["k8s.v1.cni.cncf.io/networks"]; ok || h.Annotations["kubectl.kubernetes.io/restartedAt"] != "now" {
		t.Errorf("host pod annotations %v", h.Annotations)
	}
	if len(h.Spec.Tolerations) != 0 {
		t.Errorf("tolerations %+v", h.Spec.Tolerations)
	}
	told := strings.Join(r, ";")
	for _, want := range []string{"cni.projectcalico.org/ipAddrs, k8s.v1.cni.cncf.io/networks", "every taint"} {
		if !strings.Contains(told, want) {
			t.Errorf("told %q, want %q", told, want)
		}
	}
	tmpl := h.Spec.Volumes[0].Ephemeral.VolumeClaimTemplate
	if tmpl.Spec.VolumeName != "" || tmpl.Spec.Selector != nil || *tmpl.Spec.StorageClassName != "fast" {
		t.Errorf("claim template spec %+v", tmpl.Spec)
	}
	if ds := tmpl.Spec.DataSource; ds == nil || ds.Name != c.Translator.HostName("default", "data") {
		t.Errorf("claim template data source %+v, want the tenant's own claim's host copy", ds)
	}
	if tmpl.Labels[translate.LabelCopyOf] != "t1" || tmpl.Annotations["volume.kubernetes.io/selected-node"] != "" || tmpl.Annotations[translate.AnnotationObjectName] != "" {
		t.Errorf("claim template metadata %+v", tmpl.ObjectMeta)
	}
}
