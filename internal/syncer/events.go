package syncer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/sublet-dev/sublet/internal/syncer/kinds"
	"github.com/sublet-dev/sublet/internal/translate"
)

// eventSyncer copies host events about this virtual cluster's host objects
// into the virtual cluster, about the virtual objects (so `kubectl get
// events` shows scheduling, pulls and the like). It writes nothing on the
// host.
type eventSyncer struct {
	sctx     *Context
	events   cache.SharedIndexInformer
	eventsF  informers.SharedInformerFactory
	involved map[string]cache.SharedIndexInformer // by kind: this cluster's host objects
	queue    workqueue.TypedRateLimitingInterface[string]
	metrics  *Metrics
}

func newEventSyncer(_ string, sctx *Context, f factories, selected map[string]bool, m *Metrics) Runnable {
	// Events carry no owner label: a factory of their own, namespace only.
	eventsF := informers.NewSharedInformerFactoryWithOptions(sctx.Host, 10*time.Hour, informers.WithNamespace(sctx.Translator.HostNamespace))
	s := &eventSyncer{
		sctx:     sctx,
		events:   eventsF.Core().V1().Events().Informer(),
		eventsF:  eventsF,
		involved: involvedInformers(sctx.Log, f.host, selected),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "sync-events"}),
		metrics: m,
	}
	enqueue := func(obj interface{}) {
		if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			s.queue.Add(key)
		}
	}
	_, _ = s.events.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, n interface{}) { enqueue(n) },
	})
	return s
}

// involvedInformers are the host informers, by kind, of the selected kinds
// whose host events are retold (package kinds says which). A kind that is
// not synced has no host objects of this cluster's to be about, and its
// informer would need rights the syncer may not have.
func involvedInformers(log klog.Logger, hf informers.SharedInformerFactory, selected map[string]bool) map[string]cache.SharedIndexInformer {
	out := map[string]cache.SharedIndexInformer{}
	for _, k := range kinds.All() {
		if !k.HostEvents || !selected[k.Name] {
			continue
		}
		inf, err := hf.ForResource(k.Host)
		if err != nil {
			// Every row names a built-in resource; this is a bug in the table.
			log.Error(err, "no informer for a kind whose events are retold", "kind", k.Name)
			continue
		}
		out[k.Kind] = inf.Informer()
	}
	return out
}

func (s *eventSyncer) Name() string { return "events" }

func (s *eventSyncer) Run(ctx context.Context) error {
	s.eventsF.Start(ctx.Done())
	defer s.eventsF.Shutdown()
	synced := []cache.InformerSynced{s.events.HasSynced}
	for _, inf := range s.involved {
		synced = append(synced, inf.HasSynced)
	}
	return runQueue(ctx, "events", s.queue, 4, s.metrics, s.sctx, synced, nil, s.reconcile)
}

func (s *eventSyncer) reconcile(ctx context.Context, key string) error {
	obj, ok, err := s.events.GetStore().GetByKey(key)
	if err != nil || !ok {
		return err
	}
	h := obj.(*corev1.Event)
	inf, ok := s.involved[h.InvolvedObject.Kind]
	if !ok || h.InvolvedObject.Namespace != s.sctx.Translator.HostNamespace {
		return nil
	}
	hObj, ok, _ := inf.GetStore().GetByKey(h.InvolvedObject.Namespace + "/" + h.InvolvedObject.Name)
	if !ok {
		return nil // not this virtual cluster's object, or gone
	}
	owner := hObj.(metav1.Object)
	if !s.sctx.Translator.Owns(owner) {
		return nil
	}
	vNS, vName, ok := translate.VirtualKey(owner)
	if !ok {
		return nil
	}
	want := virtualEvent(h, vNS, vName, types.UID(owner.GetAnnotations()[translate.AnnotationObjectUID]))
	events := s.sctx.Virtual.CoreV1().Events(vNS)
	// Most host events are new ones, written once: create without a
	// look first. A repeated event, or one retold before a restart, is
	// brought up to date with a patch, again without a read.
	if h.Count <= 1 && h.Series == nil {
		_, err := events.Create(ctx, want, metav1.CreateOptions{})
		switch {
		case err == nil:
			return nil
		case apierrors.IsNotFound(err):
			return nil // the virtual namespace is gone
		case !apierrors.IsAlreadyExists(err):
			return err
		}
	}
	patch, err := json.Marshal(map[string]any{
		"count": want.Count, "message": want.Message, "lastTimestamp": want.LastTimestamp, "series": want.Series,
	})
	if err != nil {
		return err
	}
	_, err = events.Patch(ctx, want.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		_, err = events.Create(ctx, want, metav1.CreateOptions{})
		if apierrors.IsNotFound(err) {
			return nil // the virtual namespace is gone
		}
	}
	return err
}

// virtualEvent is host event h retold about virtual object vNS/vName. Its
// name derives from the host event's, so restarts update instead of
// duplicating.
func virtualEvent(h *corev1.Event, vNS, vName string, vUID types.UID) *corev1.Event {
	sum := sha256.Sum256([]byte(h.Namespace + "/" + h.Name))
	v := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s.%s", vName, hex.EncodeToString(sum[:])[:16]), Namespace: vNS},
		InvolvedObject: corev1.ObjectReference{
			Kind: h.InvolvedObject.Kind, APIVersion: h.InvolvedObject.APIVersion,
			Namespace: vNS, Name: vName, UID: vUID, FieldPath: h.InvolvedObject.FieldPath,
		},
		Reason: h.Reason, Message: h.Message, Type: h.Type, Count: h.Count,
		Source: h.Source, FirstTimestamp: h.FirstTimestamp, LastTimestamp: h.LastTimestamp,
		EventTime: h.EventTime, Series: h.Series, Action: h.Action,
		ReportingController: h.ReportingController, ReportingInstance: h.ReportingInstance,
	}
	if v.FirstTimestamp.IsZero() && !v.EventTime.IsZero() {
		v.FirstTimestamp = metav1.NewTime(v.EventTime.Time)
	}
	if v.LastTimestamp.IsZero() {
		v.LastTimestamp = v.FirstTimestamp
	}
	return v
}
