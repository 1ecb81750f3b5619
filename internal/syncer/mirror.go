package syncer

import (
	"context"
	"fmt"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/sublet-dev/sublet/internal/translate"
)

// The method shapes client-go's typed clients share (Pods(ns),
// Ingresses(ns), …): each generated client satisfies these for its type.
type (
	deleter interface {
		Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
	}
	writer[T any] interface {
		Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
		Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
		deleter
	}
	statusWriter[T any] interface {
		UpdateStatus(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
	}
)

// deleteHostCopy deletes host copy h, guarded by its UID so a newer object
// under the same name is never deleted in its place.
func deleteHostCopy(ctx context.Context, d deleter, h metav1.Object) error {
	uid := h.GetUID()
	return deleteOwned(d.Delete(ctx, h.GetName(), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}))
}

// mirrored are the API types a mirror syncs.
type mirrored[T any] interface {
	metav1.Object
	DeepCopy() T
}

// mirror syncs a kind whose virtual objects each have one host copy of the
// same kind: the host copy is created from the virtual object, kept in line
// with it (labels, annotations and the synced part of the spec), its status
// copied back if the kind has one, and deleted (with a UID precondition)
// when the virtual object goes. A kind is a mirror plus its translation.
type mirror[T mirrored[T]] struct {
	// kind names the kind in conflict events.
	kind string
	// client is the kind's typed client in namespace ns of cs.
	client func(cs kubernetes.Interface, ns string) writer[T]
	// translate builds the host copy of virtual object v.
	translate func(t translate.Translator, v T) T
	// specInto copies the synced content (spec) of host copy src into dst,
	// a copy of the current host object.
	specInto func(dst, src T)
	// status, if set, copies the host's status back.
	status *mirrorStatus[T]
	// wanted, if set, decides whether virtual object v has a host copy at
	// all; an unwanted one's copy is deleted.
	wanted func(v T) bool
	// deleteWhenTerminating deletes the host copy as soon as the virtual
	// object is being deleted, rather than once it is gone (the virtual
	// object waits for the host's finalizers to finish).
	deleteWhenTerminating bool
	// restrict, if set, applies the virtual cluster's isolation policy to
	// host copy h of v: it removes what may not reach the host and says
	// what (told to the tenant as an event), and reports false if no host
	// copy may exist at all; an error is retried.
	restrict func(c *Context, v, h T) (restrictions, bool, error)
}

// hostCopy is the host copy of v, what was left out of it, and whether it
// may exist.
func (m mirror[T]) hostCopy(c *Context, v T) (T, restrictions, bool, error) {
	h := m.translate(c.Translator, v)
	if m.restrict == nil {
		return h, nil, true, nil
	}
	r, ok, err := m.restrict(c, v, h)
	return h, r, ok, err
}

// tell records r on v if v is a runtime object.
func tell[T any](c *Context, v T, r restrictions, copied bool) {
	if o, ok := any(v).(runtime.Object); ok {
		c.tell(o, r, copied)
	}
}

// mirrorStatus copies a kind's status from host to virtual.
type mirrorStatus[T any] struct {
	client func(cs kubernetes.Interface, ns string) statusWriter[T]
	// into copies the status of src into dst.
	into func(dst, src T)
}

func (m mirror[T]) want(v T) bool { return m.wanted == nil || m.wanted(v) }

func (m mirror[T]) VirtualOnly(ctx context.Context, c *Context, v T) error {
	if v.GetDeletionTimestamp() != nil || !m.want(v) {
		return nil
	}
	h, r, ok, err := m.hostCopy(c, v)
	if err != nil {
		return err
	}
	if !ok {
		tell(c, v, r, false)
		return nil
	}
	_, err = m.client(c.Host, h.GetNamespace()).Create(ctx, h, metav1.CreateOptions{})
	if err == nil {
		tell(c, v, r, true)
	}
	return c.created(err, v, m.kind, h.GetName())
}

func (m mirror[T]) Both(ctx context.Context, c *Context, v, h T) error {
	if !m.want(v) {
		return m.HostOnly(ctx, c, h)
	}
	if v.GetDeletionTimestamp() != nil {
		if m.deleteWhenTerminating {
			return m.HostOnly(ctx, c, h)
		}
		return nil
	}
	want, r, ok, err := m.hostCopy(c, v)
	if err != nil {
		return err
	}
	if !ok {
		tell(c, v, r, false)
		return m.HostOnly(ctx, c, h)
	}
	nh := h.DeepCopy()
	nh.SetLabels(want.GetLabels())
	nh.SetAnnotations(want.GetAnnotations())
	m.specInto(nh, want)
	if !apiequality.Semantic.DeepEqual(nh, h) {
		if _, err := m.client(c.Host, h.GetNamespace()).Update(ctx, nh, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update host %s: %w", m.kind, err)
		}
		tell(c, v, r, true)
	}
	if m.status == nil {
		return nil
	}
	nv := v.DeepCopy()
	m.status.into(nv, h)
	if !apiequality.Semantic.DeepEqual(nv, v) {
		if _, err := m.status.client(c.Virtual, v.GetNamespace()).UpdateStatus(ctx, nv, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("copy %s status: %w", m.kind, err)
		}
	}
	return nil
}

// HostOnly deletes the host copy of a virtual object that is gone; one
// being deleted already is left to finish.
func (m mirror[T]) HostOnly(ctx context.Context, c *Context, h T) error {
	if h.GetDeletionTimestamp() != nil {
		return nil
	}
	return deleteHostCopy(ctx, m.client(c.Host, h.GetNamespace()), h)
}
