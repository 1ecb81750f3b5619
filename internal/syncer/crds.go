package syncer

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/sublet-dev/sublet/internal/syncer/kinds"
	"github.com/sublet-dev/sublet/internal/translate"
)

// The kinds the syncer knows only from the host's CRDs (Gateway API
// routes and classes, custom resource rows) are served in the virtual
// cluster by the same CRD: installed once the host has it, and again
// whenever the host's changes (a new version, new fields), so objects
// keep every field on the way to the host.

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
	return row, installHostCRD(ctx, c, row.CRD, host)
}

// installHostCRD makes the virtual cluster serve host CRD host, and waits
// until it does.
func installHostCRD(ctx context.Context, c *Context, crd string, host *unstructured.Unstructured) error {
	want := &unstructured.Unstructured{Object: map[string]interface{}{"spec": runtime.DeepCopyJSONValue(host.Object["spec"])}}
	want.SetAPIVersion("apiextensions.k8s.io/v1")
	want.SetKind("CustomResourceDefinition")
	want.SetName(crd)
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
	cur, err := crds.Get(ctx, crd, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = crds.Create(ctx, want, metav1.CreateOptions{})
	case err == nil:
		want.SetResourceVersion(cur.GetResourceVersion())
		_, err = crds.Update(ctx, want, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("install the host's CRD %s in the virtual cluster: %w", crd, err)
	}
	return wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		cur, err := crds.Get(ctx, crd, metav1.GetOptions{})
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
				if lacking != nil && apierrors.IsNotFound(err) {
					lacking() // not when forbidden: the rights may be on their way
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

// followCRD reinstalls row's CRD in the virtual cluster whenever the
// host's changes, until ctx ends. It watches that one CRD by name (the
// syncer may read it by name only); the first object it sees (also one
// deleted and made again) is compared with the virtual cluster's. A new
// storage version is served, but the syncer keeps syncing the version it
// started with until it restarts.
func followCRD(c *Context, name string, row kinds.Kind) Runnable {
	return runnableFunc{name: name + "-crd", run: func(ctx context.Context) error {
		follow := func(host *unstructured.Unstructured) {
			if served, err := servedRow(kinds.Kind{CRD: row.CRD, FromHost: row.FromHost, Off: row.Off}, host); err == nil && row.Host.Version != "" &&
				served.Host.Version != "" && served.Host.Version != row.Host.Version {
				c.Log.Info("the host's CRD stores another version now; synced at the old one until the syncer restarts",
					"syncer", name, "crd", row.CRD, "version", row.Host.Version, "host", served.Host.Version)
			}
			// Retried until it takes: the next change would retry too late.
			_ = wait.PollUntilContextCancel(ctx, 5*time.Second, true, func(ctx context.Context) (bool, error) {
				err := installHostCRD(ctx, c, row.CRD, host)
				if err != nil && ctx.Err() == nil {
					c.Log.Error(err, "follow the host's CRD, retrying", "syncer", name, "crd", row.CRD)
				}
				return err == nil, nil
			})
			c.Log.Info("followed a change of the host's CRD", "syncer", name, "crd", row.CRD)
		}
		inf := dynamicinformer.NewFilteredDynamicInformer(c.HostDynamic, crdResource, "", 10*time.Hour, cache.Indexers{},
			func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name=" + row.CRD })
		_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(obj interface{}) {
				if host, _ := obj.(*unstructured.Unstructured); host != nil && !servedAsHost(ctx, c, host) {
					follow(host)
				}
			},
			UpdateFunc: func(o, n interface{}) {
				old, _ := o.(*unstructured.Unstructured)
				host, _ := n.(*unstructured.Unstructured)
				if old == nil || host == nil || apiequality.Semantic.DeepEqual(old.Object["spec"], host.Object["spec"]) &&
					apiequality.Semantic.DeepEqual(old.GetLabels(), host.GetLabels()) && apiequality.Semantic.DeepEqual(old.GetAnnotations(), host.GetAnnotations()) {
					return
				}
				follow(host)
			},
		})
		inf.Informer().Run(ctx.Done())
		return nil
	}}
}

// servedAsHost reports whether the virtual cluster's CRD has host CRD
// host's spec (but the conversion webhook, never installed).
func servedAsHost(ctx context.Context, c *Context, host *unstructured.Unstructured) bool {
	cur, err := c.VirtualDynamic.Resource(crdResource).Get(ctx, host.GetName(), metav1.GetOptions{})
	if err != nil {
		return false
	}
	want, have := host.DeepCopy(), cur.DeepCopy()
	for _, u := range []*unstructured.Unstructured{want, have} {
		unstructured.RemoveNestedField(u.Object, "spec", "conversion")
	}
	return apiequality.Semantic.DeepEqual(want.Object["spec"], have.Object["spec"])
}
