package syncer

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilcache "k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/sublet-dev/sublet/internal/translate"
)

func TestHostPod(t *testing.T) {
	tr := translate.Translator{VCluster: "demo", HostNamespace: "host-ns"}
	v := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-1", Namespace: "team", UID: "uid-1",
			Labels:      map[string]string{"app": "web"},
			Annotations: map[string]string{"cert-manager.io/issuer": "le", "checksum/config": "abc"},
		},
		Spec: corev1.PodSpec{
			NodeName:           "virtual-node",
			ServiceAccountName: "builder",
			PriorityClassName:  "tenant-high",
			Volumes: []corev1.Volume{
				{Name: "kube-api-access-abcde", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](3607)}},
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
					{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}}},
				}}}},
				{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}},
				{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}},
			},
			Containers: []corev1.Container{{
				Name: "web", Image: "nginx",
				Env: []corev1.EnvVar{{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "password"}}},
					{Name: "MY_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
					{Name: "MY_APP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
					{Name: "MY_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}},
				VolumeMounts: []corev1.VolumeMount{{Name: "kube-api-access-abcde", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}, {Name: "cfg", MountPath: "/etc/cfg"}},
			}},
		},
	}
	c := &Context{Translator: tr, Pods: PodRuntime{APIHost: "10.0.0.5", APIPort: 6443, DNSServer: "10.96.0.10"}}
	services := []*corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Name: "db-main", Namespace: "team"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.3.4", Ports: []corev1.ServicePort{{Name: "pg", Port: 5432, Protocol: corev1.ProtocolTCP}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "elsewhere"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.3.5", Ports: []corev1.ServicePort{{Port: 80}}}},
	}
	h, identity, _ := hostPod(c, v, services)
	env := map[string]corev1.EnvVar{}
	for _, e := range h.Spec.Containers[0].Env {
		env[e.Name] = e
	}
	value := func(name string) string { return env[name].Value }

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
		{"token from identity secret", h.Spec.Volumes[0].Projected.Sources[0].Secret.Name, "web-1-x-team-x-demo-identity"},
		{"token key", h.Spec.Volumes[0].Projected.Sources[0].Secret.Items[0].Key, "token.kube-api-access-abcde.0"},
		{"token path", h.Spec.Volumes[0].Projected.Sources[0].Secret.Items[0].Path, "token"},
		{"root CA configmap", h.Spec.Volumes[0].Projected.Sources[1].ConfigMap.Name, tr.HostName("team", "kube-root-ca.crt")},
		{"namespace file from identity secret", h.Spec.Volumes[0].Projected.Sources[2].Secret.Items[0].Key, "metadata.namespace"},
		{"configmap volume", h.Spec.Volumes[1].ConfigMap.Name, "settings-x-team-x-demo"},
		{"pvc volume", h.Spec.Volumes[2].PersistentVolumeClaim.ClaimName, "data-x-team-x-demo"},
		{"secret env", env["PASSWORD"].ValueFrom.SecretKeyRef.Name, "db-x-team-x-demo"},
		{"namespace env", value("MY_NAMESPACE"), "team"},
		{"label env", value("MY_APP"), "web"},
		{"pod IP env stays a field ref", env["MY_IP"].ValueFrom.FieldRef.FieldPath, "status.podIP"},
		{"KUBERNETES_SERVICE_HOST", value("KUBERNETES_SERVICE_HOST"), "10.0.0.5"},
		{"KUBERNETES_SERVICE_PORT", value("KUBERNETES_SERVICE_PORT"), "6443"},
		{"service link of the virtual namespace", value("DB_MAIN_SERVICE_HOST"), "10.96.3.4"},
		{"service link of another namespace", value("OTHER_SERVICE_HOST"), ""},
		{"DNS policy", string(h.Spec.DNSPolicy), "None"},
		{"DNS server", h.Spec.DNSConfig.Nameservers[0], "10.96.0.10"},
		{"DNS search", h.Spec.DNSConfig.Searches[0], "team.svc.cluster.local"},
		{"host-affecting annotation dropped", h.Annotations["cert-manager.io/issuer"], ""},
		{"plain annotation kept", h.Annotations["checksum/config"], "abc"},
		{"owner uid", h.Annotations[translate.AnnotationObjectUID], "uid-1"},
		{"owner label", h.Labels[translate.LabelCopyOf], "demo"},
		{"translated label", h.Labels[translate.LabelKey("app")], "web"},
		{"untranslated label", h.Labels["app"], ""},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if !identity {
		t.Error("pod with a token volume needs no identity secret")
	}
	if len(h.Spec.Volumes[0].Projected.Sources) != 3 || h.Spec.Volumes[0].Projected.Sources[0].ServiceAccountToken != nil {
		t.Errorf("token volume would mount a host token: %+v", h.Spec.Volumes[0].Projected.Sources)
	}
	if h.Spec.EnableServiceLinks == nil || *h.Spec.EnableServiceLinks {
		t.Error("host pod would get the host namespace's service links (other tenants' services)")
	}
	if env["PASSWORD"].Name == "" || h.Spec.Containers[0].Env[0].Name == "PASSWORD" {
		t.Error("service env vars must come before the container's own, so its own win")
	}
	if h.Spec.AutomountServiceAccountToken == nil || *h.Spec.AutomountServiceAccountToken {
		t.Error("host pod would mount the host's service-account token")
	}
	if v.Spec.Volumes[1].ConfigMap.Name != "settings" || v.Spec.NodeName != "virtual-node" || v.Spec.Volumes[0].Projected.Sources[0].ServiceAccountToken == nil {
		t.Error("hostPod modified the virtual pod")
	}
}

