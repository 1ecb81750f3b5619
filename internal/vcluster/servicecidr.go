package vcluster

import (
	"context"
	"fmt"
	"regexp"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
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
		return "", fmt.Errorf("host namespace %q does not exist: create it (kubectl create namespace %s) or pass another --host-namespace", namespace, namespace)
	}
	return "", fmt.Errorf("detect the host's service CIDR (or pass --service-cidr): %w", err)
}
