package syncer

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/sublet-dev/sublet/internal/translate"
)

// podSyncer runs virtual pods as host pods and copies their status back.
type podSyncer struct{}

func podInformer(f informers.SharedInformerFactory) cache.SharedIndexInformer {
	return f.Core().V1().Pods().Informer()
}

func (podSyncer) ToHost(ctx context.Context, c *Context, v *corev1.Pod) error {
	if v.DeletionTimestamp != nil || v.Spec.NodeName != "" {
		// Deleting, or it ran on the host before and its host pod was
		// deleted out of band: delete it here too, so its controller
		// replaces it. No kubelet in the virtual cluster confirms deletion.
		err := c.Virtual.CoreV1().Pods(v.Namespace).Delete(ctx, v.Name, metav1.DeleteOptions{
			GracePeriodSeconds: ptr.To[int64](0), Preconditions: &metav1.Preconditions{UID: &v.UID},
		})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil
		}
		return err
	}
	h := hostPod(c.Translator, v)
	_, err := c.Host.CoreV1().Pods(h.Namespace).Create(ctx, h, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("host pod %s/%s exists and is not owned by virtual cluster %s", h.Namespace, h.Name, c.Translator.VCluster)
	}
	if err == nil {
		c.Log.V(2).Info("created host pod", "virtual", cache.MetaObjectToName(v), "host", h.Name)
	}
	return err
}

func (podSyncer) Both(ctx context.Context, c *Context, v, h *corev1.Pod) error {
	if v.DeletionTimestamp != nil {
		if h.DeletionTimestamp == nil {
			return c.Host.CoreV1().Pods(h.Namespace).Delete(ctx, h.Name, metav1.DeleteOptions{
				GracePeriodSeconds: v.DeletionGracePeriodSeconds, Preconditions: &metav1.Preconditions{UID: &h.UID},
			})
		}
		return nil
	}
	if string(v.UID) != h.Annotations[translate.AnnotationObjectUID] {
		// The host pod copies an earlier virtual pod of the same name.
		return c.Host.CoreV1().Pods(h.Namespace).Delete(ctx, h.Name, metav1.DeleteOptions{
			GracePeriodSeconds: ptr.To[int64](0), Preconditions: &metav1.Preconditions{UID: &h.UID},
		})
	}
	if v.Spec.NodeName == "" && h.Spec.NodeName != "" {
		err := c.Virtual.CoreV1().Pods(v.Namespace).Bind(ctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: v.Name, Namespace: v.Namespace, UID: v.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: h.Spec.NodeName},
		}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsConflict(err) {
			return fmt.Errorf("bind virtual pod to %s: %w", h.Spec.NodeName, err)
		}
	}
	if !apiequality.Semantic.DeepEqual(v.Status, h.Status) {
		nv := v.DeepCopy()
		nv.Status = *h.Status.DeepCopy()
		if _, err := c.Virtual.CoreV1().Pods(v.Namespace).UpdateStatus(ctx, nv, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update virtual pod status: %w", err)
		}
	}
	want := hostPod(c.Translator, v)
	if !apiequality.Semantic.DeepEqual(h.Labels, want.Labels) || !apiequality.Semantic.DeepEqual(h.Annotations, want.Annotations) || imagesDiffer(h, want) {
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

func (podSyncer) ToVirtual(ctx context.Context, c *Context, h *corev1.Pod) error {
	if h.DeletionTimestamp != nil {
		return nil
	}
	err := c.Host.CoreV1().Pods(h.Namespace).Delete(ctx, h.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &h.UID}})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func imagesDiffer(a, b *corev1.Pod) bool {
	if len(a.Spec.Containers) != len(b.Spec.Containers) {
		return false
	}
	for i := range a.Spec.Containers {
		if a.Spec.Containers[i].Image != b.Spec.Containers[i].Image {
			return true
		}
	}
	return false
}

