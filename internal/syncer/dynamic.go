package syncer

import (
	"context"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
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

// dynamicSides are a dynamic kind's informers: its virtual objects, its
// host copies, and every host object of it (made on first call).
type dynamicSides struct {
	virtual, host cache.SharedIndexInformer
	hostAll       func() cache.SharedIndexInformer
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
		extra, triggers = d.kind.also(dynamicSides{virtual: vf.ForResource(gvr).Informer(), host: hf.ForResource(gvr).Informer(),
			hostAll: func() cache.SharedIndexInformer { return hall.ForResource(gvr).Informer() }})
	}
	ctrl := newController[*unstructured.Unstructured](d.name, d.mirror(), c, nil, nil, pick(vf), pick(hf), d.metrics, triggers)
	vf.Start(ctx.Done())
	hf.Start(ctx.Done())
	hall.Start(ctx.Done())
	defer vf.Shutdown()
	defer hf.Shutdown()
	defer hall.Shutdown()
	return runAll(ctx, c, append(extra, ctrl, followCRD(c, d.name, row)))
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
