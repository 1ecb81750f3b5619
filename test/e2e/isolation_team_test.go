package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/testenv"
	"github.com/sublet-dev/sublet/internal/translate"
)

// team is what a platform admin hands a team: an access key, and a Role
// that lets it manage VirtualClusters in its own host namespace. Nothing
// else: no template's `use`, no other host rights.
type team struct {
	p        *platform
	ns, user string
	// kubeconfig is the CLI's ($KUBECONFIG): create/use vcluster switch it.
	kubeconfig string
}

func newTeam(t *testing.T, p *platform) *team {
	t.Helper()
	hk := host.Kubeconfig
	tm := &team{p: p, ns: createNamespace(t, host.Client, "team-t"), user: "team-" + rand.String(6)}
	kubectl(t, hk, "", "create", "role", "vc-manager", "-n", tm.ns, "--verb=get,list,watch,create,update,patch,delete",
		"--resource=virtualclusters.storage.loft.sh")
	kubectl(t, hk, "", "create", "rolebinding", "vc-manager", "-n", tm.ns, "--role=vc-manager", "--user="+tm.user)
	key := accessKey(t, "e2e-"+tm.user, tm.user, nil)
	dir := t.TempDir()
	t.Setenv("SUBLET_CONFIG", filepath.Join(dir, "cli.json"))
	tm.kubeconfig = filepath.Join(dir, "kubeconfig")
	t.Setenv("KUBECONFIG", tm.kubeconfig)
	sublet(t, "login", p.url, "--access-key", key, "--ca-file", p.caFile)
	return tm
}

// create runs `sublet create vcluster NAME` as the team; it returns the
// output and whether it succeeded.
func (tm *team) create(t *testing.T, name string, args ...string) (string, bool) {
	t.Helper()
	out, code, err := testenv.Run(5*time.Minute, append([]string{"create", "vcluster", name, "--cluster", tm.p.cluster, "--space", tm.ns}, args...)...)
	if err != nil {
		t.Fatalf("sublet create vcluster %s: %v\n%s", name, err, out)
	}
	return out, code == 0
}

// client is a client of the team's current virtual cluster, through the
// platform server, as kubectl uses it.
func (tm *team) client(t *testing.T) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", tm.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return kubernetes.NewForConfigOrDie(cfg)
}

func (tm *team) virtualCluster(t *testing.T, name string) *storagev1.VirtualCluster {
	t.Helper()
	vc := &storagev1.VirtualCluster{}
	out := kubectl(t, host.Kubeconfig, "", "get", "virtualcluster", name, "-n", tm.ns, "-o", "json")
	if err := json.Unmarshal([]byte(out), vc); err != nil {
		t.Fatal(err)
	}
	return vc
}

