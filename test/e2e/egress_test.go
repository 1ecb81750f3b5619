package e2e

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"

	"github.com/sublet-dev/sublet/internal/pki"
	"github.com/sublet-dev/sublet/internal/testenv"
)

// The egress tests aim the virtual API server at loopback listeners only:
// refused, nothing may connect; allowed by an admin, the listener answers.

// TestEgressGuardRefusesTenantTargets: what a tenant points its virtual API
// server at (a Node, a webhook URL, a service behind a webhook or an
// aggregated API) is dialed only through the egress guard, which refuses
// loopback and everything that is not the cluster's own; logs of the
// cluster's own pods still flow through the kubelet proxy. Each case has
// a listener of its own, which nothing may reach.
func TestEgressGuardRefusesTenantTargets(t *testing.T) {
	needHost(t)
	ctx := context.Background()
	hostNS := createNamespace(t, host.Client, "vc-egress")
	vc := startVCluster(t, "egress", hostNS)
	v := vc.Client
	waitDefaultServiceAccount(t, v, "default")

	// The positive control: kubectl logs of a pod of the cluster's own.
	if _, err := v.CoreV1().Pods("default").Create(ctx, attackPod("own", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodRunning(t, vc, "default", "own")
	kubectl(t, vc.Kubeconfig, "", "logs", "own")

	t.Run("node", func(t *testing.T) {
		target := testenv.Listen(t, "127.0.0.1", nil)
		addr := fmt.Sprintf("127.0.0.1:%d", target.Port())
		// A Node of the tenant's making, its kubelet on the listener.
		node, err := v.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "evil"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
		node.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(target.Port())
		if _, err := v.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		// Node proxying to a loopback address the API server refuses
		// itself, before it dials.
		out := kubectlFails(t, vc.Kubeconfig, "get", "--raw", "/api/v1/nodes/evil/proxy/x")
		if !strings.Contains(out, "address not allowed") && !strings.Contains(out, refusal(addr)) {
			t.Errorf("node proxy to the tenant's node: %s", out)
		}
		t.Logf("node proxy shows: %s", strings.TrimSpace(out))
		// A pod bound to the tenant's node: its logs would carry the API
		// server's kubelet client certificate to the listener.
		bound := attackPod("bound", func(s *corev1.PodSpec) { s.NodeName = "evil" })
		if _, err := v.CoreV1().Pods("default").Create(ctx, bound, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		out = kubectlFails(t, vc.Kubeconfig, "logs", "bound")
		if !strings.Contains(out, refusal(addr)+"127.0.0.1 is a loopback address") || !strings.Contains(out, "isolation.egress.allowedCIDRs") {
			t.Errorf("kubectl logs of a pod on the tenant's node: %s\nwant the egress guard's refusal of %s", out, addr)
		}
		t.Logf("kubectl logs shows: %s", strings.TrimSpace(out))
		target.Untouched(t)
	})

	t.Run("webhook-url", func(t *testing.T) {
		target := testenv.Listen(t, "127.0.0.1", nil)
		addr := fmt.Sprintf("127.0.0.1:%d", target.Port())
		kubectl(t, vc.Kubeconfig, probeWebhook("by-url", fmt.Sprintf("{url: 'https://%s/validate'}", addr)), "apply", "-f", "-")
		t.Cleanup(func() { kubectl(t, vc.Kubeconfig, "", "delete", "validatingwebhookconfiguration", "by-url") })
		err := createProbes(t, vc.Client, refusal(addr))
		t.Logf("a configmap create with a webhook at %s: %v", addr, err)
		target.Untouched(t)
	})

	// A service the tenant points at localhost, for a webhook and an
	// aggregated API.
	loopbackService := func(t *testing.T, name string, port int) {
		kubectl(t, vc.Kubeconfig, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %s, namespace: default}
spec: {type: ExternalName, externalName: localhost, ports: [{port: %d}]}
`, name, port), "apply", "-f", "-")
	}

	t.Run("webhook-service", func(t *testing.T) {
		target := testenv.Listen(t, "127.0.0.1", nil)
		loopbackService(t, "loopback-webhook", target.Port())
		kubectl(t, vc.Kubeconfig, probeWebhook("by-service", fmt.Sprintf("{service: {namespace: default, name: loopback-webhook, port: %d}}", target.Port())), "apply", "-f", "-")
		t.Cleanup(func() { kubectl(t, vc.Kubeconfig, "", "delete", "validatingwebhookconfiguration", "by-service") })
		err := createProbes(t, vc.Client, refusal(fmt.Sprintf("localhost:%d", target.Port())))
		t.Logf("a configmap create with a webhook behind service default/loopback-webhook: %v", err)
		target.Untouched(t)
	})

	t.Run("apiservice", func(t *testing.T) {
		target := testenv.Listen(t, "127.0.0.1", nil)
		loopbackService(t, "loopback-api", target.Port())
		kubectl(t, vc.Kubeconfig, fmt.Sprintf(`apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1.egress.example.com}
spec:
  group: egress.example.com
  version: v1
  service: {namespace: default, name: loopback-api, port: %d}
  insecureSkipTLSVerify: true
  groupPriorityMinimum: 1000
  versionPriority: 15
`, target.Port()), "apply", "-f", "-")
		// Unavailable, saying why.
		agg := aggregator.NewForConfigOrDie(vc.Config)
		var cond apiregistrationv1.APIServiceCondition
		poll(t, 60*time.Second, "APIService v1.egress.example.com unavailable for the guard's reason", func(ctx context.Context) (bool, error) {
			s, err := agg.ApiregistrationV1().APIServices().Get(ctx, "v1.egress.example.com", metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			for _, c := range s.Status.Conditions {
				if c.Type == apiregistrationv1.Available {
					cond = c
				}
			}
			return cond.Status == apiregistrationv1.ConditionFalse && strings.Contains(cond.Message, refusal(fmt.Sprintf("localhost:%d", target.Port()))), nil
		})
		t.Logf("APIService v1.egress.example.com: %s", cond.Message)
		target.Untouched(t)
	})
}

// TestEgressAllowedCIDRsReachWebhook: an admin's --egress-allowed-cidrs
// opens what the guard refuses by default: the same webhook URL on
// loopback is called, and its answers count.
func TestEgressAllowedCIDRsReachWebhook(t *testing.T) {
	needHost(t)
	hostNS := createNamespace(t, host.Client, "vc-egress-open")
	vc := startVCluster(t, "egress-open", hostNS, "--egress-allowed-cidrs=127.0.0.1/32")
	waitDefaultServiceAccount(t, vc.Client, "default")

	issuer, err := pki.Dir{Path: t.TempDir()}.Issuer()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := issuer.Serving("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
			return
		}
		mu.Lock()
		seen = append(seen, review.Request.Name)
		mu.Unlock()
		resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: !strings.HasPrefix(review.Request.Name, "probe-")}
		if !resp.Allowed {
			resp.Result = &metav1.Status{Message: "denied by the test webhook"}
		}
		review.Response, review.Request = resp, nil
		_ = json.NewEncoder(w).Encode(review)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ip, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	if ip != "127.0.0.1" {
		t.Fatalf("the webhook listens on %s, want loopback 127.0.0.1", ip)
	}

	kubectl(t, vc.Kubeconfig, probeWebhook("allowed", fmt.Sprintf("{url: 'https://127.0.0.1:%s/validate', caBundle: %s}", port,
		base64.StdEncoding.EncodeToString(issuer.CAPEM()))), "apply", "-f", "-")
	// The webhook's own answer comes back: it was called.
	err = createProbes(t, vc.Client, "denied by the test webhook")
	t.Logf("a configmap create with an allowed webhook: %v", err)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "allowed", Labels: map[string]string{"egress-probe": "true"}}}
	if _, err := vc.Client.CoreV1().ConfigMaps("default").Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("a configmap the webhook allows: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 || seen[len(seen)-1] != "allowed" {
		t.Errorf("the webhook saw %v, want the last request to be for configmap allowed", seen)
	}
}

// TestEgressAllowedCIDRsBadInput: a CIDR the guard cannot read stops the
// runtime before it starts, naming the flag and the fix.
func TestEgressAllowedCIDRsBadInput(t *testing.T) {
	needHost(t)
	for bad, want := range map[string]string{
		"10.0.0.1":    "write 10.0.0.1/32",
		"10.0.0.0/33": "is not a CIDR (example: 10.20.0.0/16)",
	} {
		failFast(t, []string{"--egress-allowed-cidrs", want},
			"vcluster", "run", "--name", "x", "--host-kubeconfig", host.Kubeconfig, "--host-namespace", "default", "--egress-allowed-cidrs", bad, "--data-dir", t.TempDir())
	}
}
