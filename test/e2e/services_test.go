package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

func webService(clusterIP string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{
			ClusterIP: clusterIP,
			Selector:  map[string]string{"app": "web"},
			Ports:     []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
}

// readyPodIPs returns the sorted IPs of the Running pods in ns.
func readyPodIPs(ctx context.Context, cs kubernetes.Interface, ns string) ([]string, error) {
	list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var ips []string
	for _, p := range list.Items {
		if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
			ips = append(ips, p.Status.PodIP)
		}
	}
	sort.Strings(ips)
	return ips, nil
}

// endpointIPs returns the sorted addresses of service svc's EndpointSlices.
func endpointIPs(ctx context.Context, cs kubernetes.Interface, ns, svc string) ([]string, error) {
	list, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return nil, err
	}
	var ips []string
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			ips = append(ips, e.Addresses...)
		}
	}
	sort.Strings(ips)
	return ips, nil
}

// TestVClusterServicesShareHostNamespace: two virtual clusters in one host
// namespace, same object names; each host service has its virtual
// service's ClusterIP and selects exactly its own cluster's pods.
func TestVClusterServicesShareHostNamespace(t *testing.T) {
	needHost(t)
	ctx := context.Background()
	hostNS := createNamespace(t, host.Client, "vc-shared")
	for _, name := range []string{"one", "two"} {
		vc := startVCluster(t, name, hostNS)
		if _, err := vc.Client.AppsV1().Deployments("default").Create(ctx, deployment("web", "nginx", 2), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := vc.Client.CoreV1().Services("default").Create(ctx, webService(""), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		hostSvc := fmt.Sprintf("web-x-default-x-%s", name)
		var last string
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
			vs, err := vc.Client.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			hs, err := host.Client.CoreV1().Services(hostNS).Get(ctx, hostSvc, metav1.GetOptions{})
			if err != nil {
				last = err.Error()
				return false, nil
			}
			podIPs, err := readyPodIPs(ctx, vc.Client, "default")
			if err != nil {
				return false, err
			}
			hostEPs, err := endpointIPs(ctx, host.Client, hostNS, hostSvc)
			if err != nil {
				return false, err
			}
			last = fmt.Sprintf("clusterIP virtual %s host %s; virtual pods %v; host endpoints %v", vs.Spec.ClusterIP, hs.Spec.ClusterIP, podIPs, hostEPs)
			return vs.Spec.ClusterIP == hs.Spec.ClusterIP && len(podIPs) == 2 &&
				strings.Join(podIPs, ",") == strings.Join(hostEPs, ","), nil
		})
		if err != nil {
			t.Fatalf("virtual cluster %s: %v: %s", name, err, last)
		}
	}
}

// TestVClusterServiceAdoptsHostClusterIP: a virtual service whose ClusterIP
// is taken on the host ends up with the host's ClusterIP on both sides.
func TestVClusterServiceAdoptsHostClusterIP(t *testing.T) {
	needHost(t)
	ctx := context.Background()
	hostNS := createNamespace(t, host.Client, "vc-ip")
	const taken = "10.96.250.250"
	blocker := webService(taken)
	blocker.Name = "blocker"
	if _, err := host.Client.CoreV1().Services(hostNS).Create(ctx, blocker, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	vc := startVCluster(t, "ipclash", hostNS)
	if _, err := vc.Client.CoreV1().Services("default").Create(ctx, webService(taken), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var last string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		vs, err := vc.Client.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		hs, err := host.Client.CoreV1().Services(hostNS).Get(ctx, "web-x-default-x-ipclash", metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = fmt.Sprintf("virtual %s, host %s", vs.Spec.ClusterIP, hs.Spec.ClusterIP)
		return vs.Spec.ClusterIP == hs.Spec.ClusterIP && hs.Spec.ClusterIP != taken, nil
	})
	if err != nil {
		t.Fatalf("ClusterIPs did not converge: %v (%s)", err, last)
	}
	if b, err := host.Client.CoreV1().Services(hostNS).Get(ctx, "blocker", metav1.GetOptions{}); err != nil || b.Spec.ClusterIP != taken {
		t.Errorf("the host's own service was touched: %v %v", b, err)
	}
}