func TestHostPodWithoutIdentity(t *testing.T) {
	c := &Context{Translator: translate.Translator{VCluster: "demo", HostNamespace: "h"}}
	v := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "n"}, Spec: corev1.PodSpec{
		DNSPolicy:  corev1.DNSDefault,
		Containers: []corev1.Container{{Name: "c", Image: "busybox"}},
		Volumes: []corev1.Volume{{Name: "info", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
			Items: []corev1.DownwardAPIVolumeFile{{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}}}}}}},
	}}
	h, identity, _ := hostPod(c, v, nil)
	if identity {
		t.Error("a pod without tokens or virtual fields needs an identity secret")
	}
	if h.Spec.Volumes[0].DownwardAPI == nil || h.Spec.DNSPolicy != corev1.DNSDefault || h.Spec.DNSConfig != nil {
		t.Errorf("volumes or DNS changed: %+v %s %+v", h.Spec.Volumes, h.Spec.DNSPolicy, h.Spec.DNSConfig)
	}
	v.Spec.Volumes[0].DownwardAPI.Items = append(v.Spec.Volumes[0].DownwardAPI.Items, corev1.DownwardAPIVolumeFile{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}})
	h, identity, _ = hostPod(c, v, nil)
	if !identity || h.Spec.Volumes[0].Projected == nil || len(h.Spec.Volumes[0].Projected.Sources) != 2 {
		t.Errorf("downward API volume with metadata.name not served from the identity secret: %+v", h.Spec.Volumes[0])
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

// countBindings counts the binding requests sent through a client.
type countBindings struct {
	rt http.RoundTripper
	n  *atomic.Int32
}

func (c countBindings) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/binding") {
		c.n.Add(1)
	}
	return c.rt.RoundTrip(r)
}

// TestBindOnceFromAStaleView binds a virtual pod from the host pod's node,
// then gets the same unbound view of the pod again, as when a host update
// overtakes the bound pod in the virtual informer: the syncer must not
// send a second binding, which could only conflict.
func TestBindOnceFromAStaleView(t *testing.T) {
	if testing.Short() {
		t.Skip("needs an API server; skipped with -short")
	}
	ctx := context.Background()
	// The shared host's API server stands in for the virtual one: a
	// binding is the same request on either.
	ns, err := host.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "bind-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Client.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := host.Client.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		t.Fatal("no default service account")
	}
	// No scheduler takes it: only the syncer binds it.
	v, err := host.Client.CoreV1().Pods(ns.Name).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: podSpec(func(s *corev1.PodSpec) { s.SchedulerName = "sublet-test-nobody" })}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-x-" + ns.Name, Namespace: ns.Name,
		Annotations: map[string]string{translate.AnnotationObjectUID: string(v.UID)}}, Spec: corev1.PodSpec{NodeName: "node-a"}}

	var bindings atomic.Int32
	cfg := rest.CopyConfig(host.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countBindings{rt, &bindings} })
	c := &Context{Translator: translate.Translator{VCluster: "bind", HostNamespace: ns.Name},
		Virtual: kubernetes.NewForConfigOrDie(cfg), Host: host.Client, Log: klog.Background()}
	empty := func() cache.Indexer { return cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}) }
	s := podSyncer{missing: &missingAtStart{virtual: empty(), host: empty()}, bound: utilcache.NewExpiring()}

	if err := s.Both(ctx, c, v, h); err != nil {
		t.Fatal(err)
	}
	got, err := host.Client.CoreV1().Pods(ns.Name).Get(ctx, v.Name, metav1.GetOptions{})
	if err != nil || got.Spec.NodeName != "node-a" || bindings.Load() != 1 {
		t.Fatalf("after the first sync: node %q, %d bindings, %v; want node-a, 1", got.Spec.NodeName, bindings.Load(), err)
	}
	if err := s.Both(ctx, c, v, h); err != nil {
		t.Fatal(err)
	}
	if n := bindings.Load(); n != 1 {
		t.Errorf("the stale view was bound again: %d bindings, want 1", n)
	}
}
