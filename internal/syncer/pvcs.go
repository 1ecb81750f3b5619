package syncer

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/sublet-dev/sublet/internal/translate"
)

// newPVCSyncer gives each virtual PersistentVolumeClaim a host claim, which
// the host's storage provisions and binds; binding status comes back. Only
// the requested resources can change later; the rest of a claim's spec is
// immutable or the host's (its volume). The host claim goes as soon as the
// virtual one is being deleted.
func newPVCSyncer(factories) (Syncer[*corev1.PersistentVolumeClaim], []trigger) {
	return mirror[*corev1.PersistentVolumeClaim]{
		kind: "persistentvolumeclaim",
		client: func(cs kubernetes.Interface, ns string) writer[*corev1.PersistentVolumeClaim] {
			return cs.CoreV1().PersistentVolumeClaims(ns)
		},
		translate: translate.Translator.HostPVC,
		specInto:  func(dst, src *corev1.PersistentVolumeClaim) { dst.Spec.Resources = src.Spec.Resources },
		status: &mirrorStatus[*corev1.PersistentVolumeClaim]{
			client: func(cs kubernetes.Interface, ns string) statusWriter[*corev1.PersistentVolumeClaim] {
				return cs.CoreV1().PersistentVolumeClaims(ns)
			},
			into: func(dst, src *corev1.PersistentVolumeClaim) { dst.Status = *src.Status.DeepCopy() },
		},
		deleteWhenTerminating: true,
	}, nil
}

func pvcInformer(f informers.SharedInformerFactory) cache.SharedIndexInformer {
	return f.Core().V1().PersistentVolumeClaims().Informer()
}
