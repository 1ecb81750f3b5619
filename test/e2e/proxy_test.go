package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sublet-dev/sublet/internal/testenv"
)

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// TestServiceAndPodProxy: in a virtual cluster, …/services/NAME:PORT/proxy/…
// (kubectl get --raw, kubectl proxy) reaches a real HTTP backend through the
// host API server: a selectorless service whose endpoints the tenant writes,
// pointing at a server this test runs. Unknown objects, objects without a
// host copy and tenants without the right get the API server's answers.
func TestServiceAndPodProxy(t *testing.T) {
	needHost(t)
	hostNS := createNamespace(t, host.Client, "vc-proxy")
	vc := startVCluster(t, "prox", hostNS)
	kc := vc.Kubeconfig
	// A pod and a service for it; the host gives the pod its IP, and this
	// test serves HTTP at that IP in a network namespace of its own, so
	// the host API server reaches a real backend where the pod is.
	kubectl(t, kc, `apiVersion: v1
kind: Pod
metadata: {name: backend, namespace: default, labels: {app: backend}}
spec:
  containers: [{name: c, image: nginx, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: default}
spec:
  selector: {app: backend}
  ports: [{port: 80, targetPort: 8080}]
`, "apply", "-f", "-")
	kubectl(t, kc, "", "wait", "--for=condition=Ready", "pod/backend", "--timeout=60s")
	ip := kubectl(t, kc, "", "get", "pod", "backend", "-o", "jsonpath={.status.podIP}")
	l := podNetwork(t, ip, 8080)
	backend := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// X-Forwarded-Uri names the API server path that proxied the
		// request: the host's, for the host copy, proves the way it took.
		fmt.Fprintf(w, "hello from the backend: %s %s?%s via %s", r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("X-Forwarded-Uri"))
	})}
	go func() { _ = backend.Serve(l) }()
	t.Cleanup(func() { _ = backend.Close() })
	// The host's endpoints for the service's copy name the pod.
	poll(t, 30*time.Second, "the host endpoints of the service's copy", func(ctx context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", host.Kubeconfig, "get", "endpointslices", "-n", hostNS,
			"-l", "kubernetes.io/service-name=backend-x-default-x-prox", "-o", "jsonpath={.items[*].endpoints[*].addresses[0]}").Output()
		return err == nil && strings.Contains(string(out), ip), nil
	})

	// A selectorless service whose endpoints the tenant writes, naming the
	// pod (an API server proxies only to endpoints that are pods).
	kubectl(t, kc, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: manual, namespace: default}
spec:
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: manual, namespace: default}
subsets:
- addresses: [{ip: %s, targetRef: {kind: Pod, name: backend, namespace: default}}]
  ports: [{port: 8080}]
`, ip), "apply", "-f", "-")
	poll(t, 30*time.Second, "the host endpoints of the selectorless service's copy", func(ctx context.Context) (bool, error) {
		out, err := exec.Command("kubectl", "--kubeconfig", host.Kubeconfig, "get", "endpointslices", "-n", hostNS,
			"-l", "kubernetes.io/service-name=manual-x-default-x-prox", "-o", "jsonpath={.items[*].endpoints[*].addresses[0]}").Output()
		return err == nil && strings.Contains(string(out), ip), nil
	})

	want := "hello from the backend: GET /hello/there?x=1 via /api/v1/namespaces/" + hostNS + "/"
	for what, path := range map[string]string{
		"service proxy":               "/api/v1/namespaces/default/services/backend:80/proxy/hello/there?x=1",
		"service proxy with a scheme": "/api/v1/namespaces/default/services/http:backend:80/proxy/hello/there?x=1",
		"pod proxy":                   "/api/v1/namespaces/default/pods/backend:8080/proxy/hello/there?x=1",
		"selectorless service proxy":  "/api/v1/namespaces/default/services/manual:80/proxy/hello/there?x=1",
	} {
		if out := kubectl(t, kc, "", "get", "--raw", path); !strings.HasPrefix(out, want) || !strings.Contains(out, "-x-default-x-prox") {
			t.Errorf("%s through the virtual cluster: %q, want it served through the host copy (%q…)", what, out, want)
		}
	}

	logServiceProxyLatency(t, vc, ip)

	// kubectl proxy with the virtual cluster's kubeconfig, no flags.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	proxy := exec.CommandContext(ctx, "kubectl", "--kubeconfig", kc, "proxy", "--port=0")
	stdout, _ := proxy.StdoutPipe()
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = proxy.Wait() }()
	sc := bufio.NewScanner(stdout)
	var base string
	for sc.Scan() {
		if m := regexp.MustCompile(`Starting to serve on (\S+)`).FindStringSubmatch(sc.Text()); m != nil {
			base = "http://" + m[1]
			break
		}
	}
	if base == "" {
		t.Fatal("kubectl proxy did not start")
	}
	resp, err := http.Get(base + "/api/v1/namespaces/default/services/backend:80/proxy/hello/there?x=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(body), want) {
		t.Errorf("kubectl proxy → service proxy: HTTP %d %q", resp.StatusCode, body)
	}

	// Refusals, as the API server words them.
	kubectl(t, kc, "", "create", "serviceaccount", "nobody")
	kubectl(t, kc, `apiVersion: v1
kind: Pod
metadata: {name: gated, namespace: default}
spec:
  schedulingGates: [{name: example.com/not-yet}]
  containers: [{name: c, image: nginx}]
`, "apply", "-f", "-")
	for _, c := range []struct{ what, path, want string }{
		{"an unknown service", "/api/v1/namespaces/default/services/nope:80/proxy/", `services "nope" not found`},
		{"an unknown pod", "/api/v1/namespaces/default/pods/nope/proxy/", `pods "nope" not found`},
		{"a pod without a host copy (gated)", "/api/v1/namespaces/default/pods/gated:80/proxy/", "pod default/gated has no copy on the host yet"},
	} {
		out, err := exec.Command("kubectl", "--kubeconfig", kc, "get", "--raw", c.path).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("%s: %v %q, want an error with %q", c.what, err, out, c.want)
		}
	}
	out, err := exec.Command("kubectl", "--kubeconfig", kc, "get", "--raw", "/api/v1/namespaces/default/services/backend:80/proxy/",
		"--as", "system:serviceaccount:default:nobody").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Forbidden") {
		t.Errorf("a tenant without services/proxy: %v %q, want Forbidden", err, out)
	}
}

// logServiceProxyLatency logs what the way through both API servers adds
// (measured, not asserted): p50 of GETs through the virtual cluster's
// service proxy against GETs straight to the backend at ip.
func logServiceProxyLatency(t *testing.T, vc *testenv.Process, ip string) {
	t.Helper()
	cfg := rest.CopyConfig(vc.Config)
	cfg.QPS, cfg.Burst = 1000, 1000 // the test's own client must not be what is measured
	viaProxy := kubernetes.NewForConfigOrDie(cfg).CoreV1().Services("default").ProxyGet("http", "backend", "80", "/hello", nil)
	direct := &http.Client{Timeout: 10 * time.Second}
	var proxied, straight []time.Duration
	for i := 0; i < 50; i++ {
		start := time.Now()
		if _, err := viaProxy.DoRaw(context.Background()); err != nil {
			t.Fatal(err)
		}
		proxied = append(proxied, time.Since(start))
		start = time.Now()
		resp, err := direct.Get(fmt.Sprintf("http://%s:8080/hello", ip))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		straight = append(straight, time.Since(start))
	}
	t.Logf("service proxy GET p50 %v, direct GET p50 %v (50 each)", median(proxied), median(straight))
}
