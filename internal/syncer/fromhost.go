package syncer

import (
	"context"
	"fmt"
	"strings"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	nodev1 "k8s.io/api/node/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/sublet-dev/sublet/internal/syncer/kinds"
	"github.com/sublet-dev/sublet/internal/translate"
)

// fromHost copies the host's objects of one cluster-scoped kind (its
// classes: storage, ingress, priority, runtime, CSI drivers) into the
// virtual cluster under the same names, as the host has them: labels,
// annotations (so the default StorageClass follows the host's) and
// everything else but the server's fields, labelled
// translate.LabelFromHost. The virtual cluster has exactly the host's
// objects of the kind that match its selector: any other is deleted (one
// whose host object is gone or no longer matches, one written before the
// syncer ran), except those the virtual API server makes itself. The
// virtual API server refuses tenants' writes to these kinds (see package
// vcluster), so the copies stay as the host has them.
type fromHost[T mirrored[T]] struct {
	// client is the kind's client in the virtual cluster; a kind served
	// by a CRD uses a dynamic one.
	client func(c *Context) writer[T]
	// informer picks the kind's informer from a factory; nil for a kind
	// served by a CRD (served), whose informers are dynamic.
	informer Informers
	// served is the row of a kind served by a CRD (GatewayClasses): its
	// CRD is installed in the virtual cluster before the copies start.
	served kinds.Kind
	// reserved, if set, names objects the virtual API server makes itself
	// (system priority classes), which are never copied.
	reserved func(name string) bool
}

// fromHostController runs one fromHost kind: the host's objects (every
// one, cluster-wide) and the virtual ones feed one queue of names.
type fromHostController[T mirrored[T]] struct {
	name     string
	kind     fromHost[T]
	selector labels.Selector
	virtual  cache.SharedIndexInformer
	host     cache.SharedIndexInformer
	queue    workqueue.TypedRateLimitingInterface[string]
	metrics  *Metrics
	sctx     *Context
}

// registerFromHost is the builder of a fromHost kind.
func registerFromHost[T mirrored[T]](k fromHost[T]) builder {
	return func(name string, sctx *Context, f factories, _ map[string]bool, m *Metrics) Runnable {
		sel := sctx.FromHostSelectors[name]
		if sel == nil {
			sel = labels.Everything()
		}
		c := &fromHostController[T]{
			name: name, kind: k, selector: sel, metrics: m, sctx: sctx,
			queue: workqueue.NewTypedRateLimitingQueueWithConfig(
				workqueue.DefaultTypedControllerRateLimiter[string](),
				workqueue.TypedRateLimitingQueueConfig[string]{Name: "sync-" + name}),
		}
		if k.informer != nil { // before the factories start
			c.watch(k.informer(f.virtual), k.informer(f.hostAll))
		}
		return c
	}
}

// watch makes the virtual and host informers feed the queue.
func (c *fromHostController[T]) watch(virtual, host cache.SharedIndexInformer) {
	c.virtual, c.host = virtual, host
	enqueue := func(obj interface{}) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(key)
		}
	}
	for _, inf := range []cache.SharedIndexInformer{virtual, host} {
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: enqueue, UpdateFunc: func(_, n interface{}) { enqueue(n) }, DeleteFunc: enqueue,
		})
	}
}

func (c *fromHostController[T]) Name() string { return c.name }

func (c *fromHostController[T]) Run(ctx context.Context) error {
	if c.kind.informer == nil {
		// A kind served by a CRD: once the virtual cluster serves it,
		// dynamic informers of both sides.
		if c.sctx.HostDynamic == nil || c.sctx.VirtualDynamic == nil {
			return fmt.Errorf("syncer %s needs dynamic clients of both sides", c.name)
		}
		row, ok := serveCRD(ctx, c.sctx, c.name, c.kind.served, nil)
		if !ok {
			return nil
		}
		c.kind.served = row
		vf := dynamicinformer.NewDynamicSharedInformerFactory(c.sctx.VirtualDynamic, 10*time.Hour)
		hf := dynamicinformer.NewDynamicSharedInformerFactory(c.sctx.HostDynamic, 10*time.Hour)
		c.watch(vf.ForResource(c.kind.served.Host).Informer(), hf.ForResource(c.kind.served.Host).Informer())
		vf.Start(ctx.Done())
		hf.Start(ctx.Done())
		defer vf.Shutdown()
		defer hf.Shutdown()
	}
	return runQueue(ctx, c.name, c.queue, 2, c.metrics, c.sctx,
		[]cache.InformerSynced{c.virtual.HasSynced, c.host.HasSynced}, nil, c.reconcile)
}

