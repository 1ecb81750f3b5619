package syncer

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/sublet-dev/sublet/internal/translate"
)

// registration is one row of the syncer table: name, default, and how to
// build its controller.
type registration struct {
	name    string
	enabled bool
	build   func(sctx *Context, vf, hf informers.SharedInformerFactory, m *Metrics) Runnable
}

// factories are the shared informer factories of both sides.
type factories struct {
	virtual, host informers.SharedInformerFactory
}

func register[T metav1.Object](name string, enabled bool, vi, hi Informers, build func(f factories) (Syncer[T], []trigger)) registration {
	return registration{name: name, enabled: enabled, build: func(sctx *Context, vf, hf informers.SharedInformerFactory, m *Metrics) Runnable {
		s, triggers := build(factories{virtual: vf, host: hf})
		return newController[T](name, s, sctx, vf, hf, vi, hi, m, triggers)
	}}
}

// stateless wraps a syncer that needs no informers of other kinds.
func stateless[T metav1.Object](s Syncer[T]) func(factories) (Syncer[T], []trigger) {
	return func(factories) (Syncer[T], []trigger) { return s, nil }
}

// table lists every syncer. Adding a resource kind is one file and one row.
func table() []registration {
	return []registration{
		register[*corev1.Pod]("pods", true, podInformer, podInformer, newPodSyncer),
		register[*corev1.Service]("services", true, serviceInformer, serviceInformer, stateless[*corev1.Service](serviceSyncer{})),
		register[*corev1.ConfigMap]("configmaps", true, configMapInformer, configMapInformer, newConfigMapSyncer),
		register[*corev1.Secret]("secrets", true, secretInformer, secretInformer, newSecretSyncer),
		register[*corev1.PersistentVolumeClaim]("persistentvolumeclaims", true, pvcInformer, pvcInformer, newPVCSyncer),
		register[*networkingv1.Ingress]("ingresses", true, ingressInformer, ingressInformer, newIngressSyncer),
		register[*corev1.Endpoints]("endpoints", true, endpointsInformer, endpointsInformer, newEndpointsSyncer),
		register[*discoveryv1.EndpointSlice]("endpointslices", true, endpointSliceInformer, endpointSliceInformer, newEndpointSliceSyncer),
		{name: "nodes", enabled: true, build: newNodeSyncer},
		{name: "events", enabled: true, build: newEventSyncer},
	}
}

// Names returns every syncer name, sorted.
func Names() []string {
	var out []string
	for _, r := range table() {
		out = append(out, r.name)
	}
	sort.Strings(out)
	return out
}

// Selection picks syncers: the defaults, minus disabled, plus enabled.
func Selection(enable, disable []string) (map[string]bool, error) {
	known := map[string]bool{}
	sel := map[string]bool{}
	for _, r := range table() {
		known[r.name] = true
		sel[r.name] = r.enabled
	}
	for _, lists := range []struct {
		names []string
		on    bool
	}{{enable, true}, {disable, false}} {
		for _, n := range lists.names {
			n = strings.TrimSpace(n)
			if n == "" {
				continue
			}
			if !known[n] {
				return nil, fmt.Errorf("unknown resource %q: known are %s", n, strings.Join(Names(), ", "))
			}
			sel[n] = lists.on
		}
	}
	return sel, nil
}

// Run starts the selected syncers and runs them until ctx ends.
func Run(ctx context.Context, sctx *Context, selected map[string]bool, m *Metrics) error {
	vf := informers.NewSharedInformerFactory(sctx.Virtual, 10*time.Hour)
	hf := informers.NewSharedInformerFactoryWithOptions(sctx.Host, 10*time.Hour,
		informers.WithNamespace(sctx.Translator.HostNamespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = translate.LabelManagedBy + "=" + sctx.Translator.VCluster
		}))
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
	runs := []Runnable{newNamespaceLabeler(sctx, vf)}
	for _, r := range table() {
		if selected[r.name] {
			runs = append(runs, r.build(sctx, vf, hf, m))
		}
	}
	vf.Start(ctx.Done())
	hf.Start(ctx.Done())
	var wg sync.WaitGroup
	errs := make(chan error, len(runs))
	for _, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Run(ctx); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	vf.Shutdown()
	hf.Shutdown()
	close(errs)
	return <-errs
}