// TestIsolationTeam: every attack of issue 34 that a team can make with
// what an admin hands it, each refused with what the team can read, and a
// positive control that the allowed form works.
func TestIsolationTeam(t *testing.T) {
	needHost(t)
	ctx := context.Background()
	hk := host.Kubeconfig
	p := startPlatform(t)
	tm := newTeam(t, p)

	// Values that loosen isolation: refused by the agent before anything
	// runs, the condition naming the field.
	out, ok := tm.create(t, "t1", "--set", "isolation.podSecurityStandard=privileged")
	if ok || !strings.Contains(out, "loosens isolation") || !strings.Contains(out, "isolation.podSecurityStandard: privileged is looser than baseline") {
		t.Errorf("create with privileged values: succeeded=%v\n%s", ok, out)
	}
	vc := tm.virtualCluster(t, "t1")
	cond := meta.FindStatusCondition(vc.Status.Conditions, storagev1.ConditionIsolationAllowed)
	if vc.Status.Phase != storagev1.PhaseFailed || cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason != "LoosensIsolation" || vc.Status.Endpoint != "" {
		t.Errorf("t1: phase %s, endpoint %q, condition %+v; want Failed, no runtime, IsolationAllowed=False", vc.Status.Phase, vc.Status.Endpoint, cond)
	}
	nsObj, err := host.Client.CoreV1().Namespaces().Get(ctx, tm.ns, metav1.GetOptions{})
	if err != nil || nsObj.Labels["pod-security.kubernetes.io/enforce"] == "privileged" {
		t.Errorf("host namespace labels %v, %v", nsObj.Labels, err)
	}
	sublet(t, "delete", "vcluster", "t1", "--cluster", p.cluster, "--space", tm.ns)

	// A template that loosens isolation: its `use` is checked at admission.
	tmpl := "e2e-privileged-" + rand.String(5)
	kubectl(t, hk, fmt.Sprintf("apiVersion: storage.loft.sh/v1\nkind: VirtualClusterTemplate\nmetadata: {name: %s}\nspec:\n  template:\n    helmRelease:\n      values: |\n        isolation:\n          podSecurityStandard: privileged\n", tmpl), "apply", "-f", "-")
	t.Cleanup(func() {
		_ = exec.Command("kubectl", "--kubeconfig", hk, "delete", "virtualclustertemplate", tmpl).Run()
	})
	poll(t, 60*time.Second, "the agent labels the template as loosening isolation", func(ctx context.Context) (bool, error) {
		out, err := exec.CommandContext(ctx, "kubectl", "--kubeconfig", hk, "get", "virtualclustertemplate", tmpl, "-o", "jsonpath={.metadata.labels.sublet\\.dev/loosens-isolation}").Output()
		return err == nil && string(out) == "true", nil
	})
	vcWith := func(name, template string) string {
		return fmt.Sprintf("apiVersion: storage.loft.sh/v1\nkind: VirtualCluster\nmetadata: {name: %s, namespace: %s}\nspec:\n  templateRef: {name: %s}\n", name, tm.ns, template)
	}
	// The policy is in force once a dry run as the team is refused.
	poll(t, 60*time.Second, "the admission policy refuses the team's dry run", func(ctx context.Context) (bool, error) {
		cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", hk, "--as", tm.user, "create", "--dry-run=server", "-f", "-")
		cmd.Stdin = strings.NewReader(vcWith("dry", tmpl))
		out, err := cmd.CombinedOutput()
		return err != nil && strings.Contains(string(out), "use"), nil
	})
	out, ok = tm.create(t, "t2", "--template", tmpl)
	if ok || !strings.Contains(out, "loosens isolation") || !strings.Contains(out, "verb use on virtualclustertemplates "+tmpl) {
		t.Errorf("create with the loosening template, without use: succeeded=%v\n%s", ok, out)
	}

	// A cluster under the defaults, for the attacks on what reaches the host.
	if out, ok := tm.create(t, "main"); !ok {
		t.Fatalf("create main: %s", out)
	}
	main := tm.client(t)
	waitDefaultServiceAccount(t, main, "default")
	// Pointing it at the loosening template is refused too.
	cmd := exec.Command("kubectl", "--kubeconfig", hk, "--as", tm.user, "patch", "virtualcluster", "main", "-n", tm.ns, "--type=merge",
		"-p", fmt.Sprintf(`{"spec":{"templateRef":{"name":%q}}}`, tmpl))
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "use") {
		t.Errorf("pointing main at %s: %v\n%s", tmpl, err, out)
	}
	teamAttacksOnHostObjects(t, tm, main)

	// A webhook the team points at the machine: the virtual API server
	// dials it only through the egress guard, which refuses; the listener
	// is never reached.
	target := testenv.Listen(t, "127.0.0.1", nil)
	addr := fmt.Sprintf("127.0.0.1:%d", target.Port())
	kubectl(t, tm.kubeconfig, probeWebhook("team-probe", "{url: \"https://"+addr+"/validate\"}"), "apply", "-f", "-")
	if err := createProbes(t, main, refusal(addr)); err == nil || !strings.Contains(err.Error(), "isolation.egress.allowedCIDRs") {
		t.Errorf("a configmap create under the team's webhook: %v, want the egress guard's refusal", err)
	}
	target.Untouched(t)

	// Positive control: with `use` granted, the template runs privileged
	// pods on the host.
	// kubectl create role refuses a verb discovery does not list: a manifest.
	kubectl(t, hk, fmt.Sprintf(`apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: use-%s}
rules:
- apiGroups: [storage.loft.sh]
  resources: [virtualclustertemplates]
  resourceNames: [%s]
  verbs: [use]
`, tmpl, tmpl), "apply", "-f", "-")
	kubectl(t, hk, "", "create", "rolebinding", "use-"+tmpl, "-n", tm.ns, "--clusterrole=use-"+tmpl, "--user="+tm.user)
	t.Cleanup(func() {
		_ = exec.Command("kubectl", "--kubeconfig", hk, "delete", "clusterrole", "use-"+tmpl).Run()
	})
	if out, ok := tm.create(t, "t2", "--template", tmpl); !ok {
		t.Fatalf("create with the template after use was granted: %s", out)
	}
	priv := tm.client(t)
	waitDefaultServiceAccount(t, priv, "default")
	poll(t, 30*time.Second, "namespace default labelled privileged", func(ctx context.Context) (bool, error) {
		n, err := priv.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		return err == nil && n.Labels["pod-security.kubernetes.io/enforce"] == "privileged", nil
	})
	if _, err := priv.CoreV1().Pods("default").Create(ctx, attackPod("privileged", podAttacks[0].spec), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	hostPodRuns(t, tm.ns, translate.Translator{VCluster: "t2", HostNamespace: tm.ns}.HostName("default", "privileged"))
}

