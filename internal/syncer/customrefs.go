package syncer

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"

	"github.com/sublet-dev/sublet/internal/syncer/kinds"
)

// References inside a custom object (kinds.Reference) name Secrets and
// ConfigMaps of its namespace by paths the row declares. The host copy
// names their host copies; a path that does not resolve (and is not
// optional) keeps the object off the host, so an untranslated name never
// reaches it. The objects the tenant's references name are copied to the
// host by the configmaps and secrets syncers while a custom object uses
// them (customRefs, as pods use them); the objects the host's controller
// returns are copied back (customreturn.go).

// walkRef calls fn on each string at path steps of obj, replacing it with
// fn's result. resolved is false if a field on the way is missing (a list
// that is there, even empty, resolves); an error is a field of the wrong
// type.
func walkRef(obj map[string]interface{}, steps []kinds.PathStep, fn func(string) string) (resolved bool, err error) {
	cur := obj
	for i, s := range steps {
		val, ok := cur[s.Field]
		if !ok || val == nil {
			return false, nil
		}
		last := i == len(steps)-1
		switch {
		case last:
			str, ok := val.(string)
			if !ok {
				return false, fmt.Errorf("%s is a %T, not a name", s.Field, val)
			}
			cur[s.Field] = fn(str)
			return true, nil
		case s.List:
			list, ok := val.([]interface{})
			if !ok {
				return false, fmt.Errorf("%s is a %T, not a list", s.Field, val)
			}
			for _, e := range list {
				m, ok := e.(map[string]interface{})
				if !ok {
					return false, fmt.Errorf("an element of %s is a %T, not an object", s.Field, e)
				}
				if _, err := walkRef(m, steps[i+1:], fn); err != nil {
					return false, err
				}
			}
			return true, nil
		default:
			m, ok := val.(map[string]interface{})
			if !ok {
				return false, fmt.Errorf("%s is a %T, not an object", s.Field, val)
			}
			cur = m
		}
	}
	return false, nil
}

// restrictReferences translates the references row declares in host copy
// h of v to the host copies' names; false (with what is wrong) if one does
// not resolve or is not a name.
func restrictReferences(c *Context, row kinds.Custom, v, h *unstructured.Unstructured) (restrictions, bool, error) {
	var r restrictions
	for i, f := range row.Fields {
		steps, err := kinds.SplitPath(f.Path)
		if err != nil {
			return nil, false, err // validated with the flag
		}
		var values []string
		resolved, err := walkRef(runtime.DeepCopyJSON(h.Object), steps, func(s string) string { values = append(values, s); return s })
		if !resolved && err == nil {
			values = []string{""}
		}
		for _, val := range values {
			if err != nil || !slices.Contains(f.Values, val) {
				r.add("%s is %q, and %s.fields[%d] allows only %s", f.Path, val, row.ValuesPath(), i, quoteAll(f.Values))
				return r, false, nil
			}
		}
	}
	// A Secret both returned and the tenant's would have two writers on
	// the host: the controller and the syncer.
	returned, inputs := refsOf(row, v, true), refsOf(row, v, false)
	for _, k := range returned {
		if slices.Contains(inputs, k) {
			_, key := splitKindKey(k)
			r.add("%s is named both as a Secret the host returns and as one of the tenant's (%s.references); name two Secrets", key, row.ValuesPath())
			return r, false, nil
		}
	}
	for i, ref := range row.References {
		steps, err := kinds.SplitPath(ref.Path)
		if err != nil {
			return nil, false, err // validated with the flag
		}
		resolved, err := walkRef(h.Object, steps, func(name string) string { return c.Translator.HostName(v.GetNamespace(), name) })
		switch {
		case err != nil:
			r.add("%s (%s.references[%d]): %s", ref.Path, row.ValuesPath(), i, err.Error())
			return r, false, nil
		case !resolved && !ref.Optional:
			r.add("%s does not resolve in this object, and %s.references[%d] names the %s there: set the field, "+
				"or ask the host admin to mark the reference optional", ref.Path, row.ValuesPath(), i, ref.Kind)
			return r, false, nil
		}
	}
	return r, true, nil
}

// refsOf lists what v's references name: "KIND/NAMESPACE/NAME" keys, of
// the tenant's objects (returned false) or the host controller's (true).
func refsOf(row kinds.Custom, v *unstructured.Unstructured, returned bool) []string {
	var out []string
	for _, ref := range row.References {
		steps, err := kinds.SplitPath(ref.Path)
		if err != nil || ref.Returned != returned || !slices.Contains(kinds.CopiedKinds, ref.Kind) {
			continue
		}
		_, _ = walkRef(v.DeepCopy().Object, steps, func(name string) string {
			out = append(out, ref.Kind+"/"+v.GetNamespace()+"/"+name)
			return name
		})
	}
	return out
}

