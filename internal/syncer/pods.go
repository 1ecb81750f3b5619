package syncer

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilcache "k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/sublet-dev/sublet/internal/translate"
	"github.com/sublet-dev/sublet/internal/translate/pod"
)

// podSyncer runs virtual pods as host pods and copies their status back.
// A host pod is created only once the configmaps and secrets it uses have
// host copies of this virtual cluster, so it never mounts a host object
// that is not the tenant's.
type podSyncer struct {
	virtualConfigMaps, virtualSecrets cache.Indexer
	hostConfigMaps, hostSecrets       cache.Indexer
	virtualServices                   cache.Indexer
	missing                           *missingAtStart
	// bound maps the UID of each virtual pod this syncer bound, for
	// boundMemory, to the resourceVersion it bound it from: an unbound
	// view of that version is the informer's stale copy, and the bound
	// pod is on its way.
	bound *utilcache.Expiring
	// returned are Secrets copied back from host controllers: the host
	// pod uses the host's.
	returned *returnedSecrets
}

// boundMemory is how long the syncer remembers a binding: the virtual
// informer shows the bound pod within milliseconds; after this, a stale
// view costs one binding that conflicts, as it would without the memory.
const boundMemory = time.Minute

func newPodSyncer(f factories) (Syncer[*corev1.Pod], []trigger) {
	pods := indexedPods(f)
	s := podSyncer{
		virtualConfigMaps: configMapInformer(f.virtual).GetIndexer(),
		virtualSecrets:    secretInformer(f.virtual).GetIndexer(),
		hostConfigMaps:    configMapInformer(f.host).GetIndexer(),
		hostSecrets:       secretInformer(f.host).GetIndexer(),
		virtualServices:   serviceInformer(f.virtual).GetIndexer(),
		missing:           &missingAtStart{virtual: pods, host: podInformer(f.host).GetIndexer()},
		returned:          f.returned,
		bound:             utilcache.NewExpiring(),
	}
	// Pods waiting for a configmap or secret: retry when it or its host
	// copy appears.
	users := func(index string, virtual bool) func(obj interface{}) []string {
		return func(obj interface{}) []string {
			o, ok := obj.(metav1.Object)
			if !ok {
				return nil
			}
			ns, name := o.GetNamespace(), o.GetName()
			if !virtual {
				if ns, name, ok = translate.VirtualKey(o); !ok {
					return nil
				}
			}
			keys, _ := pods.IndexKeys(index, ns+"/"+name)
			return keys
		}
	}
	return s, []trigger{
		{informer: configMapInformer(f.virtual), keys: users(indexConfigMapRefs, true)},
		{informer: secretInformer(f.virtual), keys: users(indexSecretRefs, true)},
		{informer: configMapInformer(f.host), keys: users(indexConfigMapRefs, false)},
		{informer: secretInformer(f.host), keys: users(indexSecretRefs, false)},
	}
}

// errWaitingForCopy makes the engine retry a pod whose configmaps or
// secrets are being copied to the host.
var errWaitingForCopy = fmt.Errorf("waiting for host copies of the configmaps and secrets the pod uses")

// usesReady reports whether every configmap and secret v uses is ready on
// the host: "" and nil to create the host pod, what is missing (nil error)
// to wait for the tenant to create it, or an error to retry soon.
func (s podSyncer) usesReady(ctx context.Context, c *Context, v *corev1.Pod) (string, error) {
	cms, secrets := pod.References(v)
	for _, kind := range []struct {
		kind          string
		refs          []reference
		virtual, host cache.Indexer
		// foreign looks up a host object by name; the host informers see
		// only this virtual cluster's objects.
		foreign func(name string) error
	}{
		{"configmap", cms, s.virtualConfigMaps, s.hostConfigMaps, func(name string) error {
			_, err := c.Host.CoreV1().ConfigMaps(c.Translator.HostNamespace).Get(ctx, name, metav1.GetOptions{})
			return err
		}},
		{"secret", secrets, s.virtualSecrets, s.hostSecrets, func(name string) error {
			_, err := c.Host.CoreV1().Secrets(c.Translator.HostNamespace).Get(ctx, name, metav1.GetOptions{})
			return err
		}},
	} {
		for _, r := range kind.refs {
			hostName := c.Translator.HostName(v.Namespace, r.Name)
			_, inVirtual, _ := kind.virtual.GetByKey(v.Namespace + "/" + r.Name)
			if kind.kind == "secret" && s.returned.has(v.Namespace+"/"+r.Name) {
				continue // a custom object's Secret, returned from the host: the host pod uses the host's
			}
			_, onHost, _ := kind.host.GetByKey(c.Translator.HostNamespace + "/" + hostName)
			switch {
			case inVirtual && !onHost:
				return "", errWaitingForCopy
			case !inVirtual && !r.Optional:
				// The tenant has not created it: wait, like a kubelet.
				return fmt.Sprintf("%s %q not found", kind.kind, r.Name), nil
			case !inVirtual && r.Optional:
				// Optional and absent: the host pod must not find some
				// other owner's object under the translated name.
				err := kind.foreign(hostName)
				if err == nil {
					return "", fmt.Errorf("host object %s/%s exists and is not owned by virtual cluster %s", c.Translator.HostNamespace, hostName, c.Translator.VCluster)
				}
				if !apierrors.IsNotFound(err) {
					return "", err
				}
			}
		}
	}
	return "", nil
}

