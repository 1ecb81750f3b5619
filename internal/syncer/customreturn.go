package syncer

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/sublet-dev/sublet/internal/syncer/kinds"
	"github.com/sublet-dev/sublet/internal/translate"
)

// indexReturned indexes a custom kind's virtual objects by the host names
// of the Secrets they expect back.
const indexReturned = "sublet-returned-secrets"

// returnedSecrets are the virtual Secrets ("ns/name") the returners keep
// as copies of host controllers' Secrets: the pods syncer lets pods use
// them (the host pod uses the host's), and the secrets syncer never copies
// them to the host. A label a tenant could write would not do.
type returnedSecrets struct {
	mu   sync.Mutex
	keys map[string]bool
}

func (r *returnedSecrets) set(key string, returned bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.keys == nil {
		r.keys = map[string]bool{}
	}
	if returned {
		r.keys[key] = true
	} else {
		delete(r.keys, key)
	}
}

func (r *returnedSecrets) has(key string) bool {
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.keys[key]
}

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
	copies  cache.SharedIndexInformer // the kind's host copies
	virtual cache.SharedIndexInformer // virtual Secrets
	host    cache.SharedIndexInformer // host Secrets, set by Run
	queue   workqueue.TypedRateLimitingInterface[string]
	metrics *Metrics
	// returned records the virtual Secrets returned.
	returned *returnedSecrets
}

func newReturner(name string, row kinds.Custom, sctx *Context, sides dynamicSides, virtualSecrets cache.SharedIndexInformer,
	returned *returnedSecrets, m *Metrics) *returner {
	custom := sides.virtual
	r := &returner{name: name + "-returned", row: row, sctx: sctx, custom: custom, copies: sides.host, virtual: virtualSecrets, metrics: m,
		returned: returned,
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
	owners := func(obj interface{}) {
		if o := metaOf(obj); o != nil && o.GetLabels()[translate.LabelFromHost] == "true" {
			for _, ref := range o.GetOwnerReferences() {
				r.queue.Add(o.GetNamespace() + "/" + ref.Name)
			}
		}
	}
	gone := func(obj interface{}) {
		// A copy gone (with its owner, say) is no longer returned: a
		// Secret the tenant makes under its name is the tenant's.
		if o := metaOf(obj); o != nil {
			returned.set(o.GetNamespace()+"/"+o.GetName(), false)
		}
		owners(obj)
	}
	h := handleAll(owners)
	h.DeleteFunc = gone
	_, _ = virtualSecrets.AddEventHandler(h)
	return r
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
// name, if that is the one the host's controller wrote for owner's host
// copy.
func (r *returner) returnOne(ctx context.Context, owner *unstructured.Unstructured, ns, name string) error {
	key := ns + "/" + name
	h, hOK, err := r.hostSecret(ctx, owner, ns, name)
	if err != nil {
		return err
	}
	v, vOK, err := getTyped[*corev1.Secret](r.virtual.GetStore(), key)
	if err != nil {
		return err
	}
	client := r.sctx.Virtual.CoreV1().Secrets(ns)
	ours := vOK && v.Labels[translate.LabelFromHost] == "true"
	switch {
	case vOK && (!ours || !metav1.IsControlledBy(v, owner) && r.ownerExists(v)):
		if hOK {
			r.sctx.event(owner, corev1.EventTypeWarning, "ReturnBlocked", fmt.Sprintf(
				"the host returned Secret %s, but a Secret of that name exists in the virtual cluster that is not this object's copy "+
					"of it (the tenant's, or another object's); it is left alone. Delete it, and the host's Secret is copied in its place", name))
		}
		return nil
	case !hOK:
		if vOK && metav1.IsControlledBy(v, owner) {
			r.returned.set(key, false)
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
		r.returned.set(key, false)
		err = deleteHostCopy(ctx, client, v) // the type is immutable; the delete's event brings it back
	case !apiequality.Semantic.DeepEqual(v.Data, want.Data) || !apiequality.Semantic.DeepEqual(v.Labels, want.Labels) ||
		!apiequality.Semantic.DeepEqual(v.OwnerReferences, want.OwnerReferences):
		want.ResourceVersion = v.ResourceVersion
		_, err = client.Update(ctx, want, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("copy back the host's Secret %s for %s %s: %w", name, r.row.CRD, owner.GetName(), err)
	}
	r.returned.set(key, true)
	return nil
}

// hostSecret is the host Secret returned as ns/name for owner, if there is
// one the host's controller wrote for owner's host copy: not a copy any
// virtual cluster's syncer made, not returned to another cluster, and
// either returned to this one already or made after owner's host copy
// (creation times are whole seconds: the same second counts as after;
// then labelled as returned to this cluster). A Secret that predates the
// host copy may belong to anyone who could name it (another cluster's
// objects share the namespace): it is not returned, and an event says so.
func (r *returner) hostSecret(ctx context.Context, owner *unstructured.Unstructured, ns, name string) (*corev1.Secret, bool, error) {
	t := r.sctx.Translator
	h, ok, err := getTyped[*corev1.Secret](r.host.GetStore(), t.HostNamespace+"/"+t.HostName(ns, name))
	if err != nil || !ok || h.Labels[translate.LabelCopyOf] != "" {
		return nil, false, err
	}
	switch to := h.Labels[translate.LabelReturnedTo]; {
	case to == t.VCluster:
		return h, true, nil
	case to != "":
		return nil, false, nil
	}
	obj, copied, _ := r.copies.GetStore().GetByKey(t.HostNamespace + "/" + t.HostName(owner.GetNamespace(), owner.GetName()))
	hostCopy, _ := obj.(metav1.Object)
	if !copied || hostCopy == nil {
		return nil, false, nil
	}
	if created := hostCopy.GetCreationTimestamp(); h.CreationTimestamp.Before(&created) {
		r.sctx.event(owner, corev1.EventTypeWarning, "ReturnRefused", fmt.Sprintf(
			"host Secret %s/%s predates this object's host copy, so it is not known to be the one the host's controller wrote for it, "+
				"and it is not copied back; a host admin deletes it if it is stale, and the controller writes it again", t.HostNamespace, h.Name))
		return nil, false, nil
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, translate.LabelReturnedTo, t.VCluster)
	labelled, err := r.sctx.Host.CoreV1().Secrets(t.HostNamespace).Patch(ctx, h.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		return nil, false, fmt.Errorf("label host Secret %s as returned to this virtual cluster: %w", h.Name, err)
	}
	return labelled, true, nil
}

// ownerExists reports whether the custom object controlling virtual
// Secret v still exists.
func (r *returner) ownerExists(v *corev1.Secret) bool {
	ref := metav1.GetControllerOf(v)
	if ref == nil {
		return false
	}
	obj, ok, _ := r.custom.GetStore().GetByKey(v.Namespace + "/" + ref.Name)
	u, _ := obj.(*unstructured.Unstructured)
	return ok && u != nil && u.GetUID() == ref.UID
}

// returnedCopy is the virtual copy ns/name of host Secret h, controlled by
// owner.
func returnedCopy(h *corev1.Secret, owner *unstructured.Unstructured, ns, name string) *corev1.Secret {
	labels := map[string]string{}
	for k, v := range h.Labels {
		labels[k] = v
	}
	delete(labels, translate.LabelReturnedTo)
	labels[translate.LabelFromHost] = "true"
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels, Annotations: h.Annotations,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(owner, owner.GroupVersionKind())}},
		Type: h.Type, Data: h.Data,
	}
}