func (c *fromHostController[T]) reconcile(ctx context.Context, name string) error {
	if c.kind.reserved != nil && c.kind.reserved(name) {
		return nil
	}
	h, hOK, err := getTyped[T](c.host.GetStore(), name)
	if err != nil {
		return err
	}
	hOK = hOK && c.selector.Matches(labels.Set(h.GetLabels()))
	v, vOK, err := getTyped[T](c.virtual.GetStore(), name)
	if err != nil {
		return err
	}
	client := c.writer()
	switch {
	case hOK && !vOK:
		_, err := client.Create(ctx, virtualCopy(h), metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) { // one the informer has yet to see
			return fmt.Errorf("copy host %s %s: %w", c.name, name, err)
		}
		return nil
	case hOK:
		want := virtualCopy(h)
		if apiequality.Semantic.DeepEqual(want, virtualCopy(v)) {
			return nil
		}
		want.SetResourceVersion(v.GetResourceVersion())
		_, err := client.Update(ctx, want, metav1.UpdateOptions{})
		if apierrors.IsInvalid(err) {
			// An immutable field changed on the host (a StorageClass's
			// parameters): make the copy again.
			return deleteHostCopy(ctx, client, v)
		}
		if err != nil {
			return fmt.Errorf("update %s %s from the host: %w", c.name, name, err)
		}
		return nil
	case vOK && v.GetDeletionTimestamp() == nil:
		return deleteHostCopy(ctx, client, v)
	}
	return nil
}

// writer is the kind's client in the virtual cluster.
func (c *fromHostController[T]) writer() writer[T] {
	if c.kind.informer == nil {
		return any(dynamicWriter{c.sctx.VirtualDynamic.Resource(c.kind.served.Host)}).(writer[T])
	}
	return c.kind.client(c.sctx)
}

// virtualCopy is the virtual copy of host object h: h without the
// server's fields, labelled as a copy.
func virtualCopy[T mirrored[T]](h T) T {
	v := h.DeepCopy()
	v.SetUID("")
	v.SetResourceVersion("")
	v.SetGeneration(0)
	v.SetCreationTimestamp(metav1.Time{})
	v.SetManagedFields(nil)
	v.SetOwnerReferences(nil)
	v.SetFinalizers(nil)
	v.SetDeletionTimestamp(nil)
	v.SetDeletionGracePeriodSeconds(nil)
	l := map[string]string{}
	for k, val := range h.GetLabels() {
		l[k] = val
	}
	l[translate.LabelFromHost] = "true"
	v.SetLabels(l)
	if u, ok := any(v).(*unstructured.Unstructured); ok {
		// A class served by a CRD has a status its controller writes on
		// the host; the virtual copy's is left empty.
		delete(u.Object, "status")
	}
	return v
}

// gatewayClasses is the GatewayClasses row.
var gatewayClasses = func() kinds.Kind {
	for _, k := range kinds.All() {
		if k.Name == kinds.GatewayClasses {
			return k
		}
	}
	panic("no GatewayClasses row")
}()

// fromHostSyncers are the builders of the host's classes.
func fromHostSyncers() map[string]builder {
	return map[string]builder{
		kinds.StorageClasses: registerFromHost(fromHost[*storagev1.StorageClass]{
			client: func(c *Context) writer[*storagev1.StorageClass] { return c.Virtual.StorageV1().StorageClasses() },
			informer: func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
				return f.Storage().V1().StorageClasses().Informer()
			},
		}),
		kinds.IngressClasses: registerFromHost(fromHost[*networkingv1.IngressClass]{
			client: func(c *Context) writer[*networkingv1.IngressClass] {
				return c.Virtual.NetworkingV1().IngressClasses()
			},
			informer: func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
				return f.Networking().V1().IngressClasses().Informer()
			},
		}),
		kinds.PriorityClasses: registerFromHost(fromHost[*schedulingv1.PriorityClass]{
			client: func(c *Context) writer[*schedulingv1.PriorityClass] {
				return c.Virtual.SchedulingV1().PriorityClasses()
			},
			informer: func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
				return f.Scheduling().V1().PriorityClasses().Informer()
			},
			// Every API server makes system-node-critical and
			// system-cluster-critical itself and refuses changes to them.
			reserved: func(name string) bool { return strings.HasPrefix(name, "system-") },
		}),
		kinds.RuntimeClasses: registerFromHost(fromHost[*nodev1.RuntimeClass]{
			client: func(c *Context) writer[*nodev1.RuntimeClass] { return c.Virtual.NodeV1().RuntimeClasses() },
			informer: func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
				return f.Node().V1().RuntimeClasses().Informer()
			},
		}),
		kinds.GatewayClasses: registerFromHost(fromHost[*unstructured.Unstructured]{served: gatewayClasses}),
		kinds.CSIDrivers: registerFromHost(fromHost[*storagev1.CSIDriver]{
			client: func(c *Context) writer[*storagev1.CSIDriver] { return c.Virtual.StorageV1().CSIDrivers() },
			informer: func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
				return f.Storage().V1().CSIDrivers().Informer()
			},
		}),
	}
}
