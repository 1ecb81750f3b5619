package syncer

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/sublet-dev/sublet/internal/syncer/kinds"
	"github.com/sublet-dev/sublet/internal/translate"
)

// indexReturned indexes a custom kind's virtual objects by the host names
// of the Secrets they expect back.
const indexReturned = "sublet-returned-secrets"

// returner copies back the Secrets the host's controller writes for a
// custom kind's host copies (kinds.Reference Returned): for each name a
// virtual object's returned reference gives, the host Secret of that
// name's host name becomes a virtual Secret of the name, labelled
// translate.LabelFromHost and owned by the object, so it goes with it. A
// host Secret that is a copy the syncer made is never returned. A virtual
// Secret of the name that is not such a copy is left alone (an event
// says so).
type returner struct {
	name    string
	row     kinds.Custom
	sctx    *Context
	custom  cache.SharedIndexInformer // the kind's virtual objects
	virtual cache.SharedIndexInformer // virtual Secrets
	host    cache.SharedIndexInformer // host Secrets, set by Run
	queue   workqueue.TypedRateLimitingInterface[string]
	metrics *Metrics
}

func newReturner(name string, row kinds.Custom, sctx *Context, custom, virtualSecrets cache.SharedIndexInformer, m *Metrics) *returner {
	r := &returner{name: name + "-returned", row: row, sctx: sctx, custom: custom, virtual: virtualSecrets, metrics: m,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "sync-" + name + "-returned"})}
	_ = custom.AddIndexers(cache.Indexers{indexReturned: func(obj interface{}) ([]string, error) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return nil, nil
		}
		var names []string
		for _, k := range refsOf(row, u, true) {
			_, key := splitKindKey(k)
			ns, n, _ := cache.SplitMetaNamespaceKey(key)
			names = append(names, sctx.Translator.HostName(ns, n))
		}
		return names, nil
	}})
	enqueue := func(obj interface{}) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			r.queue.Add(key)
		}
	}
	_, _ = custom.AddEventHandler(handleAll(enqueue))
	// A tenant's change to a returned copy: sync its owner again.
	_, _ = virtualSecrets.AddEventHandler(handleAll(func(obj interface{}) {
		if o := metaOf(obj); o != nil && o.GetLabels()[translate.LabelFromHost] == "true" {
			for _, ref := range o.GetOwnerReferences() {
				r.queue.Add(o.GetNamespace() + "/" + ref.Name)
			}
		}
	}))
	return r
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

func (r *returner) Name() string { return r.name }

func (r *returner) Run(ctx context.Context) error {
	// Every host Secret of the namespace: the controller's carry no label
	// of ours.
	hf := informers.NewSharedInformerFactoryWithOptions(r.sctx.Host, 10*time.Hour, informers.WithNamespace(r.sctx.Translator.HostNamespace))
	r.host = secretInformer(hf)
	_, _ = r.host.AddEventHandler(handleAll(func(obj interface{}) {
		o := metaOf(obj)
		if o == nil {
			return
		}
		users, _ := r.custom.GetIndexer().ByIndex(indexReturned, o.GetName())
		for _, u := range users {
			if key, err := cache.MetaNamespaceKeyFunc(u); err == nil {
				r.queue.Add(key)
			}
		}
	}))
	hf.Start(ctx.Done())
	defer hf.Shutdown()
	return runQueue(ctx, r.name, r.queue, 4, r.metrics, r.sctx,
		[]cache.InformerSynced{r.custom.HasSynced, r.virtual.HasSynced, r.host.HasSynced}, nil, r.reconcile)
}

func (r *returner) reconcile(ctx context.Context, key string) error {
	obj, ok, err := r.custom.GetStore().GetByKey(key)
	if err != nil || !ok {
		return err // gone: its copies are owned by it
	}
	owner := obj.(*unstructured.Unstructured)
	for _, k := range refsOf(r.row, owner, true) {
		_, vkey := splitKindKey(k)
		ns, name, _ := cache.SplitMetaNamespaceKey(vkey)
		if err := r.returnOne(ctx, owner, ns, name); err != nil {
			return err
		}
	}
	return nil
}

// returnOne makes virtual Secret ns/name follow the host Secret of its host
// name.
func (r *returner) returnOne(ctx context.Context, owner *unstructured.Unstructured, ns, name string) error {
	t := r.sctx.Translator
	h, hOK, err := getTyped[*corev1.Secret](r.host.GetStore(), t.HostNamespace+"/"+t.HostName(ns, name))
	if err != nil {
		return err
	}
	if hOK && h.Labels[translate.LabelCopyOf] != "" {
		hOK = false // a copy the syncer made, not the controller's
	}
	v, vOK, err := getTyped[*corev1.Secret](r.virtual.GetStore(), ns+"/"+name)
	if err != nil {
		return err
	}
	client := r.sctx.Virtual.CoreV1().Secrets(ns)
	switch {
	case vOK && v.Labels[translate.LabelFromHost] != "true":
		if hOK {
			r.sctx.event(owner, corev1.EventTypeWarning, "ReturnBlocked", fmt.Sprintf(
				"the host returned Secret %s, but a Secret of that name exists in the virtual cluster and is not the host's copy; "+
					"it is left alone. Delete it, and the host's Secret is copied in its place", name))
		}
		return nil
	case !hOK:
		if vOK && metav1.IsControlledBy(v, owner) {
			return deleteHostCopy(ctx, client, v) // a UID-guarded delete, as of a host copy
		}
		return nil
	}
	want := returnedCopy(h, owner, ns, name)
	switch {
	case !vOK:
		_, err = client.Create(ctx, want, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil // one the informer has yet to see
		}
	case v.Type != want.Type:
		err = deleteHostCopy(ctx, client, v) // the type is immutable; the delete's event brings it back
	case !apiequality.Semantic.DeepEqual(v.Data, want.Data) || !apiequality.Semantic.DeepEqual(v.Labels, want.Labels) ||
		!apiequality.Semantic.DeepEqual(v.OwnerReferences, want.OwnerReferences):
		want.ResourceVersion = v.ResourceVersion
		_, err = client.Update(ctx, want, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("copy back the host's Secret %s for %s %s: %w", name, r.row.CRD, owner.GetName(), err)
	}
	return nil
}

// returnedCopy is the virtual copy ns/name of host Secret h, controlled by
// owner.
func returnedCopy(h *corev1.Secret, owner *unstructured.Unstructured, ns, name string) *corev1.Secret {
	labels := map[string]string{}
	for k, v := range h.Labels {
		labels[k] = v
	}
	labels[translate.LabelFromHost] = "true"
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels, Annotations: h.Annotations,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(owner, owner.GroupVersionKind())}},
		Type: h.Type, Data: h.Data,
	}
}
