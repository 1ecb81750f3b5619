package syncer

import (
	"context"
	"fmt"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	nodev1 "k8s.io/api/node/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
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
	// client is the kind's typed client.
	client func(cs kubernetes.Interface) writer[T]
	// informer picks the kind's informer from a factory.
	informer Informers
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
			virtual: k.informer(f.virtual),
			host:    k.informer(f.hostAll),
			queue: workqueue.NewTypedRateLimitingQueueWithConfig(
				workqueue.DefaultTypedControllerRateLimiter[string](),
				workqueue.TypedRateLimitingQueueConfig[string]{Name: "sync-" + name}),
		}
		enqueue := func(obj interface{}) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				c.queue.Add(key)
			}
		}
		for _, inf := range []cache.SharedIndexInformer{c.virtual, c.host} {
			_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
				AddFunc: enqueue, UpdateFunc: func(_, n interface{}) { enqueue(n) }, DeleteFunc: enqueue,
			})
		}
		return c
	}
}

func (c *fromHostController[T]) Name() string { return c.name }

func (c *fromHostController[T]) Run(ctx context.Context) error {
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
	client := c.kind.client(c.sctx.Virtual)
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
	return v
}

// fromHostSyncers are the builders of the host's classes.
func fromHostSyncers() map[string]builder {
	return map[string]builder{
		kinds.StorageClasses: registerFromHost(fromHost[*storagev1.StorageClass]{
			client: func(cs kubernetes.Interface) writer[*storagev1.StorageClass] { return cs.StorageV1().StorageClasses() },
			informer: func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
				return f.Storage().V1().StorageClasses().Informer()
			},
		}),
		kinds.IngressClasses: registerFromHost(fromHost[*networkingv1.IngressClass]{
			client: func(cs kubernetes.Interface) writer[*networkingv1.IngressClass] {
				return cs.NetworkingV1().IngressClasses()
			},
			informer: func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
				return f.Networking().V1().IngressClasses().Informer()
			},
		}),
		kinds.PriorityClasses: registerFromHost(fromHost[*schedulingv1.PriorityClass]{
			client: func(cs kubernetes.Interface) writer[*schedulingv1.PriorityClass] {
				return cs.SchedulingV1().PriorityClasses()
			},
			informer: func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
				return f.Scheduling().V1().PriorityClasses().Informer()
			},
			// Every API server makes system-node-critical and
			// system-cluster-critical itself and refuses changes to them.
			reserved: func(name string) bool { return strings.HasPrefix(name, "system-") },
		}),
		kinds.RuntimeClasses: registerFromHost(fromHost[*nodev1.RuntimeClass]{
			client: func(cs kubernetes.Interface) writer[*nodev1.RuntimeClass] { return cs.NodeV1().RuntimeClasses() },
			informer: func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
				return f.Node().V1().RuntimeClasses().Informer()
			},
		}),
		kinds.CSIDrivers: registerFromHost(fromHost[*storagev1.CSIDriver]{
			client: func(cs kubernetes.Interface) writer[*storagev1.CSIDriver] { return cs.StorageV1().CSIDrivers() },
			informer: func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
				return f.Storage().V1().CSIDrivers().Informer()
			},
		}),
	}
}