// teamAttacksOnHostObjects: what the team writes inside its cluster and
// the syncer carries to the host, under the default isolation policy.
func teamAttacksOnHostObjects(t *testing.T, tm *team, v kubernetes.Interface) {
	ctx := context.Background()
	tr := translate.Translator{VCluster: "main", HostNamespace: tm.ns}
	hostName := func(name string) string { return tr.HostName("default", name) }

	// A Service with externalIPs and type LoadBalancer: copied as a
	// ClusterIP service without them (CVE-2020-8554).
	_, err := v.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "capture"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ExternalIPs: []string{"10.96.0.1"}, Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Port: 443}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitEvent(t, v, "default", "Service", "capture", "RestrictedByIsolation", "externalIPs 10.96.0.1")
	hs, err := host.Client.CoreV1().Services(tm.ns).Get(ctx, hostName("capture"), metav1.GetOptions{})
	if err != nil || len(hs.Spec.ExternalIPs) > 0 || hs.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("host service: %v %+v; want ClusterIP, no externalIPs", err, hs.Spec)
	}

	// A pod with host-affecting annotations, a toleration of every taint
	// and an ephemeral claim naming a host PV and another team's claim: its
	// host pod has none of them.
	pod := attackPod("annotated", func(s *corev1.PodSpec) {
		s.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
		s.Volumes = []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{
			VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{translate.LabelCopyOf: "another-cluster"}},
				Spec: corev1.PersistentVolumeClaimSpec{VolumeName: "host-pv", AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					DataSource: &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "other-teams-claim"},
					Resources:  corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
			}}}}}
	})
	pod.Labels = map[string]string{"app": "web"}
	pod.Annotations = map[string]string{"k8s.v1.cni.cncf.io/networks": "host-macvlan", "cni.projectcalico.org/ipAddrs": `["10.0.0.1"]`}
	if _, err := v.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, v, "default", "Pod", "annotated", "RestrictedByIsolation", "k8s.v1.cni.cncf.io/networks")
	hp, err := host.Client.CoreV1().Pods(tm.ns).Get(ctx, hostName("annotated"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k := range pod.Annotations {
		if _, ok := hp.Annotations[k]; ok {
			t.Errorf("annotation %s reached the host pod", k)
		}
	}
	for _, tol := range hp.Spec.Tolerations {
		if tol.Key == "" {
			t.Errorf("the host pod tolerates every taint: %+v", hp.Spec.Tolerations)
		}
	}
	claim := hp.Spec.Volumes[0].Ephemeral.VolumeClaimTemplate
	if claim.Spec.VolumeName != "" || claim.Spec.DataSource.Name != hostName("other-teams-claim") || claim.Labels[translate.LabelCopyOf] != "main" {
		t.Errorf("host pod's claim template %+v: want no volumeName, the tenant's own claim as data source, and its own owner label", claim)
	}

	// Selectorless Endpoints naming the host's API server: copied without
	// that address (CVE-2021-25740); the pod's own IP passes.
	if _, err := v.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "deputy"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 6443}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The annotated pod waits for its ephemeral claim, which nothing binds
	// on this host; a plain pod gives the address.
	if _, err := v.CoreV1().Pods("default").Create(ctx, attackPod("db", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var podIP string
	poll(t, 90*time.Second, "the pod's IP", func(ctx context.Context) (bool, error) {
		p, err := v.CoreV1().Pods("default").Get(ctx, "db", metav1.GetOptions{})
		podIP = p.Status.PodIP
		return err == nil && podIP != "", nil
	})
	if _, err := v.CoreV1().Endpoints("default").Create(ctx, &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "deputy"},
		Subsets: []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{{IP: "10.0.0.1"}, {IP: podIP}}, Ports: []corev1.EndpointPort{{Port: 6443}}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, v, "default", "Endpoints", "deputy", "RestrictedByIsolation", "addresses 10.0.0.1")
	he, err := host.Client.CoreV1().Endpoints(tm.ns).Get(ctx, hostName("deputy"), metav1.GetOptions{})
	if err != nil || len(he.Subsets) != 1 || len(he.Subsets[0].Addresses) != 1 || he.Subsets[0].Addresses[0].IP != podIP {
		t.Errorf("host endpoints %v %+v; want only the pod's %s", err, he, podIP)
	}

	// An Ingress for the platform's host name, which another namespace
	// serves, with a server snippet: no host copy; a free host name passes
	// with its cert-manager annotation.
	platformHost := "platform-" + rand.String(5) + ".example.com"
	platformNS := createNamespace(t, host.Client, "platform-ingress")
	if _, err := host.Client.NetworkingV1().Ingresses(platformNS).Create(ctx, ingressFor("platform", platformHost, "/", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	steal := ingressFor("steal", platformHost, "/kubernetes", map[string]string{"nginx.ingress.kubernetes.io/server-snippet": "location / { return 200; }"})
	if _, err := v.NetworkingV1().Ingresses("default").Create(ctx, steal, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, v, "default", "Ingress", "steal", "RestrictedByIsolation", "served for another host namespace")
	if _, err := host.Client.NetworkingV1().Ingresses(tm.ns).Get(ctx, hostName("steal"), metav1.GetOptions{}); err == nil {
		t.Error("the ingress claiming the platform's host name reached the host")
	}
	own := ingressFor("own", "own-"+rand.String(5)+".example.com", "/", map[string]string{"cert-manager.io/cluster-issuer": "letsencrypt"})
	if _, err := v.NetworkingV1().Ingresses("default").Create(ctx, own, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 60*time.Second, "the team's own ingress on the host", func(ctx context.Context) (bool, error) {
		h, err := host.Client.NetworkingV1().Ingresses(tm.ns).Get(ctx, hostName("own"), metav1.GetOptions{})
		return err == nil && h.Annotations["cert-manager.io/cluster-issuer"] == "letsencrypt" && len(h.Spec.Rules) == 1, nil
	})
}

func ingressFor(name, host, path string, annotations map[string]string) *networkingv1.Ingress {
	return &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations}, Spec: networkingv1.IngressSpec{
		Rules: []networkingv1.IngressRule{{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
			Paths: []networkingv1.HTTPIngressPath{{Path: path, PathType: ptr.To(networkingv1.PathTypePrefix), Backend: networkingv1.IngressBackend{
				Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}}},
		}}}},
	}}
}

// hostPodRuns waits until host pod ns/name is Running.
func hostPodRuns(t *testing.T, ns, name string) {
	t.Helper()
	poll(t, 90*time.Second, "host pod "+name+" running", func(ctx context.Context) (bool, error) {
		p, err := host.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning, nil
	})
}