// servicesOf lists the virtual services of namespace ns.
func (s podSyncer) servicesOf(ns string) []*corev1.Service {
	objs, _ := s.virtualServices.ByIndex(cache.NamespaceIndex, ns)
	out := make([]*corev1.Service, 0, len(objs))
	for _, o := range objs {
		if svc, ok := o.(*corev1.Service); ok {
			out = append(out, svc)
		}
	}
	return out
}

func podInformer(f informers.SharedInformerFactory) cache.SharedIndexInformer {
	return f.Core().V1().Pods().Informer()
}

func (s podSyncer) VirtualOnly(ctx context.Context, c *Context, v *corev1.Pod) error {
	s.missing.init(c)
	if v.DeletionTimestamp == nil && ranOnHost(v) && terminal(v) {
		return nil // finished: its record stays, nothing runs again
	}
	if v.DeletionTimestamp != nil || ranOnHost(v) && !s.missing.has(c, v) {
		// Deleting, or it ran on the host before and its host pod was
		// deleted out of band: delete it here too, so its controller
		// replaces it. No kubelet in the virtual cluster confirms deletion.
		return deleteOwned(c.Virtual.CoreV1().Pods(v.Namespace).Delete(ctx, v.Name, metav1.DeleteOptions{
			GracePeriodSeconds: ptr.To[int64](0), Preconditions: &metav1.Preconditions{UID: &v.UID},
		}))
	}
	if len(v.Spec.SchedulingGates) > 0 {
		return nil // like a scheduler: wait until they are removed (an update re-queues the pod)
	}
	missing, err := s.usesReady(ctx, c, v)
	if err != nil {
		return err
	}
	if missing != "" {
		c.event(v, corev1.EventTypeWarning, "FailedMount", "waiting to start the pod: "+missing)
		return nil
	}
	if refs := pod.HostReferences(&v.Spec, c.Policy.Pods); len(refs) > 0 {
		return refusePod(ctx, c, v, ReasonHostReference, "the pod reaches past its own objects: "+strings.Join(refs, "; "))
	}
	h, identity, restricted := hostPod(c, v, s.servicesOf(v.Namespace))
	if c.PodSecurity != nil {
		if msg := c.PodSecurity.Check(&h.ObjectMeta, &h.Spec); msg != "" {
			return refusePod(ctx, c, v, ReasonPodSecurity, msg)
		}
	}
	created, err := c.Host.CoreV1().Pods(h.Namespace).Create(ctx, h, metav1.CreateOptions{})
	if err == nil {
		s.missing.created(v)
	}
	if err != nil {
		if apierrors.IsForbidden(err) {
			// The host refused it (a ResourceQuota, a LimitRange, its own
			// admission): tell the tenant in the host's words, as a
			// ReplicaSet controller would; the engine retries with backoff.
			c.event(v, corev1.EventTypeWarning, "FailedCreate", "the host refused the pod: "+hostMessage(err))
		}
		return c.created(err, v, "pod", h.Name)
	}
	c.Log.V(2).Info("created host pod", "virtual", cache.MetaObjectToName(v), "host", h.Name)
	c.tell(v, restricted, true)
	if identity {
		return ensureIdentitySecret(ctx, c, v, created)
	}
	return nil
}

