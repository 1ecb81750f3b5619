package syncer

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/sublet-dev/sublet/internal/translate"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/kubernetes/pkg/kubelet/envvars"
	"k8s.io/utils/ptr"
)

// PodRuntime is what a host pod needs to act as a pod of its virtual
// cluster: where the virtual API server is and which DNS server resolves
// virtual service names.
type PodRuntime struct {
	// APIHost and APIPort become KUBERNETES_SERVICE_HOST/PORT.
	APIHost string
	APIPort int32
	// DNSServer is the nameserver of ClusterFirst pods; empty keeps the
	// host's DNS policy.
	DNSServer string
	// ClusterDomain is the virtual cluster's DNS domain (cluster.local).
	ClusterDomain string
}

// tokenLifetime of service-account tokens minted for host pods. They are
// bound to the virtual pod, so deleting it revokes them; no kubelet in the
// virtual cluster refreshes them.
const tokenLifetime = 365 * 24 * 3600

// A host pod's identity secret holds what the host's kubelet cannot know
// about the virtual pod: its service-account tokens and the name,
// namespace and uid its downward API exposes.
const (
	identitySuffix    = "-identity"
	tokenKeyPrefix    = "token."
	identitySecretKey = "sublet.dev/identity-of"
)

// virtualFields are downward-API fields whose host value would be wrong,
// served from the identity secret instead.
var virtualFields = map[string]bool{"metadata.name": true, "metadata.namespace": true, "metadata.uid": true}

// identitySecretName is the name of host pod hostPodName's identity secret.
func identitySecretName(hostPodName string) string { return hostPodName + identitySuffix }

func tokenKey(volume string, source int) string {
	return tokenKeyPrefix + volume + "." + strconv.Itoa(source)
}

// translateIdentity rewrites the volumes of host pod h (a copy of virtual
// pod v) so service-account tokens and virtual downward-API fields come from
// the identity secret, and reports whether h needs that secret.
func translateIdentity(h *corev1.Pod) bool {
	secretName := identitySecretName(h.Name)
	needed := false
	for i := range h.Spec.Volumes {
		vol := &h.Spec.Volumes[i]
		switch {
		case vol.Projected != nil:
			var sources []corev1.VolumeProjection
			for j, src := range vol.Projected.Sources {
				switch {
				case src.ServiceAccountToken != nil:
					needed = true
					sources = append(sources, secretProjection(secretName, corev1.KeyToPath{Key: tokenKey(vol.Name, j), Path: src.ServiceAccountToken.Path}))
				case src.DownwardAPI != nil:
					keep, moved := splitDownward(src.DownwardAPI.Items)
					if len(keep) > 0 {
						sources = append(sources, corev1.VolumeProjection{DownwardAPI: &corev1.DownwardAPIProjection{Items: keep}})
					}
					if len(moved) > 0 {
						needed = true
						sources = append(sources, secretProjection(secretName, moved...))
					}
				default:
					sources = append(sources, src)
				}
			}
			vol.Projected.Sources = sources
		case vol.DownwardAPI != nil:
			keep, moved := splitDownward(vol.DownwardAPI.Items)
			if len(moved) == 0 {
				continue
			}
			needed = true
			p := &corev1.ProjectedVolumeSource{DefaultMode: vol.DownwardAPI.DefaultMode}
			if len(keep) > 0 {
				p.Sources = append(p.Sources, corev1.VolumeProjection{DownwardAPI: &corev1.DownwardAPIProjection{Items: keep}})
			}
			p.Sources = append(p.Sources, secretProjection(secretName, moved...))
			vol.VolumeSource = corev1.VolumeSource{Projected: p}
		}
	}
	return needed
}

func secretProjection(name string, items ...corev1.KeyToPath) corev1.VolumeProjection {
	return corev1.VolumeProjection{Secret: &corev1.SecretProjection{
		LocalObjectReference: corev1.LocalObjectReference{Name: name}, Items: items,
	}}
}

