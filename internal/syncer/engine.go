// Package syncer copies what must really run from a virtual cluster into one
// host namespace and copies status back. A generic engine runs one
// controller per resource kind; each kind implements Syncer.
package syncer

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/sublet-dev/sublet/internal/isolation"
	"github.com/sublet-dev/sublet/internal/syncer/kinds"
	"github.com/sublet-dev/sublet/internal/translate"
)

// Context is what every syncer works with.
type Context struct {
	Translator translate.Translator
	Virtual    kubernetes.Interface
	Host       kubernetes.Interface
	// VirtualDynamic and HostDynamic serve the kinds the syncer knows
	// only from CRDs (Gateway API routes); without them those are not
	// synced.
	VirtualDynamic, HostDynamic dynamic.Interface
	Log                         klog.Logger
	// Pods is how host pods reach their virtual cluster.
	Pods PodRuntime
	// Kubelet, if set, is the kubelet endpoint virtual nodes publish.
	Kubelet *KubeletEndpoint
	// Recorder records events on virtual objects; Run sets one if nil.
	Recorder record.EventRecorder
	// PodSecurity is the level every pod is checked against before it
	// reaches the host; Run sets baseline if nil.
	PodSecurity *PodSecurity
	// Policy decides what else of the tenant's objects reaches the host
	// (service types, endpoint addresses, ingress hosts, annotations,
	// tolerations); its zero value is the safe default.
	Policy isolation.Policy
	// NetworkPolicyIsolation: the cluster's isolation NetworkPolicy bounds
	// its host pods, so tenants' policies may allow nothing beyond them.
	NetworkPolicyIsolation bool
	// Custom are the custom resource rows of values, synced after the
	// table's kinds.
	Custom []kinds.Custom
	// FromHostSelectors, by kind name, pick which of the host's objects
	// of a kinds.Kind.FromHost kind are copied (all if none).
	FromHostSelectors map[string]labels.Selector
	// Addresses learns from Run's host informers which IPs are the
	// cluster's own host pods and services (for the egress guard and the
	// endpoints tenants write); Run sets one if nil.
	Addresses *OwnedAddresses
}

// event records an event on virtual object obj, if there is a recorder.
func (c *Context) event(obj runtime.Object, eventType, reason, message string) {
	if c.Recorder != nil {
		c.Recorder.Event(obj, eventType, reason, message)
	}
}

// noticeCluster records an event about the whole virtual cluster: on its
// default namespace, where kubectl get events shows it.
func (c *Context) noticeCluster(eventType, reason, message string) {
	c.event(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: metav1.NamespaceDefault}}, eventType, reason, message)
}

// created returns the error of creating the host copy (kind, hostName) of
// virtual object v. AlreadyExists means the name is taken by a host object
// this virtual cluster does not own (its own copies are in the informer):
// that is reported as an event on v, and an error so the engine retries
// with backoff until the name is free.
func (c *Context) created(err error, v metav1.Object, kind, hostName string) error {
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	msg := fmt.Sprintf("host %s %s/%s exists and is not owned by virtual cluster %s; it is left alone and this object is not synced until it is gone",
		kind, c.Translator.HostNamespace, hostName, c.Translator.VCluster)
	if obj, ok := v.(runtime.Object); ok {
		c.event(obj, corev1.EventTypeWarning, "HostNameConflict", msg)
	}
	return errors.New(msg)
}

// Syncer handles one resource kind. The engine calls exactly one method per
// reconcile of a virtual key, by which side exists.
type Syncer[T metav1.Object] interface {
	// VirtualOnly: the virtual object exists, its host copy does not.
	VirtualOnly(ctx context.Context, c *Context, vObj T) error
	// Both: both exist; bring the host copy in line and copy status back.
	Both(ctx context.Context, c *Context, vObj, hObj T) error
	// HostOnly: an owned host copy exists, the virtual object does not.
	HostOnly(ctx context.Context, c *Context, hObj T) error
}

// Informers picks a kind's shared informer from a factory.
type Informers func(informers.SharedInformerFactory) cache.SharedIndexInformer

// trigger maps the events of another informer to keys of this syncer, for
// syncers whose work depends on other kinds (a configmap is synced while a
// pod uses it).
type trigger struct {
	informer cache.SharedIndexInformer
	keys     func(obj interface{}) []string
	// subscribe, instead of an informer, hands the syncer's enqueue to
	// another source of keys (customRefs); key "" enqueues every virtual
	// object.
	subscribe func(enqueue func(key string))
}

// controller runs one Syncer: informers on both sides feed one queue of
// virtual keys (namespace/name).
type controller[T metav1.Object] struct {
	name    string
	syncer  Syncer[T]
	virtual cache.SharedIndexInformer
	host    cache.SharedIndexInformer
	queue   workqueue.TypedRateLimitingInterface[string]
	metrics *Metrics
	sctx    *Context
	workers int
}

// workersPerSyncer is how many keys a syncer reconciles at once; the work
// is API round trips, not CPU.
const workersPerSyncer = 16

// Runnable is a registered, constructed syncer controller.
type Runnable interface {
	Name() string
	Run(ctx context.Context) error
}