func (s podSyncer) Both(ctx context.Context, c *Context, v, h *corev1.Pod) error {
	s.missing.init(c)
	if v.DeletionTimestamp != nil {
		if h.DeletionTimestamp == nil {
			return deleteOwned(c.Host.CoreV1().Pods(h.Namespace).Delete(ctx, h.Name, metav1.DeleteOptions{
				GracePeriodSeconds: v.DeletionGracePeriodSeconds, Preconditions: &metav1.Preconditions{UID: &h.UID},
			}))
		}
		return nil
	}
	if string(v.UID) != h.Annotations[translate.AnnotationObjectUID] {
		// The host pod copies an earlier virtual pod of the same name.
		return deleteOwned(c.Host.CoreV1().Pods(h.Namespace).Delete(ctx, h.Name, metav1.DeleteOptions{
			GracePeriodSeconds: ptr.To[int64](0), Preconditions: &metav1.Preconditions{UID: &h.UID},
		}))
	}
	if v.Spec.NodeName == "" && h.Spec.NodeName != "" {
		if rv, ok := s.bound.Get(v.UID); ok && rv == v.ResourceVersion {
			// Bound already, from this very version: a host update (the
			// pod started) overtook the bound pod in the virtual informer,
			// which queues the pod again once it shows it.
			return nil
		}
		err := c.Virtual.CoreV1().Pods(v.Namespace).Bind(ctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: v.Name, Namespace: v.Namespace, UID: v.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: h.Spec.NodeName},
		}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsConflict(err) {
			return fmt.Errorf("bind virtual pod to %s: %w", h.Spec.NodeName, err)
		}
		s.bound.Set(v.UID, v.ResourceVersion, boundMemory)
		// Either the binding changed the pod or a conflict showed it
		// already bound: v is stale, and a status update from it could
		// only conflict. The bound pod comes back through the informer
		// and its status is copied then.
		return nil
	}
	if !apiequality.Semantic.DeepEqual(v.Status, h.Status) {
		nv := v.DeepCopy()
		nv.Status = *h.Status.DeepCopy()
		if _, err := c.Virtual.CoreV1().Pods(v.Namespace).UpdateStatus(ctx, nv, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update virtual pod status: %w", err)
		}
	}
	want, identity, _ := hostPod(c, v, s.servicesOf(v.Namespace))
	if identity {
		// Created with the pod; missing if the syncer stopped in between.
		if _, ok, _ := s.hostSecrets.GetByKey(h.Namespace + "/" + pod.IdentitySecretName(h.Name)); !ok {
			if err := ensureIdentitySecretExists(ctx, c, v, h); err != nil {
				return err
			}
		}
	}
	if !apiequality.Semantic.DeepEqual(h.Labels, want.Labels) || !apiequality.Semantic.DeepEqual(h.Annotations, want.Annotations) || pod.ImagesDiffer(h, want) {
		nh := h.DeepCopy()
		nh.Labels, nh.Annotations = want.Labels, want.Annotations
		for i := range nh.Spec.Containers {
			nh.Spec.Containers[i].Image = want.Spec.Containers[i].Image
		}
		if _, err := c.Host.CoreV1().Pods(h.Namespace).Update(ctx, nh, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update host pod: %w", err)
		}
	}
	return nil
}

func (podSyncer) HostOnly(ctx context.Context, c *Context, h *corev1.Pod) error {
	if h.DeletionTimestamp != nil {
		return nil
	}
	return deleteOwned(c.Host.CoreV1().Pods(h.Namespace).Delete(ctx, h.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &h.UID}}))
}

// ranOnHost reports whether a virtual pod carries status copied from a host
// pod. A nodeName alone does not tell: tenants may set it themselves.
func ranOnHost(v *corev1.Pod) bool {
	return v.Status.HostIP != "" || v.Status.StartTime != nil
}

// hostPod translates a virtual pod into the pod that runs it on the host,
// given the virtual services of its namespace, and reports whether it needs
// an identity secret and what the isolation policy left out. The claim
// templates of ephemeral volumes and the admin's scheduling limits are
// applied here, after pod.Translator.HostPod.
func hostPod(c *Context, v *corev1.Pod, services []*corev1.Service) (*corev1.Pod, bool, restrictions) {
	h, identity, dropped := podTranslator(c).HostPod(v, services)
	var r restrictions
	r.annotations(dropped, "isolation.pods.allowedAnnotations")
	for i := range h.Spec.Volumes {
		if e := h.Spec.Volumes[i].Ephemeral; e != nil && e.VolumeClaimTemplate != nil {
			pod.ClaimTemplate(c.Translator, v.Namespace, h.Spec.Volumes[i].Name, e.VolumeClaimTemplate)
		}
	}
	r = append(r, pod.RestrictScheduling(c.Policy.Pods, &h.Spec)...)
	return h, identity, r
}

// podTranslator translates the pods of c's virtual cluster.
func podTranslator(c *Context) pod.Translator {
	return pod.Translator{Names: c.Translator, Policy: c.Policy.Pods, Runtime: c.Pods}
}

// hostMessage is the host API server's own message in err.
func hostMessage(err error) string {
	if st, ok := err.(apierrors.APIStatus); ok {
		return st.Status().Message
	}
	return err.Error()
}
