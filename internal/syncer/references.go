package syncer

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/sublet-dev/sublet/internal/translate/pod"
)

// Names of the virtual pod informer's indexes of the objects pods use.
const (
	indexConfigMapRefs = "sublet-configmap-refs"
	indexSecretRefs    = "sublet-secret-refs"
	// indexIngressTLSRefs indexes virtual ingresses by their TLS secrets.
	indexIngressTLSRefs = "sublet-tls-secret-refs"
)

// reference is a configmap or secret a pod uses (pod.Reference).
type reference = pod.Reference

// refIndexFunc indexes pods by "namespace/name" of what pick returns.
func refIndexFunc(pick func(*corev1.Pod) []reference) cache.IndexFunc {
	return func(obj interface{}) ([]string, error) {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return nil, nil
		}
		var keys []string
		for _, r := range pick(p) {
			keys = append(keys, p.Namespace+"/"+r.Name)
		}
		return keys, nil
	}
}

func configMapRefs(p *corev1.Pod) []reference { cms, _ := pod.References(p); return cms }
func secretRefs(p *corev1.Pod) []reference    { _, ss := pod.References(p); return ss }

// indexedPods returns the virtual pod informer's indexer, with the indexes
// of what pods use added on first call (before the informer starts).
func indexedPods(f factories) cache.Indexer {
	inf := podInformer(f.virtual)
	if _, ok := inf.GetIndexer().GetIndexers()[indexConfigMapRefs]; !ok {
		_ = inf.AddIndexers(cache.Indexers{
			indexConfigMapRefs: refIndexFunc(configMapRefs),
			indexSecretRefs:    refIndexFunc(secretRefs),
		})
	}
	return inf.GetIndexer()
}

// tlsSecretNames lists the "namespace/name" keys of ingress ing's TLS
// secrets.
func tlsSecretNames(obj interface{}) []string {
	ing, ok := obj.(*networkingv1.Ingress)
	if !ok {
		return nil
	}
	var keys []string
	for _, t := range ing.Spec.TLS {
		if t.SecretName != "" {
			keys = append(keys, ing.Namespace+"/"+t.SecretName)
		}
	}
	return keys
}

// indexedIngresses returns the virtual ingress informer's indexer, with the
// TLS secret index added on first call.
func indexedIngresses(f factories) cache.Indexer {
	inf := ingressInformer(f.virtual)
	if _, ok := inf.GetIndexer().GetIndexers()[indexIngressTLSRefs]; !ok {
		_ = inf.AddIndexers(cache.Indexers{indexIngressTLSRefs: func(obj interface{}) ([]string, error) {
			return tlsSecretNames(obj), nil
		}})
	}
	return inf.GetIndexer()
}

// tlsSecretsOf triggers a sync of the TLS secrets an ingress names, before
// and after each change of the ingress.
func tlsSecretsOf(f factories) trigger {
	return trigger{informer: ingressInformer(f.virtual), keys: tlsSecretNames}
}
