package syncer

import (
	"net/netip"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/sublet-dev/sublet/internal/translate"
)

// indexOwnedIP indexes the host pods and services this virtual cluster owns
// by their IPs.
const indexOwnedIP = "sublet-owned-ip"

// OwnedAddresses answers whether an IP is one of this virtual cluster's
// host pods or services, from the syncer's host informers. Only the host
// side counts: a tenant writes its virtual pods' status, never the host's.
// Run fills it in (Context.Addresses); until its informers have synced it
// knows nothing.
type OwnedAddresses struct {
	informers atomic.Pointer[[2]cache.SharedIndexInformer]
}

// Known reports whether the host pods and services have been listed.
func (o *OwnedAddresses) Known() bool {
	inf := o.informers.Load()
	return inf != nil && inf[0].HasSynced() && inf[1].HasSynced()
}

// Owns reports whether ip is the address of a running host pod (not on the
// host's network) or a ClusterIP of a host service of this virtual cluster.
func (o *OwnedAddresses) Owns(ip netip.Addr) bool {
	inf := o.informers.Load()
	if inf == nil {
		return false
	}
	key := ip.Unmap().WithZone("").String()
	for _, i := range inf {
		if objs, err := i.GetIndexer().ByIndex(indexOwnedIP, key); err == nil && len(objs) > 0 {
			return true
		}
	}
	return false
}

// watch indexes the host pod and service informers of f (Run's host
// factory, before it starts).
func (o *OwnedAddresses) watch(t translate.Translator, f informers.SharedInformerFactory) error {
	pods, services := podInformer(f), serviceInformer(f)
	err := addIndex(pods, func(obj interface{}) ([]string, error) {
		p, ok := obj.(*corev1.Pod)
		// A host-network pod's address is its node's; a finished pod's
		// may already be another's.
		if !ok || !t.Owns(p) || p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			return nil, nil
		}
		ips := []string{p.Status.PodIP}
		for _, a := range p.Status.PodIPs {
			ips = append(ips, a.IP)
		}
		return ipKeys(ips), nil
	})
	if err != nil {
		return err
	}
	err = addIndex(services, func(obj interface{}) ([]string, error) {
		s, ok := obj.(*corev1.Service)
		if !ok || !t.Owns(s) {
			return nil, nil
		}
		return ipKeys(append([]string{s.Spec.ClusterIP}, s.Spec.ClusterIPs...)), nil
	})
	if err != nil {
		return err
	}
	o.informers.Store(&[2]cache.SharedIndexInformer{pods, services})
	return nil
}

func addIndex(i cache.SharedIndexInformer, f cache.IndexFunc) error {
	if _, ok := i.GetIndexer().GetIndexers()[indexOwnedIP]; ok {
		return nil
	}
	return i.AddIndexers(cache.Indexers{indexOwnedIP: f})
}

// ipKeys are the index keys of the valid IPs among ips ("None" and ""
// are not), each once.
func ipKeys(ips []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range ips {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		k := a.Unmap().String()
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}
