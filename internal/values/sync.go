package values

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sublet-dev/sublet/internal/isolation"
	"github.com/sublet-dev/sublet/internal/syncer/kinds"
)

// Keys of sync that hold custom resource rows rather than a kind.
const (
	syncToHost   = "toHost"
	syncFromHost = "fromHost"
)

// CustomResource is one custom resource row of values
// (sync.toHost.customResources.CRD or sync.fromHost.customResources.CRD).
type CustomResource struct {
	// Enabled: the row syncs only when true.
	Enabled *bool `json:"enabled,omitempty"`
	// References are the fields of a to-host object naming Secrets or
	// ConfigMaps of its namespace (kinds.Reference).
	References []kinds.Reference `json:"references,omitempty"`
	// Fields pin fields of a to-host object to values (kinds.FieldRule).
	Fields []kinds.FieldRule `json:"fields,omitempty"`
}

// CustomResources are the enabled custom resource rows: to the host, then
// from it, each sorted by CRD name.
func (v *Values) CustomResources() []kinds.Custom {
	var out []kinds.Custom
	for _, dir := range []string{syncToHost, syncFromHost} {
		rows := v.Sync[dir].CustomResources
		for _, crd := range sortedKeys(rows) {
			if r := rows[crd]; r.Enabled != nil && *r.Enabled {
				out = append(out, kinds.Custom{CRD: crd, FromHost: dir == syncFromHost, References: r.References, Fields: r.Fields})
			}
		}
	}
	return out
}

// validateCustom checks sync.toHost and sync.fromHost: only
// customResources, rows of CRDs, a kind in one direction.
func validateCustom(v *Values) field.ErrorList {
	var errs field.ErrorList
	for name, s := range v.Sync {
		p := field.NewPath("sync").Key(name)
		isDir := name == syncToHost || name == syncFromHost
		switch {
		case !isDir && s.CustomResources != nil:
			errs = append(errs, field.Forbidden(p.Child("customResources"), "custom resources go under sync.toHost or sync.fromHost"))
		case isDir && (s.Enabled != nil || s.Selector != nil):
			errs = append(errs, field.Forbidden(p, "sync."+name+" takes only customResources"))
		}
	}
	seen := map[string]string{}
	for _, dir := range []string{syncToHost, syncFromHost} {
		rows := v.Sync[dir].CustomResources
		for _, crd := range sortedKeys(rows) {
			p := field.NewPath("sync", dir, "customResources").Key(crd)
			row := kinds.Custom{CRD: crd, FromHost: dir == syncFromHost, References: rows[crd].References, Fields: rows[crd].Fields}
			if err := row.Validate(); err != nil {
				msg := strings.TrimPrefix(strings.TrimPrefix(err.Error(), row.ValuesPath()), ".")
				errs = append(errs, field.Invalid(p, crd, strings.TrimPrefix(msg, ": ")))
			}
			if other, dup := seen[crd]; dup && enabled(rows[crd]) {
				errs = append(errs, field.Duplicate(p, "also under sync."+other+".customResources; a kind syncs one way"))
			}
			if enabled(rows[crd]) {
				seen[crd] = dir
			}
		}
	}
	return errs
}

func enabled(r CustomResource) bool { return r.Enabled != nil && *r.Enabled }

// CustomLooserThan lists the custom resource rows v turns on that base
// (the templates' values alone) does not turn on as written: a row lets
// the tenant write a host kind, and its references keep those writes to
// the cluster's own objects, so only a host admin adds or changes one.
// Turning a row off is free.
func (v *Values) CustomLooserThan(base *Values) isolation.Loosenings {
	var ls isolation.Loosenings
	have := map[string]kinds.Custom{}
	for _, r := range base.CustomResources() {
		have[r.CRD] = r
	}
	for _, r := range v.CustomResources() {
		b, ok := have[r.CRD]
		switch {
		case !ok || b.FromHost != r.FromHost:
			ls.Add(r.ValuesPath()+".enabled", "true", "not enabled by the templates")
		case !reflect.DeepEqual(slices.Clip(b.References), slices.Clip(r.References)):
			ls.Add(r.ValuesPath()+".references", fmt.Sprintf("%+v", r.References), fmt.Sprintf("%+v", b.References))
		case !reflect.DeepEqual(slices.Clip(b.Fields), slices.Clip(r.Fields)):
			ls.Add(r.ValuesPath()+".fields", fmt.Sprintf("%+v", r.Fields), fmt.Sprintf("%+v", b.Fields))
		}
	}
	return ls
}

// validateSync checks syncer.extraArgs and sync: only kinds the syncer
// knows.
func validateSync(v *Values) field.ErrorList {
	var errs field.ErrorList
	known := map[string]bool{}
	for _, n := range kinds.Names() {
		known[n] = true
	}
	checkResources := func(p *field.Path, a, list string) {
		for _, n := range strings.Split(list, ",") {
			if n = strings.TrimSpace(n); n != "" && !known[n] {
				errs = append(errs, field.NotSupported(p, a, kinds.Names()))
			}
		}
	}
	for i, a := range v.Syncer.ExtraArgs {
		p := field.NewPath("syncer", "extraArgs").Index(i)
		name, value, ok := flagArg(a)
		switch {
		case ok && (name == "disable-sync-resources" || name == "sync"):
			checkResources(p, a, value)
		default:
			errs = append(errs, field.NotSupported(p, a, []string{"--disable-sync-resources=A,B", "--sync=A,B"}))
		}
	}
	fromHost := kinds.FromHostNames()
	for _, name := range sortedKeys(v.Sync) {
		p := field.NewPath("sync").Key(name)
		if name == syncToHost || name == syncFromHost {
			continue // validateCustom
		}
		if !known[name] {
			errs = append(errs, field.NotSupported(p, name, kinds.Names()))
			continue
		}
		if sel := v.Sync[name].Selector; sel != nil {
			if !slices.Contains(fromHost, name) {
				errs = append(errs, field.Forbidden(p.Child("selector"), "only kinds copied from the host ("+strings.Join(fromHost, ", ")+") take a selector"))
			} else if _, err := metav1.LabelSelectorAsSelector(sel); err != nil {
				errs = append(errs, field.Invalid(p.Child("selector"), sel, err.Error()))
			}
		}
	}
	return errs
}

// syncLists are the kinds the values turn on and off (syncer.extraArgs
// first, then sync.KIND.enabled), as --sync and --disable-sync-resources
// carry them.
func (e *Effective) syncLists() (enable, disable []string) {
	for _, a := range e.Values.Syncer.ExtraArgs {
		name, value, _ := flagArg(a)
		if name == "sync" {
			enable = append(enable, value)
		} else {
			disable = append(disable, value)
		}
	}
	for _, name := range sortedKeys(e.Values.Sync) {
		if en := e.Values.Sync[name].Enabled; en != nil {
			if *en {
				enable = append(enable, name)
			} else {
				disable = append(disable, name)
			}
		}
	}
	return enable, disable
}

// Selection is the kinds the syncer syncs with these values, as the
// runtime decides from its flags.
func (e *Effective) Selection() map[string]bool {
	enable, disable := e.syncLists()
	split := func(lists []string) []string {
		var out []string
		for _, l := range lists {
			out = append(out, strings.Split(l, ",")...)
		}
		return out
	}
	sel, err := kinds.Selection(split(enable), split(disable))
	if err != nil {
		return nil // validated: not reached
	}
	kinds.ForParents(sel, len(e.Values.Isolation.Gateways.AllowedParents))
	return sel
}
