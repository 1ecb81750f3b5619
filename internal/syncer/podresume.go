package syncer

import (
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// missingAtStart remembers the virtual pods that had run on the host but
// whose host pod was gone when this syncer started: the cluster slept
// (sleep mode deletes the host pods once the syncer has stopped) or the
// host lost them while the syncer was down. Those are started on the host
// again, as a restarted node would; a host pod deleted while the syncer
// watches still deletes its virtual pod, so that its controller replaces
// it.
type missingAtStart struct {
	virtual, host cache.Indexer
	once          sync.Once
	mu            sync.Mutex
	uids          map[types.UID]bool
}

// init scans once, at the first reconcile of any pod: the engine
// reconciles every virtual pod as soon as its caches synced, so that is
// when the syncer starts, before any host pod can vanish while it watches.
func (m *missingAtStart) init(c *Context) {
	m.once.Do(func() { m.uids = m.scan(c) })
}

// has reports whether v's host pod was missing at start and has not been
// created again since.
func (m *missingAtStart) has(c *Context, v *corev1.Pod) bool {
	m.init(c)
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.uids[v.UID]
}

// created forgets v once its host pod exists again: a host pod created
// again and then lost is treated as any other. Until then every retry
// (waiting for a configmap's copy, a host refusal) still starts it again
// rather than deleting the virtual pod.
func (m *missingAtStart) created(v *corev1.Pod) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.uids, v.UID)
}

// scan lists, once both caches synced (the first reconcile comes after),
// the virtual pods that ran on the host and have no host pod.
func (m *missingAtStart) scan(c *Context) map[types.UID]bool {
	out := map[types.UID]bool{}
	for _, obj := range m.virtual.List() {
		v, ok := obj.(*corev1.Pod)
		if !ok || v.DeletionTimestamp != nil || !ranOnHost(v) || terminal(v) {
			continue
		}
		key := cache.NewObjectName(c.Translator.HostNamespace, c.Translator.HostName(v.Namespace, v.Name)).String()
		if _, exists, _ := m.host.GetByKey(key); !exists {
			out[v.UID] = true
		}
	}
	return out
}

// terminal reports whether a pod has finished: it is not started again.
func terminal(v *corev1.Pod) bool {
	return v.Status.Phase == corev1.PodSucceeded || v.Status.Phase == corev1.PodFailed
}