func newController[T metav1.Object](name string, s Syncer[T], sctx *Context, vf, hf informers.SharedInformerFactory, vi, hi Informers, m *Metrics, triggers []trigger) *controller[T] {
	c := &controller[T]{
		name:    name,
		syncer:  s,
		virtual: vi(vf),
		host:    hi(hf),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "sync-" + name}),
		metrics: m,
		sctx:    sctx,
		workers: workersPerSyncer,
	}
	enqueueVirtual := func(obj interface{}) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(key)
		}
	}
	enqueueHost := func(obj interface{}) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if o, ok := obj.(metav1.Object); ok {
			if ns, n, ok := translate.VirtualKey(o); ok {
				c.queue.Add(cache.NewObjectName(ns, n).String())
			}
		}
	}
	_, _ = c.virtual.AddEventHandler(handleAll(enqueueVirtual))
	_, _ = c.host.AddEventHandler(handleAll(enqueueHost))
	for _, t := range triggers {
		if t.subscribe != nil {
			t.subscribe(func(key string) {
				if key != "" {
					c.queue.Add(key)
					return
				}
				for _, k := range c.virtual.GetStore().ListKeys() {
					c.queue.Add(k)
				}
			})
			continue
		}
		enqueue := func(obj interface{}) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			for _, k := range t.keys(obj) {
				c.queue.Add(k)
			}
		}
		_, _ = t.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    enqueue,
			UpdateFunc: func(o, n interface{}) { enqueue(o); enqueue(n) },
			DeleteFunc: enqueue,
		})
	}
	return c
}

func (c *controller[T]) Name() string { return c.name }

// Run waits for both caches, then works the queue until ctx ends.
func (c *controller[T]) Run(ctx context.Context) error {
	// Host copies whose virtual object went away while we were down.
	enqueueOrphans := func() {
		for _, obj := range c.host.GetStore().List() {
			if o, ok := obj.(metav1.Object); ok {
				if ns, n, ok := translate.VirtualKey(o); ok {
					c.queue.Add(cache.NewObjectName(ns, n).String())
				}
			}
		}
	}
	return runQueue(ctx, c.name, c.queue, c.workers, c.metrics, c.sctx,
		[]cache.InformerSynced{c.virtual.HasSynced, c.host.HasSynced}, enqueueOrphans, c.reconcile)
}

// runQueue waits for synced, calls onSynced (if not nil), then runs
// workers that reconcile the queue's keys, retrying failures with backoff,
// until ctx ends.
func runQueue(ctx context.Context, name string, queue workqueue.TypedRateLimitingInterface[string], workers int,
	m *Metrics, sctx *Context, synced []cache.InformerSynced, onSynced func(), reconcile func(context.Context, string) error) error {
	defer queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		if ctx.Err() != nil {
			return nil // stopped before it started
		}
		return fmt.Errorf("syncer %s: caches did not sync", name)
	}
	if onSynced != nil {
		onSynced()
	}
	process := func() bool {
		key, quit := queue.Get()
		if quit {
			return false
		}
		defer queue.Done(key)
		m.queueDepth.WithLabelValues(name).Set(float64(queue.Len()))
		start := time.Now()
		err := reconcile(ctx, key)
		m.syncDuration.WithLabelValues(name).Observe(time.Since(start).Seconds())
		if err != nil {
			m.syncErrors.WithLabelValues(name).Inc()
			// A conflict is another writer's newer version: the retry
			// reads it, so it is routine. Anything else is shown.
			if apierrors.IsConflict(err) {
				sctx.Log.V(1).Info("sync conflicted, retrying", "syncer", name, "key", key, "err", err)
			} else {
				sctx.Log.Error(err, "sync failed, retrying with backoff", "syncer", name, "key", key, "retries", queue.NumRequeues(key))
			}
			queue.AddRateLimited(key)
			return true
		}
		queue.Forget(key)
		return true
	}
	for i := 0; i < workers; i++ {
		go func() {
			for process() {
			}
		}()
	}
	<-ctx.Done()
	return nil
}

func (c *controller[T]) reconcile(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		utilruntime.HandleError(err)
		return nil
	}
	vObj, vOK, err := getTyped[T](c.virtual.GetIndexer(), key)
	if err != nil {
		return err
	}
	hKey := cache.NewObjectName(c.sctx.Translator.HostNamespace, c.sctx.Translator.HostName(ns, name)).String()
	hObj, hOK, err := getTyped[T](c.host.GetIndexer(), hKey)
	if err != nil {
		return err
	}
	if hOK && !c.sctx.Translator.Owns(hObj) {
		hOK = false
	}
	switch {
	case vOK && hOK:
		return c.syncer.Both(ctx, c.sctx, vObj, hObj)
	case vOK:
		return c.syncer.VirtualOnly(ctx, c.sctx, vObj)
	case hOK:
		return c.syncer.HostOnly(ctx, c.sctx, hObj)
	}
	return nil
}

func getTyped[T metav1.Object](store cache.Store, key string) (T, bool, error) {
	var zero T
	obj, ok, err := store.GetByKey(key)
	if err != nil || !ok {
		return zero, false, err
	}
	t, ok := obj.(T)
	if !ok {
		return zero, false, fmt.Errorf("object %s is %T", key, obj)
	}
	return t, true, nil
}

// handleAll calls f on every add, update (new object) and delete.
func handleAll(f func(obj interface{})) cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{AddFunc: f, UpdateFunc: func(_, n interface{}) { f(n) }, DeleteFunc: f}
}

// metaOf is obj's metadata, also of a deleted object's last state.
func metaOf(obj interface{}) metav1.Object {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	o, _ := obj.(metav1.Object)
	return o
}
