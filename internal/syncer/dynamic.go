package syncer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/sublet-dev/sublet/internal/syncer/kinds"
	"github.com/sublet-dev/sublet/internal/translate"
)

// A dynamic kind is one the syncer knows only as JSON: its type comes from
// a CustomResourceDefinition on the host (kinds.Kind CRD), which the
// syncer installs in the virtual cluster before it mirrors objects, like
// any built-in kind, through the one mirror. Gateway API routes are such
// rows; what differs per row is how references and policy apply to the
// host copy (restrict).
type dynamicKind struct {
	row kinds.Kind
	// restrict translates what host copy h of v names and applies the
	// cluster's policy to it (see mirror.restrict).
	restrict func(c *Context, v, h *unstructured.Unstructured) (restrictions, bool, error)
	// also, if set, are more controllers over the kind's informers (a
	// custom resource's returned objects), run with the mirror, and
	// triggers of the mirror; called before the informers start.
	also func(sides dynamicSides) ([]Runnable, []trigger)
	// done, if set, is called once the kind's virtual objects are all
	// known to the custom references (or none will be).
	done func()
}

// dynamicSides are a dynamic kind's informers: its virtual objects, and
// every host object of it (made on first call).
type dynamicSides struct {
	virtual cache.SharedIndexInformer
	hostAll func() cache.SharedIndexInformer
}

// ready calls done, if set.
func (k dynamicKind) ready() {
	if k.done != nil {
		k.done()
	}
}

// crdResource is the CustomResourceDefinition resource.
var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// hostCRDRecheck is how often the syncer looks again for a CRD the host
// did not have.
const hostCRDRecheck = 2 * time.Minute

// registerDynamic is the builder of a dynamic kind.
func registerDynamic(k dynamicKind) builder {
	return func(name string, sctx *Context, _ factories, _ map[string]bool, m *Metrics) Runnable {
		return &dynamicController{name: name, kind: k, sctx: sctx, metrics: m}
	}
}

type dynamicController struct {
	name    string
	kind    dynamicKind
	sctx    *Context
	metrics *Metrics
}

func (d *dynamicController) Name() string { return d.name }

// Run installs the kind's CRD in the virtual cluster from the host's (once
// the host has it), then mirrors the kind until ctx ends.
func (d *dynamicController) Run(ctx context.Context) error {
	c := d.sctx
	c.Log.V(2).Info("starting a kind served by a CRD", "syncer", d.name, "crd", d.kind.row.CRD)
	if c.HostDynamic == nil || c.VirtualDynamic == nil {
		return fmt.Errorf("syncer %s needs dynamic clients of both sides", d.name)
	}
	row, ok := serveCRD(ctx, c, d.name, d.kind.row, d.kind.ready)
	if !ok {
		d.kind.ready()
		return nil // ctx ended, or the row does not fit the host's CRD
	}
	d.kind.row = row
	gvr := row.Host
	vf := dynamicinformer.NewDynamicSharedInformerFactory(c.VirtualDynamic, 10*time.Hour)
	hf := dynamicinformer.NewFilteredDynamicSharedInformerFactory(c.HostDynamic, 10*time.Hour, c.Translator.HostNamespace,
		func(o *metav1.ListOptions) { o.LabelSelector = translate.LabelCopyOf + "=" + c.Translator.VCluster })
	pick := func(f dynamicinformer.DynamicSharedInformerFactory) Informers {
		return func(informers.SharedInformerFactory) cache.SharedIndexInformer { return f.ForResource(gvr).Informer() }
	}
	// Every host object of the kind, for kinds that need them (routes'
	// host name claims); no informer, no requests.
	hall := dynamicinformer.NewDynamicSharedInformerFactory(c.HostDynamic, 10*time.Hour)
	var extra []Runnable
	var triggers []trigger
	if d.kind.also != nil {
		extra, triggers = d.kind.also(dynamicSides{virtual: vf.ForResource(gvr).Informer(),
			hostAll: func() cache.SharedIndexInformer { return hall.ForResource(gvr).Informer() }})
	}
	ctrl := newController[*unstructured.Unstructured](d.name, d.mirror(), c, nil, nil, pick(vf), pick(hf), d.metrics, triggers)
	vf.Start(ctx.Done())
	hf.Start(ctx.Done())
	hall.Start(ctx.Done())
	defer vf.Shutdown()
	defer hf.Shutdown()
	defer hall.Shutdown()
	return runAll(ctx, c, append(extra, ctrl))
}

