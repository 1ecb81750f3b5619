package agent

import (
	"context"
	"encoding/json"
	"fmt"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/syncer/kinds"
)

// customRowsAtDelete are the custom resource rows of vc's effective values
// as they merge now. Values that no longer merge (a template gone, say)
// give none, logged: a cluster is deletable whatever its values.
func (r *reconciler) customRowsAtDelete(ctx context.Context, vc *storagev1.VirtualCluster) []kinds.Custom {
	tmpls, err := r.templates(ctx, vc)
	if err == nil {
		eff, merr := effectiveValues(vc, tmpls)
		if merr == nil {
			return eff.Values.CustomResources()
		}
		err = merr
	}
	r.log.Error(err, "values do not merge; host objects of custom resource rows, if any, are not deleted",
		"virtualcluster", klog.KObj(vc))
	return nil
}

// deleteCustomObjects removes the host objects selector selects in
// namespace of each row synced to the host, at the version the host's CRD
// stores. A CRD gone from the host leaves nothing to delete. Where the
// agent may not read the CRD or delete its objects (the platform chart's
// agent.customResources no longer names it), it logs and goes on, so the
// cluster can still go.
func deleteCustomObjects(ctx context.Context, host kubernetes.Interface, namespace, selector string, rows []kinds.Custom) error {
	for _, row := range rows {
		if row.FromHost {
			continue
		}
		r, ok, err := customStorage(ctx, host, row.CRD)
		if err == nil && ok {
			err = deleteEach(ctx, host.CoreV1().RESTClient(), r, namespace, selector)
		}
		switch {
		case apierrors.IsForbidden(err):
			klog.FromContext(ctx).Error(err, "the agent may not delete the host objects of a custom resource row; they stay "+
				"(agent.customResources.toHost of the platform chart grants it)", "crd", row.CRD, "namespace", namespace, "selector", selector)
		case err != nil && !apierrors.IsNotFound(err):
			return fmt.Errorf("delete the virtual cluster's host %s: %w", row.CRD, err)
		}
	}
	return nil
}

// customStorage is the namespaced resource CRD crd serves, at its storage
// version; ok is false when the host has no such CRD, or it is not
// namespaced.
func customStorage(ctx context.Context, host kubernetes.Interface, crd string) (schema.GroupVersionResource, bool, error) {
	c, ok, err := hostCRD(ctx, host, crd)
	if !ok || err != nil || c.Spec.Scope != apiextensionsv1.NamespaceScoped {
		return schema.GroupVersionResource{}, false, err
	}
	for _, v := range c.Spec.Versions {
		if v.Storage {
			return schema.GroupVersionResource{Group: c.Spec.Group, Version: v.Name, Resource: c.Spec.Names.Plural}, true, nil
		}
	}
	return schema.GroupVersionResource{}, false, nil
}

// hostCRD reads the host's CRD named crd; ok is false when there is none.
func hostCRD(ctx context.Context, host kubernetes.Interface, crd string) (*apiextensionsv1.CustomResourceDefinition, bool, error) {
	raw, err := host.CoreV1().RESTClient().Get().AbsPath("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd).DoRaw(ctx)
	if apierrors.IsNotFound(err) {
		return nil, false, nil
	} else if err != nil {
		return nil, false, err
	}
	var c apiextensionsv1.CustomResourceDefinition
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, false, fmt.Errorf("read CRD %s: %w", crd, err)
	}
	return &c, true, nil
}
