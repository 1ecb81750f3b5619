package syncer

import (
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"

	"github.com/sublet-dev/sublet/internal/syncer/kinds"
)

// customBuilder is the builder of a custom resource row of values
// (kinds.Custom): rows from the host are the host's classes' controller
// over a dynamic kind; rows to the host are the one mirror of dynamic
// kinds, with the row's references translated, the tenant's objects they
// name copied to the host while used, and the Secrets the host's
// controller returns copied back.
func customBuilder(row kinds.Custom) builder {
	if row.FromHost {
		return registerFromHost(fromHost[*unstructured.Unstructured]{served: row.Row()})
	}
	return func(name string, sctx *Context, f factories, _ map[string]bool, m *Metrics) Runnable {
		k := dynamicKind{row: row.Row(), restrict: func(c *Context, v, h *unstructured.Unstructured) (restrictions, bool, error) {
			return restrictReferences(c, row, v, h)
		}}
		var inputs, returned bool
		for _, r := range row.References {
			inputs = inputs || !r.Returned && slices.Contains(kinds.CopiedKinds, r.Kind)
			returned = returned || r.Returned
		}
		if inputs {
			k.done = f.refs.expect()
		}
		var virtualSecrets cache.SharedIndexInformer
		if returned { // before the factory starts
			virtualSecrets = secretInformer(f.virtual)
		}
		k.also = func(sides dynamicSides) ([]Runnable, []trigger) {
			var out []Runnable
			if inputs {
				out = append(out, tellRefs(f.refs, row, sides.virtual, k.done))
			}
			if returned {
				out = append(out, newReturner(name, row, sctx, sides, virtualSecrets, f.returned, m))
			}
			return out, nil
		}
		return &dynamicController{name: name, kind: k, sctx: sctx, metrics: m}
	}
}
