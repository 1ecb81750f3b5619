package syncer

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/sublet-dev/sublet/internal/isolation"
	"github.com/sublet-dev/sublet/internal/testenv"
	"github.com/sublet-dev/sublet/internal/translate"
)

// The state tests give every syncer an initial virtual state and an initial
// host state, run the syncer against real API servers (the shared host and
// a virtual-mode control plane, both sublet processes), and check the
// state both sides end in. Each case lives in a virtual namespace of its
// own, so one syncer run serves them all, as one virtual cluster with many
// namespaces.

var host *testenv.Process

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(testenv.MainWithHost(m, 2, &host))
}

// stateEnv is what a case's setup and check see.
type stateEnv struct {
	virtual, host kubernetes.Interface
	t             translate.Translator
	ns            string // the case's virtual namespace
}

// hostName is the host name of the case's virtual object name.
func (e stateEnv) hostName(name string) string { return e.t.HostName(e.ns, name) }

// owned returns metadata of a host object as this virtual cluster's copy
// of virtual object name (uid "stale": its virtual object is gone).
func (e stateEnv) owned(name string) metav1.ObjectMeta {
	m := metav1.ObjectMeta{Name: e.hostName(name), Labels: e.t.OwnerLabels(e.ns), Annotations: map[string]string{}}
	for k, v := range translate.OwnerAnnotations(&metav1.ObjectMeta{Name: name, Namespace: e.ns, UID: "stale"}) {
		m.Annotations[k] = v
	}
	return m
}

type stateCase struct {
	name string
	// virtual and host create the initial states (host objects in the
	// host namespace), before the syncer starts.
	virtual, host func(ctx context.Context, e stateEnv) error
	// check returns "" once the expected state is reached, else what
	// differs.
	check func(ctx context.Context, e stateEnv) string
}

func podSpec(mutate ...func(*corev1.PodSpec)) corev1.PodSpec {
	s := corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}}
	for _, m := range mutate {
		m(&s)
	}
	return s
}

// exists reports whether a Get found its object: "" if as wanted.
func exists(what string, err error, want bool) string {
	switch {
	case err == nil && !want:
		return what + " exists"
	case apierrors.IsNotFound(err) && want:
		return what + " missing"
	case err != nil && !apierrors.IsNotFound(err):
		return what + ": " + err.Error()
	}
	return ""
}

