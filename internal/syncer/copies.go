package syncer

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/sublet-dev/sublet/internal/translate"
)

// copyOps are what differs between syncing configmaps and secrets.
type copyOps[T metav1.Object] struct {
	kind string
	// hostCopy builds the host copy of v (names and ownership set).
	hostCopy func(t translate.Translator, v T) T
	// sameData reports whether host copy h already carries want's content.
	sameData func(h, want T) bool
	// client is the kind's typed client in namespace ns of cs.
	client func(cs kubernetes.Interface, ns string) writer[T]
}

// usedCopySyncer keeps a host copy of a configmap or secret exactly while a
// virtual pod (or ingress, for TLS secrets) uses it; unused ones stay
// virtual.
type usedCopySyncer[T metav1.Object] struct {
	users []users
	ops   copyOps[T]
	// refs knows the objects custom objects name (kinds.Reference), of
	// kind refKind.
	refs    *customRefs
	refKind string
	// returned are the Secrets copied back from the host (nil for
	// ConfigMaps).
	returned *returnedSecrets
}

// users finds the virtual objects that use an object: an index of a
// virtual informer, by "namespace/name" of what they use.
type users struct {
	indexer cache.Indexer
	index   string
}

// used reports whether a pod, ingress or custom object uses v; known is
// false while the custom objects' use is not known yet (customRefs). A
// Secret the syncer copied back from the host (a custom object's returned
// one) is never copied to it.
func (s usedCopySyncer[T]) used(v metav1.Object) (used, known bool) {
	key := v.GetNamespace() + "/" + v.GetName()
	if s.returned.has(key) {
		return false, true
	}
	for _, u := range s.users {
		if objs, err := u.indexer.ByIndex(u.index, key); err == nil && len(objs) > 0 {
			return true, true
		}
	}
	if s.refs == nil {
		return false, true
	}
	return s.refs.used(s.refKind, key)
}

func (s usedCopySyncer[T]) VirtualOnly(ctx context.Context, c *Context, v T) error {
	if used, _ := s.used(v); !used || v.GetDeletionTimestamp() != nil {
		return nil
	}
	h := s.ops.hostCopy(c.Translator, v)
	_, err := s.ops.client(c.Host, h.GetNamespace()).Create(ctx, h, metav1.CreateOptions{})
	return c.created(err, v, s.ops.kind, h.GetName())
}

func (s usedCopySyncer[T]) Both(ctx context.Context, c *Context, v, h T) error {
	used, known := s.used(v)
	switch {
	case !known:
		return nil // kept until it is known (synced again then)
	case !used:
		return s.HostOnly(ctx, c, h)
	}
	want := s.ops.hostCopy(c.Translator, v)
	if s.ops.sameData(h, want) && apiequality.Semantic.DeepEqual(h.GetLabels(), want.GetLabels()) &&
		apiequality.Semantic.DeepEqual(h.GetAnnotations(), want.GetAnnotations()) {
		return nil
	}
	want.SetResourceVersion(h.GetResourceVersion())
	want.SetUID(h.GetUID())
	_, err := s.ops.client(c.Host, want.GetNamespace()).Update(ctx, want, metav1.UpdateOptions{})
	return err
}

func (s usedCopySyncer[T]) HostOnly(ctx context.Context, c *Context, h T) error {
	return deleteHostCopy(ctx, s.ops.client(c.Host, h.GetNamespace()), h)
}

// usedBy triggers a sync of the configmaps (or secrets) a pod uses, before
// and after each change of the pod.
func usedBy(f factories, pick func(*corev1.Pod) []reference) trigger {
	return trigger{informer: podInformer(f.virtual), keys: func(obj interface{}) []string {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return nil
		}
		var keys []string
		for _, r := range pick(p) {
			keys = append(keys, p.Namespace+"/"+r.Name)
		}
		return keys
	}}
}

// customUsers triggers a sync of the objects of kind custom objects
// start or stop naming.
func customUsers(f factories, kind string) trigger {
	return trigger{subscribe: func(enqueue func(string)) {
		if f.refs != nil {
			f.refs.subscribe(kind, enqueue)
		}
	}}
}

func configMapInformer(f informers.SharedInformerFactory) cache.SharedIndexInformer {
	return f.Core().V1().ConfigMaps().Informer()
}

func secretInformer(f informers.SharedInformerFactory) cache.SharedIndexInformer {
	return f.Core().V1().Secrets().Informer()
}

func newConfigMapSyncer(f factories) (Syncer[*corev1.ConfigMap], []trigger) {
	ops := copyOps[*corev1.ConfigMap]{
		kind: "configmap",
		hostCopy: func(t translate.Translator, v *corev1.ConfigMap) *corev1.ConfigMap {
			return &corev1.ConfigMap{ObjectMeta: hostMeta(t, v), Data: v.Data, BinaryData: v.BinaryData, Immutable: v.Immutable}
		},
		sameData: func(h, want *corev1.ConfigMap) bool {
			return apiequality.Semantic.DeepEqual(h.Data, want.Data) && apiequality.Semantic.DeepEqual(h.BinaryData, want.BinaryData)
		},
		client: func(cs kubernetes.Interface, ns string) writer[*corev1.ConfigMap] { return cs.CoreV1().ConfigMaps(ns) },
	}
	return usedCopySyncer[*corev1.ConfigMap]{users: []users{{indexedPods(f), indexConfigMapRefs}}, ops: ops, refs: f.refs, refKind: "ConfigMap"},
		[]trigger{usedBy(f, configMapRefs), customUsers(f, "ConfigMap")}
}

func newSecretSyncer(f factories) (Syncer[*corev1.Secret], []trigger) {
	ops := copyOps[*corev1.Secret]{
		kind: "secret",
		hostCopy: func(t translate.Translator, v *corev1.Secret) *corev1.Secret {
			typ := v.Type
			if typ == corev1.SecretTypeServiceAccountToken {
				// The host would fill it with a host token; keep the data.
				typ = corev1.SecretTypeOpaque
			}
			return &corev1.Secret{ObjectMeta: hostMeta(t, v), Data: v.Data, Type: typ, Immutable: v.Immutable}
		},
		sameData: func(h, want *corev1.Secret) bool {
			return apiequality.Semantic.DeepEqual(h.Data, want.Data) && h.Type == want.Type
		},
		client: func(cs kubernetes.Interface, ns string) writer[*corev1.Secret] { return cs.CoreV1().Secrets(ns) },
	}
	u := []users{{indexedPods(f), indexSecretRefs}, {indexedIngresses(f), indexIngressTLSRefs}}
	return usedCopySyncer[*corev1.Secret]{users: u, ops: ops, refs: f.refs, refKind: "Secret", returned: f.returned},
		[]trigger{usedBy(f, secretRefs), tlsSecretsOf(f), customUsers(f, "Secret")}
}
