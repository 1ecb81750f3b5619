package vcluster

import (
	"context"
	"fmt"
	"net"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/controlplane"
	"github.com/sublet-dev/sublet/internal/kubeproxy"
	"github.com/sublet-dev/sublet/internal/pki"
	"github.com/sublet-dev/sublet/internal/syncer"
	"github.com/sublet-dev/sublet/internal/vcluster/proxy"
)

// publishKubeconfig writes the admin kubeconfig, pointed at
// o.KubeconfigServer, and the data endpoint's token, if any, into host
// secret o.KubeconfigSecret.
func publishKubeconfig(ctx context.Context, host kubernetes.Interface, o Options, info controlplane.Info, token string) error {
	cfg, err := clientcmd.LoadFromFile(info.AdminKubeconfig)
	if err != nil {
		return err
	}
	for _, c := range cfg.Clusters {
		c.Server = o.KubeconfigServer
	}
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: o.KubeconfigSecret, Namespace: o.HostNamespace,
			Labels: map[string]string{storagev1.LabelVirtualCluster: o.Name}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{"config": data},
	}
	if token != "" {
		s.Data[storagev1.DataTokenKey] = []byte(token)
	}
	secrets := host.CoreV1().Secrets(o.HostNamespace)
	_, err = secrets.Create(ctx, s, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		var old *corev1.Secret
		if old, err = secrets.Get(ctx, s.Name, metav1.GetOptions{}); err == nil {
			old.Data = s.Data
			_, err = secrets.Update(ctx, old, metav1.UpdateOptions{})
		}
	}
	if err != nil {
		return fmt.Errorf("write the admin kubeconfig to host secret %s: %w", o.KubeconfigSecret, err)
	}
	return nil
}

// startKubeletProxy serves the kubelet API of the virtual cluster's nodes
// (logs, exec, attach, port-forward through the host API server) on
// address, with the control plane's serving certificate, to the virtual API
// server alone.
func startKubeletProxy(ctx context.Context, sctx *syncer.Context, backend *kubeproxy.Backend, dataDir, address string, log klog.Logger) (*syncer.KubeletEndpoint, error) {
	if address == "" {
		address = "127.0.0.1"
	}
	l, err := net.Listen("tcp", net.JoinHostPort(address, "0"))
	if err != nil {
		return nil, fmt.Errorf("kubelet proxy: %w", err)
	}
	// Only the virtual API server's own kubelet client certificate: the
	// controller-manager signs tenants' CSRs with the same CA.
	err = controlplane.PKI(dataDir).ServePinned(ctx, l, pki.APIServerKubeletClient, proxy.NewKubelet(sctx, backend), func(err error) {
		log.Error(err, "kubelet proxy stopped")
	})
	if err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("kubelet proxy: %w", err)
	}
	return &syncer.KubeletEndpoint{Address: address, Port: int32(l.Addr().(*net.TCPAddr).Port)}, nil
}