// splitDownward separates downward-API items the host can serve from those
// (virtual name, namespace, uid) that move into the identity secret.
func splitDownward(items []corev1.DownwardAPIVolumeFile) (keep []corev1.DownwardAPIVolumeFile, moved []corev1.KeyToPath) {
	for _, it := range items {
		if it.FieldRef != nil && virtualFields[it.FieldRef.FieldPath] {
			moved = append(moved, corev1.KeyToPath{Key: it.FieldRef.FieldPath, Path: it.Path, Mode: it.Mode})
			continue
		}
		keep = append(keep, it)
	}
	return keep, moved
}

// identityData mints the tokens virtual pod v's projected volumes ask for,
// with the TokenRequest API of the virtual cluster, bound to v.
func identityData(ctx context.Context, c *Context, v *corev1.Pod) (map[string][]byte, error) {
	data := map[string][]byte{
		"metadata.name":      []byte(v.Name),
		"metadata.namespace": []byte(v.Namespace),
		"metadata.uid":       []byte(v.UID),
	}
	for _, vol := range v.Spec.Volumes {
		if vol.Projected == nil {
			continue
		}
		for j, src := range vol.Projected.Sources {
			sat := src.ServiceAccountToken
			if sat == nil {
				continue
			}
			req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
				ExpirationSeconds: ptr.To[int64](tokenLifetime),
				BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: v.Name, UID: v.UID},
			}}
			if sat.Audience != "" {
				req.Spec.Audiences = []string{sat.Audience}
			}
			sa := v.Spec.ServiceAccountName
			if sa == "" {
				sa = "default"
			}
			tr, err := c.Virtual.CoreV1().ServiceAccounts(v.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
			if err != nil {
				return nil, fmt.Errorf("mint token of service account %s/%s: %w", v.Namespace, sa, err)
			}
			data[tokenKey(vol.Name, j)] = []byte(tr.Status.Token)
		}
	}
	return data, nil
}

// ensureIdentitySecret creates host pod h's identity secret, owned by h so
// the host deletes it with the pod.
func ensureIdentitySecret(ctx context.Context, c *Context, v, h *corev1.Pod) error {
	data, err := identityData(ctx, c, v)
	if err != nil {
		return err
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      identitySecretName(h.Name),
			Namespace: h.Namespace,
			// Owner label only: it is no virtual secret's copy.
			Labels:          c.Translator.OwnerLabels(""),
			Annotations:     map[string]string{identitySecretKey: h.Name},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: h.Name, UID: h.UID}},
		},
		Type: corev1.SecretTypeOpaque,
		Data: data,
	}
	_, err = c.Host.CoreV1().Secrets(h.Namespace).Create(ctx, s, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		old, gerr := c.Host.CoreV1().Secrets(h.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
		if gerr != nil {
			return gerr
		}
		if err := ownsIdentitySecret(c, old, h); err != nil {
			return err
		}
		s.ResourceVersion = old.ResourceVersion
		_, err = c.Host.CoreV1().Secrets(h.Namespace).Update(ctx, s, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("identity secret of host pod %s: %w", h.Name, err)
	}
	return nil
}

// ownsIdentitySecret says why host secret s is not host pod h's identity
// secret of this virtual cluster, or nil if it is.
func ownsIdentitySecret(c *Context, s *corev1.Secret, h *corev1.Pod) error {
	if s.Annotations[identitySecretKey] != h.Name || s.Labels[translate.LabelCopyOf] != c.Translator.VCluster {
		return fmt.Errorf("host secret %s/%s exists and is not owned by virtual cluster %s", s.Namespace, s.Name, c.Translator.VCluster)
	}
	return nil
}

// ensureIdentitySecretExists is ensureIdentitySecret for a secret the
// host cache does not show: the cache may be behind a secret created a
// moment ago, so the host is asked before a token is minted again.
func ensureIdentitySecretExists(ctx context.Context, c *Context, v, h *corev1.Pod) error {
	s, err := c.Host.CoreV1().Secrets(h.Namespace).Get(ctx, identitySecretName(h.Name), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return ensureIdentitySecret(ctx, c, v, h)
	case err != nil:
		return fmt.Errorf("identity secret of host pod %s: %w", h.Name, err)
	}
	return ownsIdentitySecret(c, s, h)
}

// translateEnv sets what a kubelet of the virtual cluster would put in the
// environment: service links of the virtual namespace's services and the
// virtual API server's address, and downward-API values of the virtual pod.
func translateEnv(c *Context, v *corev1.Pod, h *corev1.Pod, services []*corev1.Service) {
	var svcEnv []corev1.EnvVar
	if c.Pods.APIHost != "" {
		api := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"},
			Spec: corev1.ServiceSpec{ClusterIP: c.Pods.APIHost, Ports: []corev1.ServicePort{
				{Name: "https", Port: c.Pods.APIPort, Protocol: corev1.ProtocolTCP},
			}},
		}
		var list []*corev1.Service
		if v.Spec.EnableServiceLinks == nil || *v.Spec.EnableServiceLinks {
			for _, s := range services {
				if s.Namespace == v.Namespace && !isAPIServerService(s) && len(s.Spec.Ports) > 0 {
					list = append(list, s)
				}
			}
			sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
		}
		svcEnv = envvars.FromServices(append(list, api))
	}
	// The host's own service links name other tenants' services.
	h.Spec.EnableServiceLinks = ptr.To(false)
	fix := func(ct *corev1.Container) {
		env := append([]corev1.EnvVar(nil), svcEnv...)
		for _, e := range ct.Env {
			if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
				if val, ok := virtualFieldValue(v, e.ValueFrom.FieldRef.FieldPath); ok {
					e = corev1.EnvVar{Name: e.Name, Value: val}
				}
			}
			env = append(env, e)
		}
		ct.Env = env
	}
	for i := range h.Spec.InitContainers {
		fix(&h.Spec.InitContainers[i])
	}
	for i := range h.Spec.Containers {
		fix(&h.Spec.Containers[i])
	}
	for i := range h.Spec.EphemeralContainers {
		fix((*corev1.Container)(&h.Spec.EphemeralContainers[i].EphemeralContainerCommon))
	}
}