func stateCases() []stateCase {
	c := []stateCase{
		{
			name: "pod-created-and-status-back",
			virtual: func(ctx context.Context, e stateEnv) error {
				_, err := e.virtual.CoreV1().Pods(e.ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"app": "web"}}, Spec: podSpec()}, metav1.CreateOptions{})
				return err
			},
			check: func(ctx context.Context, e stateEnv) string {
				h, err := e.host.CoreV1().Pods(e.t.HostNamespace).Get(ctx, e.hostName("web"), metav1.GetOptions{})
				if msg := exists("host pod", err, true); msg != "" {
					return msg
				}
				v, err := e.virtual.CoreV1().Pods(e.ns).Get(ctx, "web", metav1.GetOptions{})
				if err != nil {
					return err.Error()
				}
				if h.Labels[translate.LabelKey("app")] != "web" || h.Annotations[translate.AnnotationObjectUID] != string(v.UID) {
					return fmt.Sprintf("host pod labels %v annotations %v", h.Labels, h.Annotations)
				}
				if v.Status.Phase != corev1.PodRunning || v.Status.PodIP != h.Status.PodIP || v.Spec.NodeName != h.Spec.NodeName {
					return fmt.Sprintf("virtual pod %s ip %q node %q; host %s ip %q node %q", v.Status.Phase, v.Status.PodIP, v.Spec.NodeName, h.Status.Phase, h.Status.PodIP, h.Spec.NodeName)
				}
				// nodes: a virtual node for the host node it runs on.
				if _, err := e.virtual.CoreV1().Nodes().Get(ctx, h.Spec.NodeName, metav1.GetOptions{}); err != nil {
					return "virtual node " + h.Spec.NodeName + ": " + err.Error()
				}
				// events: the host scheduler's event, retold in the virtual cluster.
				evs, err := e.virtual.CoreV1().Events(e.ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=web,reason=Scheduled"})
				if err != nil || len(evs.Items) == 0 {
					return fmt.Sprintf("no Scheduled event in the virtual cluster (%v)", err)
				}
				return ""
			},
		},
		{
			name: "orphaned-host-pod-deleted",
			host: func(ctx context.Context, e stateEnv) error {
				_, err := e.host.CoreV1().Pods(e.t.HostNamespace).Create(ctx, &corev1.Pod{ObjectMeta: e.owned("gone"), Spec: podSpec()}, metav1.CreateOptions{})
				return err
			},
			check: func(ctx context.Context, e stateEnv) string {
				_, err := e.host.CoreV1().Pods(e.t.HostNamespace).Get(ctx, e.hostName("gone"), metav1.GetOptions{})
				return exists("orphaned host pod", err, false)
			},
		},
		{
			name: "foreign-host-pod-left-alone",
			host: func(ctx context.Context, e stateEnv) error {
				p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: e.hostName("taken"), Labels: map[string]string{"owner": "host-admin"}}, Spec: podSpec()}
				_, err := e.host.CoreV1().Pods(e.t.HostNamespace).Create(ctx, p, metav1.CreateOptions{})
				return err
			},
			virtual: func(ctx context.Context, e stateEnv) error {
				_, err := e.virtual.CoreV1().Pods(e.ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "taken"}, Spec: podSpec()}, metav1.CreateOptions{})
				return err
			},
			check: func(ctx context.Context, e stateEnv) string {
				h, err := e.host.CoreV1().Pods(e.t.HostNamespace).Get(ctx, e.hostName("taken"), metav1.GetOptions{})
				if err != nil || h.Labels["owner"] != "host-admin" || e.t.Owns(h) {
					return fmt.Sprintf("foreign host pod changed or gone: %v %v", err, h.Labels)
				}
				evs, err := e.virtual.CoreV1().Events(e.ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=taken,reason=HostNameConflict"})
				if err != nil || len(evs.Items) == 0 {
					return fmt.Sprintf("no HostNameConflict event on the virtual pod (%v)", err)
				}
				return ""
			},
		},
		{
			name: "service-same-cluster-ip",
			virtual: func(ctx context.Context, e stateEnv) error {
				s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{
					Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80}}}}
				_, err := e.virtual.CoreV1().Services(e.ns).Create(ctx, s, metav1.CreateOptions{})
				return err
			},
			host: func(ctx context.Context, e stateEnv) error {
				s := &corev1.Service{ObjectMeta: e.owned("stale"), Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
				_, err := e.host.CoreV1().Services(e.t.HostNamespace).Create(ctx, s, metav1.CreateOptions{})
				return err
			},
			check: func(ctx context.Context, e stateEnv) string {
				h, err := e.host.CoreV1().Services(e.t.HostNamespace).Get(ctx, e.hostName("web"), metav1.GetOptions{})
				if msg := exists("host service", err, true); msg != "" {
					return msg
				}
				v, err := e.virtual.CoreV1().Services(e.ns).Get(ctx, "web", metav1.GetOptions{})
				if err != nil || v.Spec.ClusterIP != h.Spec.ClusterIP {
					return fmt.Sprintf("ClusterIP virtual %v host %s (%v)", v, h.Spec.ClusterIP, err)
				}
				if h.Spec.Selector[translate.LabelKey("app")] != "web" || h.Spec.Selector[translate.LabelVirtualNS] != e.ns {
					return fmt.Sprintf("host selector %v", h.Spec.Selector)
				}
				_, err = e.host.CoreV1().Services(e.t.HostNamespace).Get(ctx, e.hostName("stale"), metav1.GetOptions{})
				return exists("stale host service", err, false)
			},
		},
		{
			name: "configmaps-copied-while-used",
			virtual: func(ctx context.Context, e stateEnv) error {
				for _, n := range []string{"used", "unused"} {
					if _, err := e.virtual.CoreV1().ConfigMaps(e.ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: n}, Data: map[string]string{"k": n}}, metav1.CreateOptions{}); err != nil {
						return err
					}
				}
				p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "user"}, Spec: podSpec(func(s *corev1.PodSpec) {
					s.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "used"}}}}
				})}
				_, err := e.virtual.CoreV1().Pods(e.ns).Create(ctx, p, metav1.CreateOptions{})
				return err
			},
			host: func(ctx context.Context, e stateEnv) error {
				// A copy of "unused" left from an earlier pod.
				_, err := e.host.CoreV1().ConfigMaps(e.t.HostNamespace).Create(ctx, &corev1.ConfigMap{ObjectMeta: e.owned("unused"), Data: map[string]string{"k": "old"}}, metav1.CreateOptions{})
				return err
			},
			check: func(ctx context.Context, e stateEnv) string {
				h, err := e.host.CoreV1().ConfigMaps(e.t.HostNamespace).Get(ctx, e.hostName("used"), metav1.GetOptions{})
				if msg := exists("copy of the used configmap", err, true); msg != "" {
					return msg
				}
				if h.Data["k"] != "used" {
					return fmt.Sprintf("copy data %v", h.Data)
				}
				_, err = e.host.CoreV1().ConfigMaps(e.t.HostNamespace).Get(ctx, e.hostName("unused"), metav1.GetOptions{})
				return exists("copy of the unused configmap", err, false)
			},
		},
		{
			name: "tls-secret-of-ingress-copied",
			virtual: func(ctx context.Context, e stateEnv) error {
				s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "tls"}, Type: corev1.SecretTypeTLS,
					Data: map[string][]byte{"tls.crt": []byte("crt"), "tls.key": []byte("key")}}
				if _, err := e.virtual.CoreV1().Secrets(e.ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
					return err
				}
				_, err := e.virtual.NetworkingV1().Ingresses(e.ns).Create(ctx, testIngress(), metav1.CreateOptions{})
				return err
			},
			check: func(ctx context.Context, e stateEnv) string {
				h, err := e.host.CoreV1().Secrets(e.t.HostNamespace).Get(ctx, e.hostName("tls"), metav1.GetOptions{})
				if msg := exists("host copy of the TLS secret", err, true); msg != "" {
					return msg
				}
				if string(h.Data["tls.key"]) != "key" || h.Type != corev1.SecretTypeTLS {
					return fmt.Sprintf("TLS secret copy %s %v", h.Type, h.Data)
				}
				return ""
			},
		},
		{
			name: "ingress-and-status-back",
			virtual: func(ctx context.Context, e stateEnv) error {
				_, err := e.virtual.NetworkingV1().Ingresses(e.ns).Create(ctx, testIngress(), metav1.CreateOptions{})
				return err
			},
			check: func(ctx context.Context, e stateEnv) string {
				h, err := e.host.NetworkingV1().Ingresses(e.t.HostNamespace).Get(ctx, e.hostName("web"), metav1.GetOptions{})
				if msg := exists("host ingress", err, true); msg != "" {
					return msg
				}
				if h.Annotations["cert-manager.io/cluster-issuer"] != "le" || h.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Name != e.hostName("web") {
					return fmt.Sprintf("host ingress %v %+v", h.Annotations, h.Spec)
				}
				if len(h.Status.LoadBalancer.Ingress) == 0 {
					// The host's ingress controller publishes an address.
					h.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "203.0.113.9"}}
					if _, err := e.host.NetworkingV1().Ingresses(e.t.HostNamespace).UpdateStatus(ctx, h, metav1.UpdateOptions{}); err != nil {
						return err.Error()
					}
				}
				v, err := e.virtual.NetworkingV1().Ingresses(e.ns).Get(ctx, "web", metav1.GetOptions{})
				if err != nil || len(v.Status.LoadBalancer.Ingress) == 0 || v.Status.LoadBalancer.Ingress[0].IP != "203.0.113.9" {
					return fmt.Sprintf("virtual ingress status not copied back (%v)", err)
				}
				return ""
			},
		},
		{
			name: "claim-and-status-back",
			virtual: func(ctx context.Context, e stateEnv) error {
				c := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data"}, Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
				}}
				_, err := e.virtual.CoreV1().PersistentVolumeClaims(e.ns).Create(ctx, c, metav1.CreateOptions{})
				return err
			},
			check: func(ctx context.Context, e stateEnv) string {
				h, err := e.host.CoreV1().PersistentVolumeClaims(e.t.HostNamespace).Get(ctx, e.hostName("data"), metav1.GetOptions{})
				if msg := exists("host claim", err, true); msg != "" {
					return msg
				}
				if h.Status.Phase != corev1.ClaimBound {
					// The host's volume binder binds it.
					h.Status.Phase = corev1.ClaimBound
					if _, err := e.host.CoreV1().PersistentVolumeClaims(e.t.HostNamespace).UpdateStatus(ctx, h, metav1.UpdateOptions{}); err != nil {
						return err.Error()
					}
				}
				v, err := e.virtual.CoreV1().PersistentVolumeClaims(e.ns).Get(ctx, "data", metav1.GetOptions{})
				if err != nil || v.Status.Phase != corev1.ClaimBound {
					return fmt.Sprintf("virtual claim not Bound (%v)", err)
				}
				return ""
			},
		},
		{
			name: "endpoints-of-selectorless-services",
			virtual: func(ctx context.Context, e stateEnv) error {
				for _, s := range []*corev1.Service{
					{ObjectMeta: metav1.ObjectMeta{Name: "external"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 5432}}}},
					{ObjectMeta: metav1.ObjectMeta{Name: "sliced"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}},
					{ObjectMeta: metav1.ObjectMeta{Name: "selected"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "x"}, Ports: []corev1.ServicePort{{Port: 80}}}},
				} {
					if _, err := e.virtual.CoreV1().Services(e.ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
						return err
					}
				}
				ep := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "external"}, Subsets: []corev1.EndpointSubset{{
					Addresses: []corev1.EndpointAddress{{IP: "192.0.2.20"}}, Ports: []corev1.EndpointPort{{Port: 5432}}}}}
				if _, err := e.virtual.CoreV1().Endpoints(e.ns).Create(ctx, ep, metav1.CreateOptions{}); err != nil {
					return err
				}
				es := &discoveryv1.EndpointSlice{
					ObjectMeta:  metav1.ObjectMeta{Name: "sliced-1", Labels: map[string]string{discoveryv1.LabelServiceName: "sliced"}},
					AddressType: discoveryv1.AddressTypeIPv4,
					Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"192.0.2.21"}}},
					Ports:       []discoveryv1.EndpointPort{{Port: ptr.To[int32](80)}},
				}
				_, err := e.virtual.DiscoveryV1().EndpointSlices(e.ns).Create(ctx, es, metav1.CreateOptions{})
				return err
			},
			check: func(ctx context.Context, e stateEnv) string {
				ep, err := e.host.CoreV1().Endpoints(e.t.HostNamespace).Get(ctx, e.hostName("external"), metav1.GetOptions{})
				if msg := exists("host endpoints", err, true); msg != "" {
					return msg
				}
				if len(ep.Subsets) != 1 || len(ep.Subsets[0].Addresses) != 1 || ep.Subsets[0].Addresses[0].IP != "192.0.2.20" || !e.t.Owns(ep) {
					return fmt.Sprintf("host endpoints %+v", ep)
				}
				es, err := e.host.DiscoveryV1().EndpointSlices(e.t.HostNamespace).Get(ctx, e.hostName("sliced-1"), metav1.GetOptions{})
				if msg := exists("host endpointslice", err, true); msg != "" {
					return msg
				}
				if es.Labels[discoveryv1.LabelServiceName] != e.hostName("sliced") || len(es.Endpoints) != 1 || es.Endpoints[0].Addresses[0] != "192.0.2.21" {
					return fmt.Sprintf("host slice %v %+v", es.Labels, es.Endpoints)
				}
				// The selected service's endpoints are the host controller's.
				sel, err := e.host.CoreV1().Endpoints(e.t.HostNamespace).Get(ctx, e.hostName("selected"), metav1.GetOptions{})
				if err == nil && e.t.Owns(sel) {
					return "endpoints of a service with a selector were copied from the virtual cluster"
				}
				return ""
			},
		},
		{
			name: "pdb-covers-this-clusters-pods",
			virtual: func(ctx context.Context, e stateEnv) error {
				pdb := &policyv1.PodDisruptionBudget{
					ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"team": "a"}},
					Spec: policyv1.PodDisruptionBudgetSpec{
						MinAvailable: ptr.To(intstr.FromInt32(2)),
						Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"},
							MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"front"}}}},
					},
				}
				_, err := e.virtual.PolicyV1().PodDisruptionBudgets(e.ns).Create(ctx, pdb, metav1.CreateOptions{})
				return err
			},
			host: func(ctx context.Context, e stateEnv) error {
				// A budget whose virtual object is gone.
				pdb := &policyv1.PodDisruptionBudget{ObjectMeta: e.owned("gone"), Spec: policyv1.PodDisruptionBudgetSpec{
					MaxUnavailable: ptr.To(intstr.FromInt32(1)), Selector: &metav1.LabelSelector{}}}
				_, err := e.host.PolicyV1().PodDisruptionBudgets(e.t.HostNamespace).Create(ctx, pdb, metav1.CreateOptions{})
				return err
			},
			check: func(ctx context.Context, e stateEnv) string {
				_, err := e.host.PolicyV1().PodDisruptionBudgets(e.t.HostNamespace).Get(ctx, e.hostName("gone"), metav1.GetOptions{})
				if msg := exists("orphaned host budget", err, false); msg != "" {
					return msg
				}
				h, err := e.host.PolicyV1().PodDisruptionBudgets(e.t.HostNamespace).Get(ctx, e.hostName("web"), metav1.GetOptions{})
				if msg := exists("host budget", err, true); msg != "" {
					return msg
				}
				if !e.t.Owns(h) || h.Labels[translate.LabelKey("team")] != "a" || h.Spec.MinAvailable == nil {
					return fmt.Sprintf("host budget %v %+v", h.Labels, h.Spec)
				}
				// Exactly the host copies of this virtual namespace's
				// matching pods.
				want := e.t.HostLabelSelector(e.ns, &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}})
				sel := h.Spec.Selector
				if sel == nil || !apiequality.Semantic.DeepEqual(sel.MatchLabels, want.MatchLabels) ||
					len(sel.MatchExpressions) != 1 || sel.MatchExpressions[0].Key != translate.LabelKey("tier") {
					return fmt.Sprintf("host selector %+v, want labels %v and key tier translated", sel, want.MatchLabels)
				}
				// Then a change of the virtual budget reaches the host.
				if h.Spec.MinAvailable.IntValue() == 3 {
					return ""
				}
				v, err := e.virtual.PolicyV1().PodDisruptionBudgets(e.ns).Get(ctx, "web", metav1.GetOptions{})
				if err != nil {
					return err.Error()
				}
				if v.Spec.MinAvailable.IntValue() != 3 {
					v.Spec.MinAvailable = ptr.To(intstr.FromInt32(3))
					if _, err := e.virtual.PolicyV1().PodDisruptionBudgets(e.ns).Update(ctx, v, metav1.UpdateOptions{}); err != nil {
						return "update the virtual budget: " + err.Error()
					}
				}
				return fmt.Sprintf("host budget asks for %s pods, the virtual one for 3", h.Spec.MinAvailable.String())
			},
		},
	}
	return append(append(c, isolationStateCases()...), resumedPodCase())
}

