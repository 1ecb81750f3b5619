package clusterdns

import (
	"context"
	"fmt"
	"net"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// ServiceName is the virtual cluster's DNS service, in kube-system, as
// clusters name it.
const ServiceName = "kube-dns"

// EnsureService makes the virtual cluster's kube-system/kube-dns Service
// (and, when the DNS listens on an address pods can reach, its Endpoints:
// the syncer copies both to the host, so the host copy routes to the DNS
// server) and returns the Service's ClusterIP, the nameserver of the
// cluster's pods.
func EnsureService(ctx context.Context, virtual kubernetes.Interface, listening string) (string, error) {
	host, portStr, err := net.SplitHostPort(listening)
	if err != nil {
		return "", err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return "", err
	}
	labels := map[string]string{"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "SubletDNS"}
	want := []corev1.ServicePort{
		{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(int32(port))},
		{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(int32(port))},
	}
	services := virtual.CoreV1().Services(metav1.NamespaceSystem)
	svc, err := services.Get(ctx, ServiceName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		svc, err = services.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: ServiceName, Labels: labels},
			Spec: corev1.ServiceSpec{Ports: want}}, metav1.CreateOptions{})
		if err != nil {
			return "", fmt.Errorf("create the kube-dns service: %w", err)
		}
	case err != nil:
		return "", err
	case len(svc.Spec.Ports) != 2 || svc.Spec.Ports[0].TargetPort != want[0].TargetPort:
		svc.Spec.Ports = want // the listener moved (a restart on another port)
		if svc, err = services.Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
			return "", fmt.Errorf("update the kube-dns service: %w", err)
		}
	}
	if ip := net.ParseIP(host); ip != nil && !ip.IsLoopback() && !ip.IsUnspecified() {
		ep := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: ServiceName, Labels: labels},
			Subsets: []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{{IP: host}}, Ports: []corev1.EndpointPort{
				{Name: "dns", Port: int32(port), Protocol: corev1.ProtocolUDP}, {Name: "dns-tcp", Port: int32(port), Protocol: corev1.ProtocolTCP}}}}}
		eps := virtual.CoreV1().Endpoints(metav1.NamespaceSystem)
		if _, err := eps.Create(ctx, ep, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
			old, gerr := eps.Get(ctx, ServiceName, metav1.GetOptions{})
			if gerr != nil {
				return "", gerr
			}
			old.Subsets = ep.Subsets
			_, err = eps.Update(ctx, old, metav1.UpdateOptions{})
		} else if err != nil {
			return "", fmt.Errorf("create the kube-dns endpoints: %w", err)
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return "", fmt.Errorf("update the kube-dns endpoints: %w", err)
		}
	}
	return svc.Spec.ClusterIP, nil
}
