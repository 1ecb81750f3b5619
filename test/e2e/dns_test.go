package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sublet-dev/sublet/internal/testenv"
)

// dnsAddress is where a `sublet vcluster run` answers DNS (it prints it
// right after it says it is ready).
func dnsAddress(t *testing.T, vc *testenv.Process) string {
	t.Helper()
	re := regexp.MustCompile(`Cluster DNS: (\S+)`)
	var addr string
	poll(t, 10*time.Second, "the virtual cluster says where its DNS answers", func(context.Context) (bool, error) {
		if m := re.FindStringSubmatch(vc.Output()); m != nil {
			addr = m[1]
		}
		return addr != "", nil
	})
	return addr
}

// query asks server about name and type.
func query(t *testing.T, server, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	resp, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(m, server)
	if err != nil {
		t.Fatalf("query %s %s: %v", dns.TypeToString[qtype], name, err)
	}
	return resp
}

// answers renders the answer section's data, one per record.
func answers(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		f := strings.Fields(rr.String())
		out = append(out, strings.Join(f[3:], " "))
	}
	return out
}

// TestClusterDNS: each record kind from a real virtual cluster, queried
// with real DNS messages: services (ClusterIP, headless, ExternalName), a
// pod's hostname under its subdomain, SRV for a named port, PTR for a
// service and a pod, NXDOMAIN; a new service resolves at once and a
// deleted one stops.
func TestClusterDNS(t *testing.T) {
	needHost(t)
	hostNS := createNamespace(t, host.Client, "vc-dns")
	vc := startVCluster(t, "names", hostNS)
	kc := vc.Kubeconfig
	server := dnsAddress(t, vc)
	kubectl(t, kc, `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: pg, port: 5432, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: default}
spec:
  type: ExternalName
  externalName: db.example.com
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: default, labels: {app: db}}
spec:
  hostname: db-0
  subdomain: db
  containers: [{name: c, image: postgres}]
`, "apply", "-f", "-")
	kubectl(t, kc, "", "wait", "--for=condition=Ready", "pod/db-0", "--timeout=60s")
	webIP := kubectl(t, kc, "", "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}")
	podIP := kubectl(t, kc, "", "get", "pod", "db-0", "-o", "jsonpath={.status.podIP}")
	// The headless service's endpoints come from the virtual cluster's own
	// controllers: wait until its name resolves to the pod.
	poll(t, 30*time.Second, "db.default.svc.cluster.local → the pod", func(context.Context) (bool, error) {
		return strings.Join(answers(query(t, server, "db.default.svc.cluster.local", dns.TypeA)), ",") == "A "+podIP, nil
	})

	for _, c := range []struct {
		name  string
		qtype uint16
		want  string
	}{
		{"web.default.svc.cluster.local", dns.TypeA, "A " + webIP},
		{"WEB.Default.svc.cluster.local", dns.TypeA, "A " + webIP},
		{"_http._tcp.web.default.svc.cluster.local", dns.TypeSRV, "SRV 0 100 80 web.default.svc.cluster.local."},
		{"db-0.db.default.svc.cluster.local", dns.TypeA, "A " + podIP},
		{"_pg._tcp.db.default.svc.cluster.local", dns.TypeSRV, "SRV 0 100 5432 db-0.db.default.svc.cluster.local."},
		{"ext.default.svc.cluster.local", dns.TypeA, "CNAME db.example.com."},
		{strings.ReplaceAll(podIP, ".", "-") + ".default.pod.cluster.local", dns.TypeA, "A " + podIP},
		{reverseName(t, webIP), dns.TypePTR, "PTR web.default.svc.cluster.local."},
		{reverseName(t, podIP), dns.TypePTR, "PTR db-0.db.default.svc.cluster.local."},
		{"web.default.svc.cluster.local", dns.TypeAAAA, ""},
	} {
		resp := query(t, server, c.name, c.qtype)
		if got := strings.Join(answers(resp), ","); got != c.want || resp.Rcode != dns.RcodeSuccess || !resp.Authoritative {
			t.Errorf("%s %s: %q (rcode %s, authoritative %v), want %q", dns.TypeToString[c.qtype], c.name, got, dns.RcodeToString[resp.Rcode], resp.Authoritative, c.want)
		}
	}
	// The cluster's kube-dns Service, and ClusterFirst pods pointed at it.
	dnsIP := kubectl(t, kc, "", "get", "service", "kube-dns", "-n", "kube-system", "-o", "jsonpath={.spec.clusterIP}")
	if out := kubectl(t, host.Kubeconfig, "", "get", "pod", "db-0-x-default-x-names", "-n", hostNS,
		"-o", "jsonpath={.spec.dnsPolicy} {.spec.dnsConfig.nameservers[0]} {.spec.dnsConfig.searches[0]}"); out != "None "+dnsIP+" default.svc.cluster.local" {
		t.Errorf("the host pod's DNS: %q, want the kube-dns ClusterIP %s and the virtual namespace's search path", out, dnsIP)
	}
	if out := kubectl(t, host.Kubeconfig, "", "get", "service", "kube-dns-x-kube-system-x-names", "-n", hostNS, "-o", "jsonpath={.spec.clusterIP}"); out != dnsIP {
		t.Errorf("the host copy of kube-dns has ClusterIP %q, want %s", out, dnsIP)
	}
	for _, name := range []string{"nope.default.svc.cluster.local", "web.elsewhere.svc.cluster.local", "nope.db.default.svc.cluster.local"} {
		if resp := query(t, server, name, dns.TypeA); resp.Rcode != dns.RcodeNameError {
			t.Errorf("A %s: rcode %s, want NXDOMAIN", name, dns.RcodeToString[resp.Rcode])
		}
	}

	// A new service resolves as soon as the informer has it; a deleted one
	// stops resolving.
	start := time.Now()
	kubectl(t, kc, "", "create", "service", "clusterip", "fresh", "--tcp=8080:8080")
	poll(t, 10*time.Second, "fresh resolves", func(context.Context) (bool, error) {
		return len(query(t, server, "fresh.default.svc.cluster.local", dns.TypeA).Answer) == 1, nil
	})
	t.Logf("a new service resolved %.2f s after kubectl create started", time.Since(start).Seconds())
	if err := vc.Client.CoreV1().Services("default").Delete(context.Background(), "fresh", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 10*time.Second, "fresh stops resolving", func(context.Context) (bool, error) {
		return query(t, server, "fresh.default.svc.cluster.local", dns.TypeA).Rcode == dns.RcodeNameError, nil
	})
}

func reverseName(t *testing.T, ip string) string {
	t.Helper()
	name, err := dns.ReverseAddr(ip)
	if err != nil {
		t.Fatal(fmt.Errorf("reverse of %s: %w", ip, err))
	}
	return name
}
