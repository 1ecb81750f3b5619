package agent

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/sublet-dev/sublet/internal/syncer/kinds"
	"github.com/sublet-dev/sublet/internal/testenv"
	"github.com/sublet-dev/sublet/internal/translate"
)

// hostObjects creates, in namespace, one host object of each kind the
// table deletes with a cluster, as virtual cluster vc's copies, and
// returns a lister per kind of vc's objects.
func hostObjects(ctx context.Context, t *testing.T, cs kubernetes.Interface, namespace, vc string) map[string]func() (int, error) {
	t.Helper()
	tr := translate.Translator{VCluster: vc, HostNamespace: namespace}
	meta := func() metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: tr.HostName("default", "x"), Labels: tr.OwnerLabels("default"),
			Annotations: translate.OwnerAnnotations(&metav1.ObjectMeta{Name: "x", Namespace: "default"})}
	}
	opts := metav1.ListOptions{LabelSelector: translate.LabelCopyOf + "=" + vc}
	count := func(n int, err error) (int, error) { return n, err }
	objs := map[string]struct {
		create func() error
		list   func() (int, error)
	}{
		kinds.Pods: {func() error {
			_, err := cs.CoreV1().Pods(namespace).Create(ctx, &corev1.Pod{ObjectMeta: meta(),
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}}}, metav1.CreateOptions{})
			return err
		}, func() (int, error) {
			l, err := cs.CoreV1().Pods(namespace).List(ctx, opts)
			if err != nil {
				return 0, err
			}
			n := 0
			for _, p := range l.Items {
				if p.DeletionTimestamp == nil {
					n++
				}
			}
			return n, nil
		}},
		kinds.Services: {func() error {
			_, err := cs.CoreV1().Services(namespace).Create(ctx, &corev1.Service{ObjectMeta: meta(),
				Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{})
			return err
		}, func() (int, error) {
			l, err := cs.CoreV1().Services(namespace).List(ctx, opts)
			return count(len(l.Items), err)
		}},
		kinds.ConfigMaps: {func() error {
			_, err := cs.CoreV1().ConfigMaps(namespace).Create(ctx, &corev1.ConfigMap{ObjectMeta: meta()}, metav1.CreateOptions{})
			return err
		}, func() (int, error) {
			l, err := cs.CoreV1().ConfigMaps(namespace).List(ctx, opts)
			return count(len(l.Items), err)
		}},
		kinds.Secrets: {func() error {
			_, err := cs.CoreV1().Secrets(namespace).Create(ctx, &corev1.Secret{ObjectMeta: meta()}, metav1.CreateOptions{})
			return err
		}, func() (int, error) {
			l, err := cs.CoreV1().Secrets(namespace).List(ctx, opts)
			return count(len(l.Items), err)
		}},
		kinds.PersistentVolumeClaims: {func() error {
			_, err := cs.CoreV1().PersistentVolumeClaims(namespace).Create(ctx, &corev1.PersistentVolumeClaim{ObjectMeta: meta(),
				Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}},
				metav1.CreateOptions{})
			return err
		}, func() (int, error) {
			l, err := cs.CoreV1().PersistentVolumeClaims(namespace).List(ctx, opts)
			if err != nil {
				return 0, err
			}
			n := 0
			for _, c := range l.Items {
				if c.DeletionTimestamp == nil {
					n++
				}
			}
			return n, nil
		}},
		kinds.Ingresses: {func() error {
			_, err := cs.NetworkingV1().Ingresses(namespace).Create(ctx, &networkingv1.Ingress{ObjectMeta: meta(),
				Spec: networkingv1.IngressSpec{DefaultBackend: &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
					Name: "x", Port: networkingv1.ServiceBackendPort{Number: 80}}}}}, metav1.CreateOptions{})
			return err
		}, func() (int, error) {
			l, err := cs.NetworkingV1().Ingresses(namespace).List(ctx, opts)
			return count(len(l.Items), err)
		}},
		kinds.Endpoints: {func() error {
			_, err := cs.CoreV1().Endpoints(namespace).Create(ctx, &corev1.Endpoints{ObjectMeta: meta()}, metav1.CreateOptions{})
			return err
		}, func() (int, error) {
			l, err := cs.CoreV1().Endpoints(namespace).List(ctx, opts)
			return count(len(l.Items), err)
		}},
		kinds.EndpointSlices: {func() error {
			_, err := cs.DiscoveryV1().EndpointSlices(namespace).Create(ctx, &discoveryv1.EndpointSlice{ObjectMeta: meta(),
				AddressType: discoveryv1.AddressTypeIPv4}, metav1.CreateOptions{})
			return err
		}, func() (int, error) {
			l, err := cs.DiscoveryV1().EndpointSlices(namespace).List(ctx, opts)
			return count(len(l.Items), err)
		}},
		kinds.PodDisruptionBudgets: {func() error {
			_, err := cs.PolicyV1().PodDisruptionBudgets(namespace).Create(ctx, &policyv1.PodDisruptionBudget{ObjectMeta: meta(),
				Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(1)), Selector: &metav1.LabelSelector{}}},
				metav1.CreateOptions{})
			return err
		}, func() (int, error) {
			l, err := cs.PolicyV1().PodDisruptionBudgets(namespace).List(ctx, opts)
			return count(len(l.Items), err)
		}},
		kinds.NetworkPolicies: {func() error {
			_, err := cs.NetworkingV1().NetworkPolicies(namespace).Create(ctx, &networkingv1.NetworkPolicy{ObjectMeta: meta()}, metav1.CreateOptions{})
			return err
		}, func() (int, error) {
			l, err := cs.NetworkingV1().NetworkPolicies(namespace).List(ctx, opts)
			return count(len(l.Items), err)
		}},
	}
	lists := map[string]func() (int, error){}
	for _, k := range kinds.All() {
		// Kinds served by CRDs: this host has none of them, which the
		// cleanup must bear (test/e2e's route test deletes real ones).
		if !k.DeleteWithCluster || k.CRD != "" {
			continue
		}
		o, ok := objs[k.Name]
		if !ok {
			t.Fatalf("kind %s is deleted with a cluster; this test needs an object of it", k.Name)
		}
		if err := o.create(); err != nil {
			t.Fatalf("create host %s of %s: %v", k.Name, vc, err)
		}
		lists[k.Name] = o.list
	}
	return lists
}

