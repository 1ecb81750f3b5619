package hostcluster

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/sublet-dev/sublet/internal/controlplane"
)

// Info describes a running host cluster.
type Info struct {
	controlplane.Info
	Nodes []string
}

// Run starts the host cluster on cp (a host-mode control plane made from
// o.ControlPlane), calls ready once its nodes are Ready, and runs until ctx ends.
func Run(ctx context.Context, cp *controlplane.ControlPlane, o Options, log klog.Logger, logOut io.Writer, ready func(Info) error) error {
	return cp.Run(ctx, func(info controlplane.Info) error {
		sim := &simulator{
			admin:   info.Admin,
			workDir: filepath.Join(o.ControlPlane.DataDir, "kwok"),
			podCIDR: o.PodCIDR,
			exec:    o.Exec,
			logOut:  logOut,
			pki:     controlplane.PKI(o.ControlPlane.DataDir),
		}
		port, err := sim.start(ctx)
		if err != nil {
			return err
		}
		cs, err := kubernetes.NewForConfig(info.Admin)
		if err != nil {
			return err
		}
		if err := ensureNodes(ctx, cs, o.Nodes, o.PodCIDR, port); err != nil {
			return err
		}
		names, err := waitNodesReady(ctx, cs, o.Nodes)
		if err != nil {
			return err
		}
		log.Info("host cluster ready", "nodes", names, "kubeletPort", port)
		if ready == nil {
			return nil
		}
		return ready(Info{Info: info, Nodes: names})
	})
}

func waitNodesReady(ctx context.Context, cs kubernetes.Interface, count int) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		var names []string
		list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: managedByLabel + "=true"})
		if err == nil {
			for _, n := range list.Items {
				if nodeReady(&n) {
					names = append(names, n.Name)
				}
			}
			if len(names) >= count {
				return names, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("simulated nodes not Ready after 2m (%d of %d ready)", len(names), count)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