// hostPod translates a virtual pod into the pod that runs it on the host.
func hostPod(t translate.Translator, v *corev1.Pod) *corev1.Pod {
	h := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        t.HostName(v.Namespace, v.Name),
			Namespace:   t.HostNamespace,
			Labels:      t.HostLabels(v.Namespace, v.Labels),
			Annotations: map[string]string{},
		},
		Spec: *v.Spec.DeepCopy(),
	}
	for k, val := range v.Annotations {
		h.Annotations[k] = val
	}
	for k, val := range translate.OwnerAnnotations(v) {
		h.Annotations[k] = val
	}
	s := &h.Spec
	// The host schedules; the virtual cluster's service accounts, priority
	// classes and scheduler mean nothing there.
	s.NodeName = ""
	s.SchedulerName = ""
	s.PriorityClassName = ""
	s.Priority = nil
	s.ServiceAccountName = ""
	s.DeprecatedServiceAccount = ""
	s.AutomountServiceAccountToken = ptr.To(false)
	if s.Hostname == "" {
		s.Hostname = truncateLabel(v.Name)
	}
	s.Subdomain = ""

	// Volumes the virtual service-account admission added, and references
	// to virtual objects translated to their host copies.
	dropped := map[string]bool{}
	var volumes []corev1.Volume
	for _, vol := range s.Volumes {
		if vol.Projected != nil && strings.HasPrefix(vol.Name, "kube-api-access-") {
			dropped[vol.Name] = true
			continue
		}
		translateVolume(t, v.Namespace, &vol)
		volumes = append(volumes, vol)
	}
	s.Volumes = volumes
	for _, list := range [][]corev1.Container{s.InitContainers, s.Containers} {
		for i := range list {
			translateContainer(t, v.Namespace, &list[i], dropped)
		}
	}
	for i := range s.EphemeralContainers {
		translateContainer(t, v.Namespace, (*corev1.Container)(&s.EphemeralContainers[i].EphemeralContainerCommon), dropped)
	}
	for i := range s.ImagePullSecrets {
		s.ImagePullSecrets[i].Name = t.HostName(v.Namespace, s.ImagePullSecrets[i].Name)
	}
	for i := range s.TopologySpreadConstraints {
		s.TopologySpreadConstraints[i].LabelSelector = t.HostLabelSelector(v.Namespace, s.TopologySpreadConstraints[i].LabelSelector)
	}
	if a := s.Affinity; a != nil {
		if a.PodAffinity != nil {
			translateAffinityTerms(t, v.Namespace, a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution, a.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution)
		}
		if a.PodAntiAffinity != nil {
			translateAffinityTerms(t, v.Namespace, a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution, a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution)
		}
	}
	return h
}

func translateAffinityTerms(t translate.Translator, vNamespace string, required []corev1.PodAffinityTerm, preferred []corev1.WeightedPodAffinityTerm) {
	fix := func(term *corev1.PodAffinityTerm) {
		term.LabelSelector = t.HostLabelSelector(vNamespace, term.LabelSelector)
		term.Namespaces = nil
		term.NamespaceSelector = nil
	}
	for i := range required {
		fix(&required[i])
	}
	for i := range preferred {
		fix(&preferred[i].PodAffinityTerm)
	}
}

func translateVolume(t translate.Translator, vNamespace string, vol *corev1.Volume) {
	switch {
	case vol.ConfigMap != nil:
		vol.ConfigMap.Name = t.HostName(vNamespace, vol.ConfigMap.Name)
	case vol.Secret != nil:
		vol.Secret.SecretName = t.HostName(vNamespace, vol.Secret.SecretName)
	case vol.PersistentVolumeClaim != nil:
		vol.PersistentVolumeClaim.ClaimName = t.HostName(vNamespace, vol.PersistentVolumeClaim.ClaimName)
	case vol.Projected != nil:
		for i := range vol.Projected.Sources {
			src := &vol.Projected.Sources[i]
			if src.ConfigMap != nil {
				src.ConfigMap.Name = t.HostName(vNamespace, src.ConfigMap.Name)
			}
			if src.Secret != nil {
				src.Secret.Name = t.HostName(vNamespace, src.Secret.Name)
			}
		}
	}
}

func translateContainer(t translate.Translator, vNamespace string, c *corev1.Container, droppedVolumes map[string]bool) {
	var mounts []corev1.VolumeMount
	for _, m := range c.VolumeMounts {
		if !droppedVolumes[m.Name] {
			mounts = append(mounts, m)
		}
	}
	c.VolumeMounts = mounts
	for i := range c.Env {
		if from := c.Env[i].ValueFrom; from != nil {
			if from.ConfigMapKeyRef != nil {
				from.ConfigMapKeyRef.Name = t.HostName(vNamespace, from.ConfigMapKeyRef.Name)
			}
			if from.SecretKeyRef != nil {
				from.SecretKeyRef.Name = t.HostName(vNamespace, from.SecretKeyRef.Name)
			}
		}
	}
	for i := range c.EnvFrom {
		if c.EnvFrom[i].ConfigMapRef != nil {
			c.EnvFrom[i].ConfigMapRef.Name = t.HostName(vNamespace, c.EnvFrom[i].ConfigMapRef.Name)
		}
		if c.EnvFrom[i].SecretRef != nil {
			c.EnvFrom[i].SecretRef.Name = t.HostName(vNamespace, c.EnvFrom[i].SecretRef.Name)
		}
	}
}

func truncateLabel(s string) string {
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "-.")
	}
	return strings.ReplaceAll(s, ".", "-")
}