func testIngress() *networkingv1.Ingress {
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Annotations: map[string]string{"cert-manager.io/cluster-issuer": "le"}},
		Spec: networkingv1.IngressSpec{
			TLS: []networkingv1.IngressTLS{{Hosts: []string{"web.example.com"}, SecretName: "tls"}},
			Rules: []networkingv1.IngressRule{{Host: "web.example.com", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
				Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: ptr.To(networkingv1.PathTypePrefix), Backend: networkingv1.IngressBackend{
					Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}}},
			}}}},
		},
	}
}

func TestSyncerStates(t *testing.T) {
	if testing.Short() {
		t.Skip("needs API servers; skipped with -short")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	vcp, err := testenv.StartControlPlane(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer vcp.Kill()

	hostNS, err := host.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "state-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Client.CoreV1().Namespaces().Delete(context.Background(), hostNS.Name, metav1.DeleteOptions{})
	tr := translate.Translator{VCluster: "state", HostNamespace: hostNS.Name}

	// Clients without the default 5/s rate limit, for the syncer and for
	// the checks that poll.
	fast := func(cfg *rest.Config) kubernetes.Interface {
		c := rest.CopyConfig(cfg)
		c.QPS, c.Burst = 500, 1000
		return kubernetes.NewForConfigOrDie(c)
	}
	cases := stateCases()
	envs := make([]stateEnv, len(cases))
	for i, c := range cases {
		e := stateEnv{virtual: fast(vcp.Config), host: fast(host.Config), t: tr, ns: c.name}
		envs[i] = e
		if _, err := vcp.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range cases {
		e := envs[i]
		if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := vcp.Client.CoreV1().ServiceAccounts(e.ns).Get(ctx, "default", metav1.GetOptions{})
			return err == nil, nil
		}); err != nil {
			t.Fatalf("%s: no default service account", c.name)
		}
		for _, setup := range []func(context.Context, stateEnv) error{c.host, c.virtual} {
			if setup != nil {
				if err := setup(ctx, e); err != nil {
					t.Fatalf("%s: initial state: %v", c.name, err)
				}
			}
		}
	}

	u, err := url.Parse(vcp.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	// The default isolation policy, but for a documentation range endpoints
	// may name (an external database's).
	sctx := &Context{Translator: tr, Virtual: fast(vcp.Config), Host: fast(host.Config), Log: klog.Background(),
		VirtualDynamic: dynamic.NewForConfigOrDie(vcp.Config), HostDynamic: dynamic.NewForConfigOrDie(host.Config),
		Pods:   PodRuntime{APIHost: u.Hostname(), APIPort: int32(port)},
		Policy: isolation.Policy{Endpoints: isolation.EndpointPolicy{AllowedCIDRs: []string{"192.0.2.0/24"}}}}
	// The defaults, and the kinds that are off by default.
	selected, err := Selection([]string{"poddisruptionbudgets"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, sctx, selected, NewMetrics(nil)) }()

	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var last string
			err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
				msg := c.check(ctx, envs[i])
				if ctx.Err() == nil {
					last = msg // not an artefact of the deadline
				}
				return msg == "", nil
			})
			if err != nil {
				t.Errorf("state not reached: %s", strings.TrimSpace(last))
			}
		})
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("syncer: %v", err)
	}
}