// virtualFieldValue resolves a downward-API field path whose host value
// would differ from the virtual one.
func virtualFieldValue(v *corev1.Pod, path string) (string, bool) {
	switch path {
	case "metadata.name":
		return v.Name, true
	case "metadata.namespace":
		return v.Namespace, true
	case "metadata.uid":
		return string(v.UID), true
	case "spec.serviceAccountName":
		return v.Spec.ServiceAccountName, true
	}
	for prefix, m := range map[string]map[string]string{"metadata.labels": v.Labels, "metadata.annotations": v.Annotations} {
		if strings.HasPrefix(path, prefix+"['") && strings.HasSuffix(path, "']") {
			return m[strings.TrimSuffix(strings.TrimPrefix(path, prefix+"['"), "']")], true
		}
	}
	return "", false
}

// translateDNS points ClusterFirst pods at the virtual cluster's DNS, with
// the search path of their virtual namespace.
func translateDNS(c *Context, v *corev1.Pod, h *corev1.Pod) {
	if c.Pods.DNSServer == "" {
		return
	}
	switch v.Spec.DNSPolicy {
	case "", corev1.DNSClusterFirst:
	case corev1.DNSClusterFirstWithHostNet:
	default:
		return
	}
	if v.Spec.HostNetwork && v.Spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		return
	}
	domain := c.Pods.ClusterDomain
	if domain == "" {
		domain = "cluster.local"
	}
	cfg := &corev1.PodDNSConfig{
		Nameservers: []string{c.Pods.DNSServer},
		Searches:    []string{v.Namespace + ".svc." + domain, "svc." + domain, domain},
		Options:     []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr.To("5")}},
	}
	if u := v.Spec.DNSConfig; u != nil {
		cfg.Nameservers = append(cfg.Nameservers, u.Nameservers...)
		cfg.Searches = append(cfg.Searches, u.Searches...)
		cfg.Options = append(cfg.Options, u.Options...)
	}
	h.Spec.DNSPolicy = corev1.DNSNone
	h.Spec.DNSConfig = cfg
}