// customRefs knows which Secrets and ConfigMaps custom objects name, for
// the syncers that copy them to the host while they are used. It knows
// once every custom kind with references has told it about all its
// objects (or readyTimeout passed: a kind stuck installing its CRD must
// not keep unused copies forever); until then no host copy is deleted or
// made for a custom object, and then every object is synced again.
type customRefs struct {
	mu     sync.Mutex
	users  map[string]map[string]bool // "KIND/ns/name" → users
	byUser map[string][]string        // user → "KIND/ns/name"
	notify map[string][]func(string)  // KIND → enqueue "ns/name", "" for all
	wait   sync.WaitGroup
	ready  chan struct{}
}

// readyTimeout bounds how long customRefs waits for the custom kinds.
const readyTimeout = 5 * time.Minute

func newCustomRefs() *customRefs {
	return &customRefs{users: map[string]map[string]bool{}, byUser: map[string][]string{}, notify: map[string][]func(string){},
		ready: make(chan struct{})}
}

// expect is called for each kind that will tell; done, once, when it has.
func (r *customRefs) expect() (done func()) {
	r.wait.Add(1)
	return sync.OnceFunc(r.wait.Done)
}

// seal makes r ready once every expected kind is done, or readyTimeout
// passed, or ctx ended; call it after the last expect.
func (r *customRefs) seal(ctx context.Context) {
	all := make(chan struct{})
	go func() { r.wait.Wait(); close(all) }()
	go func() {
		select {
		case <-all:
		case <-time.After(readyTimeout):
		case <-ctx.Done():
			return
		}
		close(r.ready)
		r.mu.Lock()
		var calls []func(string)
		for _, ns := range r.notify {
			calls = append(calls, ns...)
		}
		r.mu.Unlock()
		for _, n := range calls {
			n("") // sync every object again
		}
	}()
}

// subscribe makes changes of the users of kind's objects call enqueue
// with their keys ("" once r is ready: all of them).
func (r *customRefs) subscribe(kind string, enqueue func(key string)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notify[kind] = append(r.notify[kind], enqueue)
}

// set records that user now names refs ("KIND/ns/name").
func (r *customRefs) set(user string, refs []string) {
	r.mu.Lock()
	old := r.byUser[user]
	for _, k := range old {
		delete(r.users[k], user)
		if len(r.users[k]) == 0 {
			delete(r.users, k)
		}
	}
	for _, k := range refs {
		if r.users[k] == nil {
			r.users[k] = map[string]bool{}
		}
		r.users[k][user] = true
	}
	if len(refs) == 0 {
		delete(r.byUser, user)
	} else {
		r.byUser[user] = refs
	}
	var calls []func()
	for _, k := range append(old, refs...) {
		kind, key := splitKindKey(k)
		for _, n := range r.notify[kind] {
			calls = append(calls, func() { n(key) })
		}
	}
	r.mu.Unlock()
	for _, call := range calls {
		call()
	}
}

// used reports whether a custom object names kind's object key
// ("ns/name"); known is false until r is ready.
func (r *customRefs) used(kind, key string) (used, known bool) {
	select {
	case <-r.ready:
	default:
		return false, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.users[kind+"/"+key]) > 0, true
}

// quoteAll is values quoted, "" for unset.
func quoteAll(values []string) string {
	var q []string
	for _, v := range values {
		q = append(q, fmt.Sprintf("%q", v))
	}
	return strings.Join(q, ", ")
}

func splitKindKey(k string) (kind, key string) {
	kind, key, _ = strings.Cut(k, "/")
	return kind, key
}

// tellRefs keeps refs told what the objects of informer (custom kind
// row's virtual ones) name, and calls done once it has told all of them.
func tellRefs(refs *customRefs, row kinds.Custom, informer cache.SharedIndexInformer, done func()) Runnable {
	user := func(obj interface{}) (string, *unstructured.Unstructured) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		u, _ := obj.(*unstructured.Unstructured)
		if u == nil {
			return "", nil
		}
		return row.CRD + "/" + u.GetNamespace() + "/" + u.GetName(), u
	}
	reg, _ := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj interface{}) { k, u := user(obj); refs.set(k, refsOf(row, u, false)) },
		UpdateFunc: func(_, obj interface{}) { k, u := user(obj); refs.set(k, refsOf(row, u, false)) },
		DeleteFunc: func(obj interface{}) { k, _ := user(obj); refs.set(k, nil) },
	})
	return runnableFunc{name: "refs-" + row.CRD, run: func(ctx context.Context) error {
		if reg != nil && cache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
			done()
		}
		<-ctx.Done()
		return nil
	}}
}

// runnableFunc is a Runnable of a function.
type runnableFunc struct {
	name string
	run  func(ctx context.Context) error
}

func (r runnableFunc) Name() string                  { return r.name }
func (r runnableFunc) Run(ctx context.Context) error { return r.run(ctx) }
