package syncer

import (
	"context"
	"fmt"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/sublet-dev/sublet/internal/translate"
	"github.com/sublet-dev/sublet/internal/translate/pod"
)

// PodRuntime is what a host pod needs to act as a pod of its virtual
// cluster (pod.Runtime).
type PodRuntime = pod.Runtime

// tokenLifetime of service-account tokens minted for host pods. They are
// bound to the virtual pod, so deleting it revokes them; no kubelet in the
// virtual cluster refreshes them.
const tokenLifetime = 365 * 24 * 3600

// identitySecretKey annotates a host pod's identity secret with the pod's
// name (pod.IdentitySecretName): the secret holds what the host's kubelet
// cannot know about the virtual pod.
const identitySecretKey = "sublet.dev/identity-of"

// identityData mints the tokens virtual pod v's projected volumes ask for,
// with the TokenRequest API of the virtual cluster, bound to v.
func identityData(ctx context.Context, c *Context, v *corev1.Pod) (map[string][]byte, error) {
	data := pod.IdentityFields(v)
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
			data[pod.TokenKey(vol.Name, j)] = []byte(tr.Status.Token)
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
			Name:      pod.IdentitySecretName(h.Name),
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
	s, err := c.Host.CoreV1().Secrets(h.Namespace).Get(ctx, pod.IdentitySecretName(h.Name), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return ensureIdentitySecret(ctx, c, v, h)
	case err != nil:
		return fmt.Errorf("identity secret of host pod %s: %w", h.Name, err)
	}
	return ownsIdentitySecret(c, s, h)
}
