package hostcluster

import (
	"context"
	"fmt"
	"net"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

const (
	// kwokNodeAnnotation marks the nodes KWOK simulates.
	kwokNodeAnnotation = "kwok.x-k8s.io/node"
	kwokNodeSelector   = kwokNodeAnnotation + "=fake"
	// nodeNamePrefix names the simulated nodes: sublet-node-1, sublet-node-2…
	nodeNamePrefix = "sublet-node-"
	// managedByLabel marks nodes this package created, so it only ever
	// deletes its own.
	managedByLabel = "sublet.dev/simulated-node"
)

func nodeName(i int) string { return fmt.Sprintf("%s%d", nodeNamePrefix, i+1) }

// nodePodCIDR returns the i-th /24 of a /16.
func nodePodCIDR(cidr string, i int) (string, error) {
	ip, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return "", fmt.Errorf("%q is not a CIDR (example: 10.244.0.0/16)", cidr)
	}
	ones, bits := n.Mask.Size()
	if ip.To4() == nil || bits != 32 || ones > 16 {
		return "", fmt.Errorf("%q must be an IPv4 range of /16 or larger", cidr)
	}
	base := n.IP.To4()
	return fmt.Sprintf("%d.%d.%d.0/24", base[0], base[1], int(base[2])+i), nil
}

// simulatedNode is the Node object for the i-th simulated node. Its kubelet
// endpoint is the in-process KWOK server on kubeletPort.
func simulatedNode(i int, podCIDR string, kubeletPort int) *corev1.Node {
	name := nodeName(i)
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("16"),
		corev1.ResourceMemory: resource.MustParse("64Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Annotations: map[string]string{
				kwokNodeAnnotation:             "fake",
				"node.alpha.kubernetes.io/ttl": "0",
			},
			Labels: map[string]string{
				managedByLabel:                  "true",
				"type":                          "kwok",
				"kubernetes.io/hostname":        name,
				"kubernetes.io/os":              "linux",
				"kubernetes.io/arch":            "amd64",
				"node-role.kubernetes.io/agent": "",
			},
		},
		Spec: corev1.NodeSpec{PodCIDR: podCIDR, PodCIDRs: []string{podCIDR}},
		Status: corev1.NodeStatus{
			// Both address types: KWOK's node stage drops the addresses of a
			// node that lacks either.
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
				{Type: corev1.NodeHostName, Address: "localhost"},
			},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(kubeletPort)}},
			Capacity:        capacity,
			Allocatable:     capacity,
		},
	}
}

// ensureNodes creates the simulated nodes, points existing ones at this
// run's kubelet port, and deletes simulated nodes beyond count.
func ensureNodes(ctx context.Context, cs kubernetes.Interface, count int, podCIDR string, kubeletPort int) error {
	for i := 0; i < count; i++ {
		cidr, err := nodePodCIDR(podCIDR, i)
		if err != nil {
			return err
		}
		want := simulatedNode(i, cidr, kubeletPort)
		_, err = cs.CoreV1().Nodes().Create(ctx, want, metav1.CreateOptions{})
		if err == nil {
			continue
		}
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create node %s: %w", want.Name, err)
		}
		have, err := cs.CoreV1().Nodes().Get(ctx, want.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get node %s: %w", want.Name, err)
		}
		if have.Status.DaemonEndpoints.KubeletEndpoint.Port != int32(kubeletPort) {
			have.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(kubeletPort)
			if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, have, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("update node %s: %w", want.Name, err)
			}
		}
	}
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: managedByLabel + "=true"})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	for _, n := range list.Items {
		var idx int
		if _, err := fmt.Sscanf(strings.TrimPrefix(n.Name, nodeNamePrefix), "%d", &idx); err == nil && idx <= count {
			continue
		}
		if err := cs.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete node %s: %w", n.Name, err)
		}
	}
	return nil
}
