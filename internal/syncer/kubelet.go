package syncer

// KubeletEndpoint is where the virtual cluster's nodes say their kubelet
// is: the runtime's kubelet proxy, not the host's kubelets.
type KubeletEndpoint struct {
	Address string
	Port    int32
}
