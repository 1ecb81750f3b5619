package controlplane

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiserverv1beta1 "k8s.io/apiserver/pkg/apis/apiserver/v1beta1"

	"github.com/sublet-dev/sublet/internal/pki"
)

// SetEgressProxy makes a virtual-mode API server open every connection but
// its datastore's through the HTTP CONNECT proxy on unix socket path: the
// egress selector's "cluster" network (kubelets, node proxying, service
// webhooks, aggregated APIs) and "controlplane" network (URL webhooks).
// Host mode ignores it.
func (cp *ControlPlane) SetEgressProxy(socket string) { cp.egressSocket = socket }

// egressSelectorConfig is the API server's --egress-selector-config-file
// for a proxy on socket. (v1beta1 is the newest version of the kind.)
func egressSelectorConfig(socket string) ([]byte, error) {
	proxy := apiserverv1beta1.Connection{
		ProxyProtocol: apiserverv1beta1.ProtocolHTTPConnect,
		Transport:     &apiserverv1beta1.Transport{UDS: &apiserverv1beta1.UDSTransport{UDSName: socket}},
	}
	return json.Marshal(apiserverv1beta1.EgressSelectorConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: apiserverv1beta1.SchemeGroupVersion.String(), Kind: "EgressSelectorConfiguration"},
		EgressSelections: []apiserverv1beta1.EgressSelection{
			{Name: "cluster", Connection: proxy},
			{Name: "controlplane", Connection: proxy},
			{Name: "etcd", Connection: apiserverv1beta1.Connection{ProxyProtocol: apiserverv1beta1.ProtocolDirect}},
		},
	})
}

// writeEgressSelectorConfig writes the egress selector configuration the
// API server's flags name, if it has one.
func (cp *ControlPlane) writeEgressSelectorConfig() error {
	if !cp.egressProxied() {
		return nil
	}
	data, err := egressSelectorConfig(cp.egressSocket)
	if err != nil {
		return err
	}
	return pki.WriteFileAtomic(cp.dir.egressSelectorConfig(), data, 0o600)
}

func (cp *ControlPlane) egressProxied() bool {
	return cp.opts.Mode == ModeVirtual && cp.egressSocket != ""
}