// runAll runs rs until ctx ends, returning the first error.
func runAll(ctx context.Context, c *Context, rs []Runnable) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(rs))
	for _, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Run(ctx); err != nil {
				c.Log.Error(err, "syncer stopped", "syncer", r.Name())
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// mirror is the kind's mirror over dynamic clients: spec to the host,
// status back.
func (d *dynamicController) mirror() mirror[*unstructured.Unstructured] {
	c, gvr := d.sctx, d.kind.row.Host
	m := mirror[*unstructured.Unstructured]{
		kind: d.kind.row.Kind,
		client: func(_ kubernetes.Interface, ns string) writer[*unstructured.Unstructured] {
			return dynamicWriter{c.HostDynamic.Resource(gvr).Namespace(ns)}
		},
		translate: func(t translate.Translator, v *unstructured.Unstructured) *unstructured.Unstructured {
			meta, _ := t.HostMeta(v)
			h := &unstructured.Unstructured{Object: map[string]interface{}{}}
			h.SetAPIVersion(v.GetAPIVersion())
			h.SetKind(v.GetKind())
			h.SetNamespace(meta.Namespace)
			h.SetName(meta.Name)
			h.SetLabels(meta.Labels)
			h.SetAnnotations(meta.Annotations)
			if spec, ok := v.Object["spec"]; ok {
				h.Object["spec"] = runtime.DeepCopyJSONValue(spec)
			}
			return h
		},
		specInto: func(dst, src *unstructured.Unstructured) { setField(dst, src, "spec") },
		status: &mirrorStatus[*unstructured.Unstructured]{
			client: func(_ kubernetes.Interface, ns string) statusWriter[*unstructured.Unstructured] {
				return c.VirtualDynamic.Resource(gvr).Namespace(ns)
			},
			into: func(dst, src *unstructured.Unstructured) { setField(dst, src, "status") },
		},
		restrict: d.kind.restrict,
	}
	if d.kind.row.NoStatus {
		m.status = nil
	}
	return m
}

// setField sets the top-level fields names of dst to copies of src's,
// removing those src has not.
func setField(dst, src *unstructured.Unstructured, names ...string) {
	for _, n := range names {
		if v, ok := src.Object[n]; ok {
			dst.Object[n] = runtime.DeepCopyJSONValue(v)
		} else {
			delete(dst.Object, n)
		}
	}
}

// serveCRD makes the virtual cluster serve row's kind as the host does,
// retrying failures, until it does or ctx ends (false). It returns the row
// as the host's CRD serves it (see servedRow); a row that does not fit
// the CRD is refused with an event, and false.
// lacking, if set, is called when the host does not have the CRD.
func serveCRD(ctx context.Context, c *Context, name string, row kinds.Kind, lacking func()) (kinds.Kind, bool) {
	var refused error
	if err := wait.PollUntilContextCancel(ctx, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		served, err := installCRD(ctx, c, name, row, lacking)
		var r rowRefused
		if errors.As(err, &r) {
			refused = err
			return true, nil
		}
		if err != nil && ctx.Err() == nil {
			c.Log.Error(err, "retrying", "syncer", name)
		}
		row = served
		return err == nil, nil
	}); err != nil {
		return row, false
	}
	if refused != nil {
		c.Log.Info("not syncing a custom resource row", "syncer", name, "reason", refused.Error())
		c.noticeCluster(corev1.EventTypeWarning, "CustomResourceRefused", refused.Error())
		return row, false
	}
	c.Log.Info("serving a kind whose CRD the host has", "syncer", name, "crd", row.CRD, "version", row.Host.Version)
	return row, true
}

// rowRefused is a row that does not fit the host's CRD: nothing is synced
// for it until the values change.
type rowRefused struct{ error }

// servedRow is row as host CRD crd serves it. A row of the table is
// complete; a custom resource row (no version) takes the CRD's storage
// version and Kind, and its scope must fit the direction: a to-host kind
// namespaced (its objects go to the host namespace), a from-host kind
// cluster-scoped.
func servedRow(row kinds.Kind, crd *unstructured.Unstructured) (kinds.Kind, error) {
	if row.Host.Version != "" {
		return row, nil
	}
	scope, _, _ := unstructured.NestedString(crd.Object, "spec", "scope")
	if err := row.FitsScope(scope); err != nil {
		return row, rowRefused{err}
	}
	row.Kind, _, _ = unstructured.NestedString(crd.Object, "spec", "names", "kind")
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	for _, v := range versions {
		if m, ok := v.(map[string]interface{}); ok && m["storage"] == true {
			row.Host.Version, _ = m["name"].(string)
			_, hasStatus, _ := unstructured.NestedMap(m, "subresources", "status")
			row.NoStatus = !hasStatus
		}
	}
	if row.Host.Version == "" || row.Kind == "" {
		return row, fmt.Errorf("the host's CRD %s names no storage version or kind", row.CRD)
	}
	return row, nil
}

