package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestIsolationPodSecurity: a virtual cluster runs at the baseline Pod
// Security level by default. Its namespaces carry the level, so the
// virtual API server refuses attacks at create time; a tenant who relabels
// a namespace gets them past the virtual side, but the syncer refuses them
// on the way to the host, with an event and a condition naming the control.
// Pods naming a host Secret or a host disk directly are refused the same way.
func TestIsolationPodSecurity(t *testing.T) {
	needHost(t)
	ctx := context.Background()
	hostNS := createNamespace(t, host.Client, "vc-iso")
	vc := startVCluster(t, "iso", hostNS)
	v := vc.Client
	waitDefaultServiceAccount(t, v, "default")
	poll(t, 30*time.Second, "namespace default labelled with the cluster's level", func(ctx context.Context) (bool, error) {
		ns, err := v.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		return err == nil && ns.Labels["pod-security.kubernetes.io/enforce"] == "baseline", nil
	})

	// Told at apply time in a namespace as the cluster labelled it.
	for _, a := range podAttacks {
		_, err := v.CoreV1().Pods("default").Create(ctx, attackPod(a.name, a.spec), metav1.CreateOptions{})
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), a.control) {
			t.Errorf("attack %s in a labelled namespace: %v, want Forbidden naming %q", a.name, err, a.control)
		}
	}

	// The tenant relabels its namespace privileged: the virtual API server
	// lets the pods in, the host never sees them.
	ns := createNamespace(t, v, "relabelled")
	poll(t, 30*time.Second, "namespace labelled by the cluster", func(ctx context.Context) (bool, error) {
		n, err := v.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil || n.Labels["pod-security.kubernetes.io/enforce"] == "" {
			return false, nil
		}
		n.Labels["pod-security.kubernetes.io/enforce"] = "privileged"
		_, err = v.CoreV1().Namespaces().Update(ctx, n, metav1.UpdateOptions{})
		return err == nil, nil
	})
	for _, a := range podAttacks {
		if _, err := v.CoreV1().Pods(ns).Create(ctx, attackPod(a.name, a.spec), metav1.CreateOptions{}); err != nil {
			t.Fatalf("attack %s in a relabelled namespace: the virtual API server refused it (%v); the test needs it admitted", a.name, err)
		}
	}
	// Pods that name host objects or host disks directly: admitted by the
	// virtual API server (they are valid pods), refused by the syncer.
	hostRefs := []struct{ name, want string }{{"csi-host-secret", "csi.nodePublishSecretRef"}, {"host-disk", "disk of the host's infrastructure"}}
	_, err := v.CoreV1().Pods(ns).Create(ctx, attackPod(hostRefs[0].name, func(s *corev1.PodSpec) {
		s.Volumes = []corev1.Volume{{Name: "creds", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
			Driver: "secrets-store.csi.k8s.io", NodePublishSecretRef: &corev1.LocalObjectReference{Name: "platform-credentials"}}}}}
	}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.CoreV1().Pods(ns).Create(ctx, attackPod(hostRefs[1].name, func(s *corev1.PodSpec) {
		s.Volumes = []corev1.Volume{{Name: "disk", VolumeSource: corev1.VolumeSource{AWSElasticBlockStore: &corev1.AWSElasticBlockStoreVolumeSource{VolumeID: "vol-0123456789abcdef0"}}}}
	}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A harmless pod beside them runs: the syncer works.
	if _, err := v.CoreV1().Pods(ns).Create(ctx, attackPod("harmless", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodRunning(t, vc, ns, "harmless")
	for _, a := range podAttacks {
		waitEvent(t, v, ns, "Pod", a.name, "ForbiddenByPodSecurity", a.control)
		pod, err := v.CoreV1().Pods(ns).Get(ctx, a.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		refused := false
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == "ForbiddenByPodSecurity" && strings.Contains(c.Message, a.control) {
				refused = true
			}
		}
		if !refused || pod.Status.Phase != corev1.PodPending {
			t.Errorf("attack %s: phase %s, conditions %+v; want Pending with PodScheduled=False naming %q", a.name, pod.Status.Phase, pod.Status.Conditions, a.control)
		}
	}
	for _, r := range hostRefs {
		waitEvent(t, v, ns, "Pod", r.name, "ForbiddenHostReference", r.want)
	}
	list, err := host.Client.CoreV1().Pods(hostNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range list.Items {
		if !strings.HasPrefix(p.Name, "harmless-") {
			t.Errorf("host pod %s exists: an attack reached the host", p.Name)
		}
	}
	if len(list.Items) != 1 {
		t.Errorf("%d host pods, want only the harmless one%s", len(list.Items), describePods(list.Items))
	}
}

// TestIsolationPrivilegedByValues: an admin who wants privileged pods says
// so explicitly; then they reach the host.
func TestIsolationPrivilegedByValues(t *testing.T) {
	needHost(t)
	ctx := context.Background()
	hostNS := createNamespace(t, host.Client, "vc-priv")
	vc := startVCluster(t, "priv", hostNS, "--pod-security-standard", "privileged")
	waitDefaultServiceAccount(t, vc.Client, "default")
	poll(t, 30*time.Second, "namespace default labelled privileged", func(ctx context.Context) (bool, error) {
		ns, err := vc.Client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		return err == nil && ns.Labels["pod-security.kubernetes.io/enforce"] == "privileged", nil
	})
	if _, err := vc.Client.CoreV1().Pods("default").Create(ctx, attackPod("admin-privileged", podAttacks[0].spec), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodRunning(t, vc, "default", "admin-privileged")
}

// TestIsolationHostQuotaIsTold: a host pod the host's ResourceQuota refuses
// shows on the virtual pod as an event in the host's words, as "exceeded
// quota" shows in a real cluster.
func TestIsolationHostQuotaIsTold(t *testing.T) {
	needHost(t)
	ctx := context.Background()
	hostNS := createNamespace(t, host.Client, "vc-quota")
	_, err := host.Client.CoreV1().ResourceQuotas(hostNS).Create(ctx, &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "tenant"},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("1")}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vc := startVCluster(t, "quota", hostNS)
	waitDefaultServiceAccount(t, vc.Client, "default")
	for _, name := range []string{"first", "second"} {
		if _, err := vc.Client.CoreV1().Pods("default").Create(ctx, attackPod(name, nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if name == "first" {
			waitPodRunning(t, vc, "default", name)
		}
	}
	waitEvent(t, vc.Client, "default", "Pod", "second", "FailedCreate", "exceeded quota")
}

// TestIsolationGuardRailsByAgent: isolation.enabled makes the agent keep a
// ResourceQuota, a LimitRange and a NetworkPolicy for the virtual cluster
// in its host namespace (defaults overlaid with the values' own), put back
// when deleted, and removed when isolation is turned off.
func TestIsolationGuardRailsByAgent(t *testing.T) {
	needHost(t)
	ctx := context.Background()
	_, _, ns := agentWithNamespace(t, "vc-rails")
	hk := host.Kubeconfig
	apply := func(isolation string) {
		kubectl(t, hk, fmt.Sprintf(`apiVersion: storage.loft.sh/v1
kind: VirtualCluster
metadata: {name: railed, namespace: %s}
spec:
  helmRelease:
    values: |
      isolation:
%s`, ns, indent(isolation, "        ")), "apply", "-f", "-")
	}
	apply("enabled: true\nresourceQuota:\n  quota: {count/pods: 3, requests.cpu: 0.5}\n")
	kubectl(t, hk, "", "wait", "--for=jsonpath={.status.phase}=Ready", "virtualcluster/railed", "-n", ns, "--timeout=120s")
	rq, err := host.Client.CoreV1().ResourceQuotas(ns).Get(ctx, "sublet-railed", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[corev1.ResourceName]string{"count/pods": "3", "requests.cpu": "500m", "limits.memory": "40Gi"} {
		if q := rq.Spec.Hard[k]; q.String() != want {
			t.Errorf("quota %s = %s, want %s", k, q.String(), want)
		}
	}
	lr, err := host.Client.CoreV1().LimitRanges(ns).Get(ctx, "sublet-railed", metav1.GetOptions{})
	if err != nil || len(lr.Spec.Limits) != 1 || lr.Spec.Limits[0].Default.Cpu().String() != "1" {
		t.Errorf("limit range: %v %+v", err, lr)
	}
	if err := host.Client.NetworkingV1().NetworkPolicies(ns).Delete(ctx, "sublet-railed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 60*time.Second, "the agent puts the deleted NetworkPolicy back", func(ctx context.Context) (bool, error) {
		np, err := host.Client.NetworkingV1().NetworkPolicies(ns).Get(ctx, "sublet-railed", metav1.GetOptions{})
		return err == nil && np.Spec.PodSelector.MatchLabels["sublet.dev/managed-by"] == "railed", nil
	})
	apply("enabled: false\n")
	poll(t, 60*time.Second, "guard rails removed with isolation off", func(ctx context.Context) (bool, error) {
		_, e1 := host.Client.CoreV1().ResourceQuotas(ns).Get(ctx, "sublet-railed", metav1.GetOptions{})
		_, e2 := host.Client.CoreV1().LimitRanges(ns).Get(ctx, "sublet-railed", metav1.GetOptions{})
		_, e3 := host.Client.NetworkingV1().NetworkPolicies(ns).Get(ctx, "sublet-railed", metav1.GetOptions{})
		return apierrors.IsNotFound(e1) && apierrors.IsNotFound(e2) && apierrors.IsNotFound(e3), nil
	})
}

// TestIsolationKubeletProxyRefusesTenantCertificates: a tenant, admin of
// its virtual cluster, gets a client certificate signed by the cluster's
// CA through a CertificateSigningRequest; the kubelet proxy (which reaches
// the host's pods) refuses it and answers the virtual API server alone.
func TestIsolationKubeletProxyRefusesTenantCertificates(t *testing.T) {
	needHost(t)
	ctx := context.Background()
	hostNS := createNamespace(t, host.Client, "vc-csr")
	vc := startVCluster(t, "csr", hostNS)
	v := vc.Client
	waitDefaultServiceAccount(t, v, "default")
	if _, err := v.CoreV1().Pods("default").Create(ctx, attackPod("target", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := waitPodRunning(t, vc, "default", "target")
	var node *corev1.Node
	poll(t, 60*time.Second, "the pod's virtual node", func(ctx context.Context) (bool, error) {
		n, err := v.CoreV1().Nodes().Get(ctx, pod.Spec.NodeName, metav1.GetOptions{})
		node = n
		return err == nil && n.Status.DaemonEndpoints.KubeletEndpoint.Port != 0, nil
	})
	addr := ""
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			addr = net.JoinHostPort(a.Address, fmt.Sprint(node.Status.DaemonEndpoints.KubeletEndpoint.Port))
		}
	}
	// The virtual API server reaches the kubelet proxy: logs work.
	if _, err := v.CoreV1().Pods("default").GetLogs("target", &corev1.PodLogOptions{}).DoRaw(ctx); err != nil {
		t.Fatalf("kubectl logs through the kubelet proxy: %v", err)
	}

	// The tenant's own certificate, signed by the cluster's CA.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "tenant"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "tenant-client"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}),
			SignerName: certificatesv1.KubeAPIServerClientSignerName,
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth, certificatesv1.UsageDigitalSignature},
		},
	}
	if csr, err = v.CertificatesV1().CertificateSigningRequests().Create(ctx, csr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "Tenant", Message: "approved by the tenant"})
	if _, err := v.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var certPEM []byte
	poll(t, 60*time.Second, "the CSR signed", func(ctx context.Context) (bool, error) {
		c, err := v.CertificatesV1().CertificateSigningRequests().Get(ctx, csr.Name, metav1.GetOptions{})
		certPEM = c.Status.Certificate
		return err == nil && len(certPEM) > 0, nil
	})
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true}}} //nolint:gosec // the attacker's side
	resp, err := client.Get("https://" + addr + "/containerLogs/" + hostNS + "/target/c")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("the kubelet proxy at %s answered a tenant's CSR-signed certificate: HTTP %d", addr, resp.StatusCode)
	}
	if !strings.Contains(err.Error(), "certificate") && !strings.Contains(err.Error(), "tls") {
		t.Errorf("refused, but not in the TLS handshake: %v", err)
	}
}
