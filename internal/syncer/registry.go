package syncer

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/sublet-dev/sublet/internal/syncer/kinds"
	"github.com/sublet-dev/sublet/internal/translate"
)

// builder constructs the controller of the syncer of kind name. selected is
// the whole selection, for syncers that follow other kinds (events).
type builder func(name string, sctx *Context, f factories, selected map[string]bool, m *Metrics) Runnable

// factories are the shared informer factories of both sides: host sees
// this virtual cluster's objects in its host namespace, hostAll every
// object of the host (only what the kinds table lets the syncer read
// cluster-wide).
type factories struct {
	virtual, host, hostAll informers.SharedInformerFactory
	// refs are the Secrets and ConfigMaps custom objects name.
	refs *customRefs
	// returned are the virtual Secrets copied back from host controllers.
	returned *returnedSecrets
}

func register[T metav1.Object](vi, hi Informers, build func(f factories) (Syncer[T], []trigger)) builder {
	return func(name string, sctx *Context, f factories, _ map[string]bool, m *Metrics) Runnable {
		s, triggers := build(f)
		return newController[T](name, s, sctx, f.virtual, f.host, vi, hi, m, triggers)
	}
}

// stateless wraps a syncer that needs no informers of other kinds.
func stateless[T metav1.Object](s Syncer[T]) func(factories) (Syncer[T], []trigger) {
	return func(factories) (Syncer[T], []trigger) { return s, nil }
}

// syncers binds each row of the kinds table (names, defaults, host rights,
// cleanup: package kinds) to the syncer that implements it.
func syncers() map[string]builder {
	out := map[string]builder{
		kinds.Pods:                   register[*corev1.Pod](podInformer, podInformer, newPodSyncer),
		kinds.Services:               register[*corev1.Service](serviceInformer, serviceInformer, stateless[*corev1.Service](serviceSyncer{})),
		kinds.ConfigMaps:             register[*corev1.ConfigMap](configMapInformer, configMapInformer, newConfigMapSyncer),
		kinds.Secrets:                register[*corev1.Secret](secretInformer, secretInformer, newSecretSyncer),
		kinds.PersistentVolumeClaims: register[*corev1.PersistentVolumeClaim](pvcInformer, pvcInformer, newPVCSyncer),
		kinds.Ingresses:              register[*networkingv1.Ingress](ingressInformer, ingressInformer, newIngressSyncer),
		kinds.Endpoints:              register[*corev1.Endpoints](endpointsInformer, endpointsInformer, newEndpointsSyncer),
		kinds.EndpointSlices:         register[*discoveryv1.EndpointSlice](endpointSliceInformer, endpointSliceInformer, newEndpointSliceSyncer),
		kinds.Nodes:                  newNodeSyncer,
		kinds.Events:                 newEventSyncer,
		kinds.PodDisruptionBudgets:   register[*policyv1.PodDisruptionBudget](pdbInformer, pdbInformer, newPDBSyncer),
		kinds.NetworkPolicies:        register[*networkingv1.NetworkPolicy](networkPolicyInformer, networkPolicyInformer, newNetworkPolicySyncer),
	}
	for name, b := range fromHostSyncers() {
		out[name] = b
	}
	routes := map[string]bool{kinds.HTTPRoutes: true, kinds.GRPCRoutes: true, kinds.TLSRoutes: true}
	for _, k := range kinds.All() {
		if routes[k.Name] {
			rc := &routeClaims{}
			out[k.Name] = registerDynamic(dynamicKind{row: k, restrict: rc.restrict, also: rc.also})
		}
	}
	return out
}

// Names returns every syncer name, sorted.
func Names() []string { return kinds.Names() }

// Selection picks syncers: the defaults, minus disabled, plus enabled.
func Selection(enable, disable []string) (map[string]bool, error) {
	return kinds.Selection(enable, disable)
}

// Run starts the selected syncers and runs them until ctx ends.
func Run(ctx context.Context, sctx *Context, selected map[string]bool, m *Metrics) error {
	vf := informers.NewSharedInformerFactory(sctx.Virtual, 10*time.Hour)
	hf := informers.NewSharedInformerFactoryWithOptions(sctx.Host, 10*time.Hour,
		informers.WithNamespace(sctx.Translator.HostNamespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = translate.LabelCopyOf + "=" + sctx.Translator.VCluster
		}))
	hallf := informers.NewSharedInformerFactory(sctx.Host, 10*time.Hour)
	if sctx.Recorder == nil {
		b := record.NewBroadcaster(record.WithContext(ctx))
		b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: sctx.Virtual.CoreV1().Events("")})
		defer b.Shutdown()
		sctx.Recorder = b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "sublet-syncer"})
	}
	if sctx.PodSecurity == nil {
		ps, err := NewPodSecurity(DefaultPodSecurityStandard)
		if err != nil {
			return err
		}
		sctx.PodSecurity = ps
	}
	if sctx.Addresses == nil {
		sctx.Addresses = &OwnedAddresses{} // tenant endpoints are checked against it too
	}
	if err := sctx.Addresses.watch(sctx.Translator, hf); err != nil {
		return err
	}
	runs := []Runnable{newNamespaceLabeler(sctx, vf)}
	f := factories{virtual: vf, host: hf, hostAll: hallf, refs: newCustomRefs(), returned: &returnedSecrets{}}
	impl := syncers()
	for _, k := range kinds.All() {
		if !selected[k.Name] {
			continue
		}
		build, ok := impl[k.Name]
		if !ok {
			return fmt.Errorf("kind %s has no syncer", k.Name)
		}
		runs = append(runs, build(k.Name, sctx, f, selected, m))
	}
	for _, row := range sctx.Custom {
		runs = append(runs, customBuilder(row)(row.CRD, sctx, f, selected, m))
	}
	f.refs.seal(ctx)
	vf.Start(ctx.Done())
	hf.Start(ctx.Done())
	hallf.Start(ctx.Done())
	err := runAll(ctx, sctx, runs)
	vf.Shutdown()
	hf.Shutdown()
	hallf.Shutdown()
	return err
}
