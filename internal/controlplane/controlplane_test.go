package controlplane

import (
	"testing"

	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/pkg/controlplane"
	controlplaneapiserver "k8s.io/kubernetes/pkg/controlplane/apiserver"
)

func TestAPIServerTuning(t *testing.T) {
	if tune := (&ControlPlane{opts: Options{Mode: ModeHost}}).apiserverTuning(); tune != nil {
		t.Error("host mode changes the API server's configuration")
	}

	saved := controlplaneapiserver.IdentityLeaseRenewIntervalPeriod
	t.Cleanup(func() { controlplaneapiserver.IdentityLeaseRenewIntervalPeriod = saved })
	tune := (&ControlPlane{opts: Options{Mode: ModeVirtual}}).apiserverTuning()
	if tune == nil {
		t.Fatal("virtual mode leaves the API server's configuration as it is")
	}
	c := &apiserverapp.Config{KubeAPIs: &controlplane.Config{}}
	tune(c)
	if got := c.KubeAPIs.Extra.EndpointReconcilerConfig.Interval; got != virtualEndpointReconcileInterval {
		t.Errorf("endpoint reconcile interval %v, want %v", got, virtualEndpointReconcileInterval)
	}
	if got := c.KubeAPIs.Extra.MasterEndpointReconcileTTL; got != virtualEndpointLeaseTTL {
		t.Errorf("endpoint lease TTL %v, want %v", got, virtualEndpointLeaseTTL)
	}
	if got := controlplaneapiserver.IdentityLeaseRenewIntervalPeriod; got != virtualIdentityLeaseRenewInterval {
		t.Errorf("identity lease renew interval %v, want %v", got, virtualIdentityLeaseRenewInterval)
	}
	// The reconciler renews the lease once per interval; a lease that
	// expires before the next renewal drops the API server's address from
	// the kubernetes endpoints.
	if virtualEndpointLeaseTTL <= virtualEndpointReconcileInterval {
		t.Errorf("endpoint lease TTL %v does not outlive the reconcile interval %v", virtualEndpointLeaseTTL, virtualEndpointReconcileInterval)
	}
}
