package syncer

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sublet-dev/sublet/internal/translate"
)

// resumedPodCase: a pod that ran on the host, whose host pod was gone when
// the syncer started (the cluster slept), and which must wait for a
// configmap first, is started again once it can: the wait does not make
// the syncer take it for a pod the host lost while it watched.
func resumedPodCase() stateCase {
	return stateCase{
		name: "pod-resumed-after-waiting",
		virtual: func(ctx context.Context, e stateEnv) error {
			p, err := e.virtual.CoreV1().Pods(e.ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "sleeper"}, Spec: podSpec(func(s *corev1.PodSpec) {
				s.Volumes = []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: "later"}}}}}
			})}, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			now := metav1.Now()
			p.Status = corev1.PodStatus{Phase: corev1.PodRunning, HostIP: "10.0.0.9", StartTime: &now}
			_, err = e.virtual.CoreV1().Pods(e.ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
			return err
		},
		check: func(ctx context.Context, e stateEnv) string {
			v, err := e.virtual.CoreV1().Pods(e.ns).Get(ctx, "sleeper", metav1.GetOptions{})
			if err != nil {
				return "virtual pod: " + err.Error()
			}
			if _, err := e.virtual.CoreV1().ConfigMaps(e.ns).Get(ctx, "later", metav1.GetOptions{}); err != nil {
				// The syncer has seen the pod wait before the configmap comes.
				events, _ := e.virtual.CoreV1().Events(e.ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=sleeper,reason=FailedMount"})
				if events == nil || len(events.Items) == 0 {
					return "waiting for the pod to wait for its configmap"
				}
				if _, err := e.virtual.CoreV1().ConfigMaps(e.ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "later"}}, metav1.CreateOptions{}); err != nil {
					return err.Error()
				}
				return "configmap created"
			}
			h, err := e.host.CoreV1().Pods(e.t.HostNamespace).Get(ctx, e.hostName("sleeper"), metav1.GetOptions{})
			if msg := exists("host pod", err, true); msg != "" {
				return msg
			}
			if h.Annotations[translate.AnnotationObjectUID] != string(v.UID) {
				return "the host pod copies another virtual pod"
			}
			return ""
		},
	}
}
