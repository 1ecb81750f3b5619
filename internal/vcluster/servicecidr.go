package vcluster

import (
	"context"
	"fmt"
	"net"
	"regexp"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/sublet-dev/sublet/internal/exitcode"
)

// validRangeRE finds the range in the API server's answer to a ClusterIP
// outside it: "... The range of valid IPs is 10.96.0.0/16".
var validRangeRE = regexp.MustCompile(`range of valid IPs is ([0-9a-fA-F.:/]+)`)

// probeClusterIP is an address no service range of a cluster holds (TEST-NET-1).
const probeClusterIP = "192.0.2.1"

// DetectServiceCIDR returns the host cluster's service IP range: from its
// ServiceCIDR objects when the credentials may read them, else from the API
// server's answer to a dry-run service in namespace with a ClusterIP out of
// range, which needs no more than creating services there.
func DetectServiceCIDR(ctx context.Context, host kubernetes.Interface, namespace string) (string, error) {
	if list, err := host.NetworkingV1().ServiceCIDRs().List(ctx, metav1.ListOptions{}); err == nil {
		for _, sc := range list.Items {
			if sc.Name == "kubernetes" && len(sc.Spec.CIDRs) > 0 {
				return sc.Spec.CIDRs[0], nil
			}
		}
	}
	probe := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "sublet-cidr-probe-", Namespace: namespace},
		Spec: corev1.ServiceSpec{ClusterIP: probeClusterIP, Ports: []corev1.ServicePort{
			{Port: 80, TargetPort: intstr.FromInt32(80)},
		}},
	}
	_, err := host.CoreV1().Services(namespace).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err == nil {
		return "", fmt.Errorf("detect the host's service CIDR: the host accepted ClusterIP %s; pass --service-cidr", probeClusterIP)
	}
	if m := validRangeRE.FindStringSubmatch(err.Error()); m != nil {
		return m[1], nil
	}
	if apierrors.IsNotFound(err) {
		return "", exitcode.Configf("host namespace %q does not exist: create it (kubectl create namespace %s) or pass another --host-namespace", namespace, namespace)
	}
	return "", fmt.Errorf("detect the host's service CIDR (or pass --service-cidr): %w", err)
}

// checkServiceCIDR refuses a virtual service range that does not hold the
// host's whole range: the host assigns every ClusterIP, and the virtual
// API server cannot adopt one outside its own range.
func checkServiceCIDR(virtual, host string) error {
	_, v, err := net.ParseCIDR(virtual)
	if err != nil {
		return exitcode.Configf("--service-cidr %q is not a CIDR (example: 10.96.0.0/16)", virtual)
	}
	_, h, err := net.ParseCIDR(host)
	if err != nil {
		return nil // nothing to compare with
	}
	vOnes, vBits := v.Mask.Size()
	hOnes, hBits := h.Mask.Size()
	if vBits == hBits && vOnes <= hOnes && v.Contains(h.IP) {
		return nil
	}
	return exitcode.Configf("--service-cidr %s does not hold the host's service range %s: the host assigns every service a ClusterIP from %s, "+
		"which the virtual cluster must keep; set --service-cidr (values: virtualCluster.extraArgs) to %s or a range holding it, or leave it out to use the host's",
		virtual, host, host, host)
}