// TestDeleteHostObjects: deleting a virtual cluster's host objects removes
// one of every kind the table says, services (no deletecollection)
// included, and of each custom row to the host (at its CRD's storage
// version; a row whose CRD the host lacks is no error), and nothing of
// another virtual cluster in the same namespace.
func TestDeleteHostObjects(t *testing.T) {
	if testing.Short() {
		t.Skip("needs an API server; skipped with -short")
	}
	ctx := context.Background()
	host, err := testenv.StartHost(ctx, t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer host.Kill()
	ns, err := host.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gone := hostObjects(ctx, t, host.Client, ns.Name, "gone")
	kept := hostObjects(ctx, t, host.Client, ns.Name, "kept")
	widgets := customObjectsOf(ctx, t, host.Config, ns.Name)
	gone["widgets"], kept["widgets"] = widgets("gone"), widgets("kept")
	rows := []kinds.Custom{
		{CRD: widgetsCRD},
		{CRD: "gadgets.example.com"}, // the host has no such CRD
		{CRD: "clusterwidgets.example.com", FromHost: true},
	}

	if err := deleteHostObjects(ctx, host.Client, ns.Name, "gone", rows); err != nil {
		t.Fatal(err)
	}
	for kind, list := range gone {
		if n, err := list(); err != nil || n != 0 {
			t.Errorf("%s of the deleted virtual cluster: %d left (%v)", kind, n, err)
		}
	}
	for kind, list := range kept {
		if n, err := list(); err != nil || n != 1 {
			t.Errorf("%s of the other virtual cluster: %d, want 1 (%v)", kind, n, err)
		}
	}
}

// widgetsCRD is a namespaced custom kind whose CRD lists first a version
// that is neither served nor stored: the cleanup must take the storage
// version.
const widgetsCRD = "widgets.example.com"

// customObjectsOf installs widgetsCRD on the host and returns a function
// that creates, in namespace, a Widget as virtual cluster vc's copy and
// returns a lister of vc's Widgets.
func customObjectsOf(ctx context.Context, t *testing.T, cfg *rest.Config, namespace string) func(vc string) func() (int, error) {
	t.Helper()
	anything := &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
		Type: "object", XPreserveUnknownFields: ptr.To(true)}}
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: widgetsCRD},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "example.com", Scope: apiextensionsv1.NamespaceScoped,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "widgets", Singular: "widget", Kind: "Widget", ListKind: "WidgetList"},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{
				{Name: "v1alpha1", Served: false, Storage: false, Schema: anything},
				{Name: "v1", Served: true, Storage: true, Schema: anything},
			},
		},
	}
	if _, err := apiextensionsclient.NewForConfigOrDie(cfg).ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	res := dynamic.NewForConfigOrDie(cfg).Resource(schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}).Namespace(namespace)
	return func(vc string) func() (int, error) {
		tr := translate.Translator{VCluster: vc, HostNamespace: namespace}
		w := &unstructured.Unstructured{Object: map[string]interface{}{"apiVersion": "example.com/v1", "kind": "Widget", "spec": map[string]interface{}{"size": 1}}}
		w.SetName(tr.HostName("default", "x"))
		w.SetLabels(tr.OwnerLabels("default"))
		// The CRD serves its kind once it is established.
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := res.Create(ctx, w, metav1.CreateOptions{})
			return err == nil, nil
		})
		if err != nil {
			t.Fatalf("create a Widget of %s: %v", vc, err)
		}
		return func() (int, error) {
			l, err := res.List(ctx, metav1.ListOptions{LabelSelector: translate.LabelCopyOf + "=" + vc})
			if err != nil {
				return 0, err
			}
			return len(l.Items), nil
		}
	}
}