// installCRD waits until the host has the kind's CRD (saying once, as an
// event in the virtual cluster, that it does not), then makes the virtual
// cluster serve the same: the host CRD's spec, without a conversion
// webhook (the virtual API server would dial the host's service for it).
func installCRD(ctx context.Context, c *Context, name string, row kinds.Kind, lacking func()) (kinds.Kind, error) {
	host, err := hostCRD(ctx, c, name, row, lacking)
	if err != nil {
		return row, err // ctx ended
	}
	if row, err = servedRow(row, host); err != nil {
		return row, err
	}
	want := &unstructured.Unstructured{Object: map[string]interface{}{"spec": runtime.DeepCopyJSONValue(host.Object["spec"])}}
	want.SetAPIVersion("apiextensions.k8s.io/v1")
	want.SetKind("CustomResourceDefinition")
	want.SetName(row.CRD)
	// The host's labels and annotations: a CRD of a *.k8s.io group needs
	// its api-approved.kubernetes.io annotation.
	labels := map[string]string{translate.LabelFromHost: "true"}
	for k, v := range host.GetLabels() {
		labels[k] = v
	}
	want.SetLabels(labels)
	annotations := host.GetAnnotations()
	delete(annotations, "kubectl.kubernetes.io/last-applied-configuration")
	want.SetAnnotations(annotations)
	unstructured.RemoveNestedField(want.Object, "spec", "conversion")
	crds := c.VirtualDynamic.Resource(crdResource)
	cur, err := crds.Get(ctx, row.CRD, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = crds.Create(ctx, want, metav1.CreateOptions{})
	case err == nil:
		want.SetResourceVersion(cur.GetResourceVersion())
		_, err = crds.Update(ctx, want, metav1.UpdateOptions{})
	}
	if err != nil {
		return row, fmt.Errorf("install the host's CRD %s in the virtual cluster: %w", row.CRD, err)
	}
	return row, wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		cur, err := crds.Get(ctx, row.CRD, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		conds, _, _ := unstructured.NestedSlice(cur.Object, "status", "conditions")
		for _, cond := range conds {
			if m, ok := cond.(map[string]interface{}); ok && m["type"] == "Established" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
}

// hostCRD waits until the host has row's CRD, saying once, as an event in
// the virtual cluster, that it does not.
func hostCRD(ctx context.Context, c *Context, name string, row kinds.Kind, lacking func()) (*unstructured.Unstructured, error) {
	var host *unstructured.Unstructured
	told := false
	err := wait.PollUntilContextCancel(ctx, hostCRDRecheck, true, func(ctx context.Context) (bool, error) {
		crd, err := c.HostDynamic.Resource(crdResource).Get(ctx, row.CRD, metav1.GetOptions{})
		switch {
		case err == nil:
			host = crd
			return true, nil
		case apierrors.IsNotFound(err) || apierrors.IsForbidden(err):
			if !told {
				told = true
				if lacking != nil {
					lacking()
				}
				c.Log.Info("the host does not serve this kind; not synced until it does", "syncer", name, "crd", row.CRD, "reason", err.Error())
				c.noticeCluster(corev1.EventTypeNormal, "HostLacksKind", fmt.Sprintf(
					"the host cluster does not serve %s (%s): its objects are not synced. A host admin installs the CRD "+
						"(for Gateway API kinds, the Gateway API's standard channel), or turn this off with the value %s",
					row.CRD, err.Error(), row.OffValue()))
			}
			return false, nil
		default:
			c.Log.Error(err, "read the host's CRD, retrying", "syncer", name, "crd", row.CRD)
			return false, nil
		}
	})
	return host, err
}

// dynamicWriter is a dynamic client as a writer.
type dynamicWriter struct {
	r dynamic.ResourceInterface
}

func (w dynamicWriter) Create(ctx context.Context, obj *unstructured.Unstructured, opts metav1.CreateOptions) (*unstructured.Unstructured, error) {
	return w.r.Create(ctx, obj, opts)
}

func (w dynamicWriter) Update(ctx context.Context, obj *unstructured.Unstructured, opts metav1.UpdateOptions) (*unstructured.Unstructured, error) {
	return w.r.Update(ctx, obj, opts)
}

func (w dynamicWriter) Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	return w.r.Delete(ctx, name, opts)
}
