package syncer

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
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

	"github.com/sublet-dev/sublet/internal/isolation"
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
	// allowed, if set, picks the host objects (by key) copied: a
	// namespaced kind is read in every host namespace.
	allowed func(c *Context, key string) bool
	// status: the copy has the host object's status (a kind served by a
	// CRD, with a status subresource).
	status bool
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
		_, _ = inf.AddEventHandler(handleAll(enqueue))
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
		go func() { _ = followCRD(c.sctx, c.name, row).Run(ctx) }()
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

func (c *fromHostController[T]) reconcile(ctx context.Context, key string) error {
	if c.kind.reserved != nil && c.kind.reserved(key) {
		return nil
	}
	h, hOK, err := getTyped[T](c.host.GetStore(), key)
	if err != nil {
		return err
	}
	hOK = hOK && c.selector.Matches(labels.Set(h.GetLabels())) && (c.kind.allowed == nil || c.kind.allowed(c.sctx, key))
	v, vOK, err := getTyped[T](c.virtual.GetStore(), key)
	if err != nil {
		return err
	}
	ns, _, _ := cache.SplitMetaNamespaceKey(key)
	client := c.writer(ns)
	switch {
	case hOK && !vOK:
		if err := c.ensureNamespace(ctx, ns); err != nil {
			return err
		}
		_, err := client.Create(ctx, virtualCopy(h), metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) { // one the informer has yet to see
			return fmt.Errorf("copy host %s %s: %w", c.name, key, err)
		}
		return nil
	case hOK:
		want := virtualCopy(h)
		if apiequality.Semantic.DeepEqual(want, virtualCopy(v)) {
			return c.copyStatus(ctx, ns, h, v)
		}
		want.SetResourceVersion(v.GetResourceVersion())
		_, err := client.Update(ctx, want, metav1.UpdateOptions{})
		if apierrors.IsInvalid(err) {
			// An immutable field changed on the host (a StorageClass's
			// parameters): make the copy again.
			return deleteHostCopy(ctx, client, v)
		}
		if err != nil {
			return fmt.Errorf("update %s %s from the host: %w", c.name, key, err)
		}
		return nil
	case vOK && v.GetDeletionTimestamp() == nil && (c.kind.allowed == nil || v.GetLabels()[translate.LabelFromHost] == "true"):
		// A kind copied only in part (allowed) deletes only its copies.
		return deleteHostCopy(ctx, client, v)
	}
	return nil
}

// ensureNamespace creates virtual namespace ns of a namespaced kind's copy
// if it is missing.
func (c *fromHostController[T]) ensureNamespace(ctx context.Context, ns string) error {
	if ns == "" {
		return nil
	}
	_, err := c.sctx.Virtual.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s for the host's %s: %w", ns, c.name, err)
	}
	return nil
}

// copyStatus gives copy v the status of host object h, for a kind whose
// status is copied (fromHost.status).
func (c *fromHostController[T]) copyStatus(ctx context.Context, ns string, h, v T) error {
	hu, ok1 := any(h).(*unstructured.Unstructured)
	vu, ok2 := any(v).(*unstructured.Unstructured)
	if !c.kind.status || !ok1 || !ok2 || apiequality.Semantic.DeepEqual(hu.Object["status"], vu.Object["status"]) {
		return nil
	}
	cp := vu.DeepCopy()
	setField(cp, hu, "status")
	if _, err := c.sctx.VirtualDynamic.Resource(c.kind.served.Host).Namespace(ns).UpdateStatus(ctx, cp, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("copy the status of host %s %s: %w", c.name, hu.GetName(), err)
	}
	return nil
}

// writer is the kind's client in the virtual cluster, in namespace ns of
// a namespaced kind.
func (c *fromHostController[T]) writer(ns string) writer[T] {
	if c.kind.informer == nil {
		return any(dynamicWriter{c.sctx.VirtualDynamic.Resource(c.kind.served.Host).Namespace(ns)}).(writer[T])
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

// tableRow is the kinds table's row of name.
func tableRow(name string) kinds.Kind {
	for _, k := range kinds.All() {
		if k.Name == name {
			return k
		}
	}
	panic("no row " + name)
}

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
		// With the controller's status: which implementation accepted it.
		kinds.GatewayClasses: registerFromHost(fromHost[*unstructured.Unstructured]{served: tableRow(kinds.GatewayClasses), status: true}),
		// The Gateways the cluster's routes may attach to, with their
		// status (addresses, listeners), in namespaces of their host names.
		kinds.Gateways: registerFromHost(fromHost[*unstructured.Unstructured]{served: tableRow(kinds.Gateways), status: true,
			allowed: func(c *Context, key string) bool {
				ns, name, _ := cache.SplitMetaNamespaceKey(key)
				vars := isolation.Vars{Name: c.Translator.VCluster, Namespace: c.Translator.HostNamespace}
				return isolation.GatewayAllowed(ns, name, c.Policy.Gateways.AllowedParents, vars)
			}}),
		kinds.CSIDrivers: registerFromHost(fromHost[*storagev1.CSIDriver]{
			client: func(c *Context) writer[*storagev1.CSIDriver] { return c.Virtual.StorageV1().CSIDrivers() },
			informer: func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
				return f.Storage().V1().CSIDrivers().Informer()
			},
		}),
	}
}
