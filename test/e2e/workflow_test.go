package e2e

import (
	"context"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"

	"github.com/sublet-dev/sublet/internal/syncer/kinds"
	"github.com/sublet-dev/sublet/internal/testenv"
)

// namespaceCredentials returns a kubeconfig for a service account that may
// only manage the kinds the syncer writes in hostNS, plus read what it
// reads cluster-wide (nodes, the host names other namespaces' ingresses
// serve): what `vcluster run` needs on a shared host.
func namespaceCredentials(t *testing.T, hostNS string) string {
	t.Helper()
	ctx := context.Background()
	cs := host.Client
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "syncer"}}
	if _, err := cs.CoreV1().ServiceAccounts(hostNS).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The rights the kinds table derives, as the agent and the chart grant them.
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "syncer"}, Rules: kinds.HostRules()}
	if _, err := cs.RbacV1().Roles(hostNS).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: "syncer", Namespace: hostNS}}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "syncer"}, Subjects: subject,
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "syncer"}}
	if _, err := cs.RbacV1().RoleBindings(hostNS).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	nodesRole := "sublet-e2e-cluster-reader-" + hostNS
	_, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: nodesRole},
		Rules: kinds.HostClusterRules()}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "sublet-e2e-nodes-" + hostNS}, Subjects: subject,
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: nodesRole}}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), crb.Name, metav1.DeleteOptions{})
		_ = cs.RbacV1().ClusterRoles().Delete(context.Background(), nodesRole, metav1.DeleteOptions{})
	})
	tr, err := cs.CoreV1().ServiceAccounts(hostNS).CreateToken(ctx, "syncer", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.LoadFromFile(host.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for name := range cfg.AuthInfos {
		cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	}
	path := filepath.Join(t.TempDir(), "syncer.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestVClusterSeedWorkflow drives the workflow of the issue with kubectl in
// a virtual cluster whose syncer holds namespace-only host credentials:
// deployment, expose, an ingress with a cert-manager annotation, a service
// without selector, cluster-scoped objects that must stay virtual.
func TestVClusterSeedWorkflow(t *testing.T) {
	needHost(t)
	ctx := context.Background()
	hostNS := createNamespace(t, host.Client, "vc-seed")
	creds := namespaceCredentials(t, hostNS)
	// The admin lets endpoints name the range of the legacy database.
	vc, err := testenv.Start(ctx, t.TempDir(), "vcluster", "run", "--name", "shop",
		"--host-kubeconfig", creds, "--host-namespace", hostNS, `--isolation-policy={"endpoints":{"allowedCIDRs":["192.0.2.0/24"]}}`)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vc.Kill)
	kc := vc.Kubeconfig
	waitDefaultServiceAccount(t, vc.Client, "default")

	kubectl(t, kc, "", "create", "deployment", "web", "--image=nginx", "--replicas=3")
	kubectl(t, kc, "", "expose", "deployment", "web", "--port=80")
	kubectl(t, kc, seedWorkflowObjects, "apply", "-f", "-")

	// On the host: 3 pods, the service and the ingress under translated names.
	var hostPods []corev1.Pod
	poll(t, 90*time.Second, "3 Running host pods", func(ctx context.Context) (bool, error) {
		list, err := host.Client.CoreV1().Pods(hostNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		hostPods = list.Items
		running := 0
		for _, p := range list.Items {
			if p.Status.Phase == corev1.PodRunning && strings.HasSuffix(p.Name, "-x-default-x-shop") {
				running++
			}
		}
		return running == 3 && len(list.Items) == 3, nil
	})
	var hostSvc *corev1.Service
	poll(t, 30*time.Second, "host service with the virtual ClusterIP", func(ctx context.Context) (bool, error) {
		hostSvc, err = host.Client.CoreV1().Services(hostNS).Get(ctx, "web-x-default-x-shop", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		vsvc, err := vc.Client.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
		return err == nil && vsvc.Spec.ClusterIP == hostSvc.Spec.ClusterIP, nil
	})
	checkHostIngress(t, hostNS, kc)

	// The service without a selector: its endpoints are the tenant's, in
	// the range the admin allows.
	poll(t, 30*time.Second, "host endpoints of the selectorless service", func(ctx context.Context) (bool, error) {
		ep, err := host.Client.CoreV1().Endpoints(hostNS).Get(ctx, "legacy-db-x-default-x-shop", metav1.GetOptions{})
		return err == nil && len(ep.Subsets) == 1 && ep.Subsets[0].Addresses[0].IP == "192.0.2.10", nil
	})

	// Back in the virtual cluster: pods Running with host IPs and nodes.
	out := kubectl(t, kc, "", "get", "pods", "-o", "jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.status.podIP} {.spec.nodeName}{\"\\n\"}{end}")
	byName := map[string]corev1.Pod{}
	for _, p := range hostPods {
		byName[strings.TrimSuffix(p.Name, "-x-default-x-shop")] = p
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("virtual pods:\n%s", out)
	}
	for _, l := range lines {
		f := strings.Fields(l)
		hp, ok := byName[f[0]]
		if !ok || len(f) != 4 || f[1] != "Running" || f[2] != hp.Status.PodIP || f[3] != hp.Spec.NodeName {
			t.Errorf("virtual pod %q does not match its host pod (ip %s node %s)", l, hp.Status.PodIP, hp.Spec.NodeName)
		}
	}
	poll(t, 30*time.Second, "kubectl get nodes lists the used host nodes", func(ctx context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", kc, "get", "nodes", "-o", "name").Output()
		if err != nil {
			return false, nil
		}
		for _, p := range hostPods {
			if !strings.Contains(string(out), "node/"+p.Spec.NodeName) {
				return false, nil
			}
		}
		return true, nil
	})
	poll(t, 30*time.Second, "scheduling events", func(ctx context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", kc, "get", "events", "--field-selector", "reason=Scheduled", "-o", "name").Output()
		return err == nil && len(strings.Fields(string(out))) >= 3, nil
	})

	// Each host pod reaches the virtual API as its virtual service account.
	hp := hostPods[0]
	checkPodIdentity(t, vc, hp)

	// kubectl logs and exec in the virtual cluster reach the host pod.
	vp := strings.TrimSuffix(hp.Name, "-x-default-x-shop")
	if out := kubectl(t, kc, "", "logs", vp); strings.TrimSpace(out) == "" {
		t.Errorf("kubectl logs %s printed nothing", vp)
	}
	if out := kubectl(t, kc, "", "exec", vp, "--", "echo", "hello-from-virtual-exec"); !strings.Contains(out, "hello-from-virtual-exec") {
		t.Errorf("kubectl exec in the virtual cluster: %q", out)
	}

	// CRDs, ClusterRoles and namespaces stay virtual.
	if _, err := host.Client.RbacV1().ClusterRoles().Get(ctx, "shop-reader", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("virtual ClusterRole on the host (err=%v)", err)
	}
	if _, err := host.Client.CoreV1().Namespaces().Get(ctx, "shop-staging", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("virtual namespace on the host (err=%v)", err)
	}
	if out, err := exec.Command("kubectl", "--kubeconfig", host.Kubeconfig, "get", "crd", "shelves.shop.example.com").CombinedOutput(); err == nil {
		t.Errorf("virtual CRD on the host:\n%s", out)
	}

	// The syncer's metrics are on the virtual API server's /metrics.
	metrics := kubectl(t, kc, "", "get", "--raw", "/metrics")
	for _, want := range []string{`sublet_syncer_sync_duration_seconds_count{syncer="pods"}`, `sublet_syncer_queue_depth{syncer="ingresses"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// A pod whose configmap does not exist waits, and says why.
	kubectl(t, kc, `apiVersion: v1
kind: Pod
metadata: {name: needs-config}
spec:
  containers: [{name: c, image: busybox, envFrom: [{configMapRef: {name: missing-settings}}]}]
`, "apply", "-f", "-")
	poll(t, 30*time.Second, "FailedMount event naming the missing configmap", func(ctx context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", kc, "get", "events", "--field-selector", "involvedObject.name=needs-config,reason=FailedMount", "-o", "jsonpath={.items[*].message}").Output()
		return err == nil && strings.Contains(string(out), `configmap "missing-settings" not found`), nil
	})
	if _, err := host.Client.CoreV1().Pods(hostNS).Get(ctx, "needs-config-x-default-x-shop", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod started on the host without its configmap (err=%v)", err)
	}
}

// seedWorkflowObjects is what the tenant of TestVClusterSeedWorkflow
// applies: an ingress with a cert-manager annotation, a service without
// selector and its endpoints, and cluster-scoped objects that must stay
// virtual.
const seedWorkflowObjects = `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  annotations:
    cert-manager.io/cluster-issuer: letsencrypt
spec:
  ingressClassName: nginx
  tls:
  - hosts: [web.example.com]
    secretName: web-tls
  rules:
  - host: web.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service: {name: web, port: {number: 80}}
---
apiVersion: v1
kind: Service
metadata: {name: legacy-db}
spec:
  ports: [{port: 5432}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: legacy-db}
subsets:
- addresses: [{ip: 192.0.2.10}]
  ports: [{port: 5432}]
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: shelves.shop.example.com}
spec:
  group: shop.example.com
  scope: Namespaced
  names: {plural: shelves, singular: shelf, kind: Shelf}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: shop-reader}
rules: [{apiGroups: [""], resources: [pods], verbs: [get]}]
---
apiVersion: v1
kind: Namespace
metadata: {name: shop-staging}
`

// checkHostIngress: the ingress "web" of TestVClusterSeedWorkflow is on the
// host in hostNS under its translated name, with its cert-manager
// annotation, the host service as backend and the TLS secret cert-manager
// fills on the host; the address the host's ingress controller publishes
// reaches the tenant.
func checkHostIngress(t *testing.T, hostNS, kc string) {
	t.Helper()
	ctx := context.Background()
	var err error
	var hostIng *networkingv1.Ingress
	poll(t, 30*time.Second, "host ingress", func(ctx context.Context) (bool, error) {
		hostIng, err = host.Client.NetworkingV1().Ingresses(hostNS).Get(ctx, "web-x-default-x-shop", metav1.GetOptions{})
		return err == nil, nil
	})
	if hostIng.Annotations["cert-manager.io/cluster-issuer"] != "letsencrypt" {
		t.Errorf("cert-manager annotation not kept: %v", hostIng.Annotations)
	}
	if b := hostIng.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Name; b != "web-x-default-x-shop" {
		t.Errorf("ingress backend %s, want the host service", b)
	}
	if s := hostIng.Spec.TLS[0].SecretName; s != "web-tls-x-default-x-shop" {
		t.Errorf("TLS secret %s, want the translated name cert-manager fills on the host", s)
	}
	// The host's ingress controller publishes an address; the tenant sees it.
	hostIng.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "203.0.113.7"}}
	if _, err := host.Client.NetworkingV1().Ingresses(hostNS).UpdateStatus(ctx, hostIng, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 30*time.Second, "ingress address in the virtual cluster", func(ctx context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", kc, "get", "ingress", "web", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}").Output()
		return err == nil && string(out) == "203.0.113.7", nil
	})
}

// checkPodIdentity: host pod hp mounts its virtual service account's token
// from its identity secret, and that token authenticates to the virtual API
// server as the virtual service account; its environment points at the
// virtual API server.
func checkPodIdentity(t *testing.T, vc *testenv.Process, hp corev1.Pod) {
	t.Helper()
	ctx := context.Background()
	var secretName, key string
	for _, vol := range hp.Spec.Volumes {
		if vol.Projected == nil {
			continue
		}
		for _, src := range vol.Projected.Sources {
			if src.ServiceAccountToken != nil {
				t.Fatalf("host pod %s mounts a host service-account token", hp.Name)
			}
			if src.Secret != nil && strings.HasSuffix(src.Secret.Name, "-identity") && len(src.Secret.Items) > 0 && src.Secret.Items[0].Path == "token" {
				secretName, key = src.Secret.Name, src.Secret.Items[0].Key
			}
		}
	}
	if secretName == "" {
		t.Fatalf("host pod %s has no token from an identity secret: %+v", hp.Name, hp.Spec.Volumes)
	}
	var token string
	poll(t, 30*time.Second, "identity secret", func(ctx context.Context) (bool, error) {
		s, err := host.Client.CoreV1().Secrets(hp.Namespace).Get(ctx, secretName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		token = string(s.Data[key])
		return token != "", nil
	})
	cfg := *vc.Config
	cfg.BearerToken, cfg.CertData, cfg.KeyData, cfg.CertFile, cfg.KeyFile = token, nil, nil, "", ""
	cs, err := kubernetes.NewForConfig(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	who, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token of host pod %s does not authenticate to the virtual API server: %v", hp.Name, err)
	}
	if u := who.Status.UserInfo.Username; u != "system:serviceaccount:default:default" {
		t.Errorf("host pod token authenticates as %s", u)
	}
	env := map[string]string{}
	for _, e := range hp.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	u, err := url.Parse(vc.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	if env["KUBERNETES_SERVICE_HOST"] == "" || env["KUBERNETES_SERVICE_PORT"] != u.Port() {
		t.Errorf("host pod env does not point at the virtual API server (%s): %v", vc.Config.Host, env)
	}
}
