package syncer

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/client-go/tools/cache"
)

// Names of the virtual pod informer's indexes of the objects pods use.
const (
	indexConfigMapRefs = "sublet-configmap-refs"
	indexSecretRefs    = "sublet-secret-refs"
	// indexIngressTLSRefs indexes virtual ingresses by their TLS secrets.
	indexIngressTLSRefs = "sublet-tls-secret-refs"
)

// reference is a configmap or secret a pod uses.
type reference struct {
	name     string
	optional bool
}

// podReferences lists the configmaps and secrets pod p uses.
func podReferences(p *corev1.Pod) (configMaps, secrets []reference) {
	opt := func(b *bool) bool { return b != nil && *b }
	for _, v := range p.Spec.Volumes {
		switch {
		case v.ConfigMap != nil:
			configMaps = append(configMaps, reference{v.ConfigMap.Name, opt(v.ConfigMap.Optional)})
		case v.Secret != nil:
			secrets = append(secrets, reference{v.Secret.SecretName, opt(v.Secret.Optional)})
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				if s.ConfigMap != nil {
					configMaps = append(configMaps, reference{s.ConfigMap.Name, opt(s.ConfigMap.Optional)})
				}
				if s.Secret != nil {
					secrets = append(secrets, reference{s.Secret.Name, opt(s.Secret.Optional)})
				}
			}
		}
	}
	containers := append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...)
	for _, c := range containers {
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				configMaps = append(configMaps, reference{r.Name, opt(r.Optional)})
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil {
				secrets = append(secrets, reference{r.Name, opt(r.Optional)})
			}
		}
		for _, e := range c.EnvFrom {
			if e.ConfigMapRef != nil {
				configMaps = append(configMaps, reference{e.ConfigMapRef.Name, opt(e.ConfigMapRef.Optional)})
			}
			if e.SecretRef != nil {
				secrets = append(secrets, reference{e.SecretRef.Name, opt(e.SecretRef.Optional)})
			}
		}
	}
	// A missing pull secret does not stop a kubelet from starting a pod.
	for _, s := range p.Spec.ImagePullSecrets {
		secrets = append(secrets, reference{s.Name, true})
	}
	return configMaps, secrets
}

// refIndexFunc indexes pods by "namespace/name" of what pick returns.
func refIndexFunc(pick func(*corev1.Pod) []reference) cache.IndexFunc {
	return func(obj interface{}) ([]string, error) {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return nil, nil
		}
		var keys []string
		for _, r := range pick(p) {
			keys = append(keys, p.Namespace+"/"+r.name)
		}
		return keys, nil
	}
}

func configMapRefs(p *corev1.Pod) []reference { cms, _ := podReferences(p); return cms }
func secretRefs(p *corev1.Pod) []reference    { _, ss := podReferences(p); return ss }

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
