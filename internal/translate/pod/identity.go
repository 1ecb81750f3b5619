package pod

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// A host pod's identity secret holds what the host's kubelet cannot know
// about the virtual pod: its service-account tokens and the name,
// namespace and uid its downward API exposes.
const (
	identitySuffix = "-identity"
	tokenKeyPrefix = "token."
)

// virtualFields are downward-API fields whose host value would be wrong,
// served from the identity secret instead.
var virtualFields = map[string]bool{"metadata.name": true, "metadata.namespace": true, "metadata.uid": true}

// IdentitySecretName is the name of host pod hostPodName's identity secret.
func IdentitySecretName(hostPodName string) string { return hostPodName + identitySuffix }

// TokenKey is the key in the identity secret of the token that source
// number source of projected volume volume asks for.
func TokenKey(volume string, source int) string {
	return tokenKeyPrefix + volume + "." + strconv.Itoa(source)
}

// IdentityFields are the identity secret's entries for the downward-API
// fields of virtual pod v the host would get wrong.
func IdentityFields(v *corev1.Pod) map[string][]byte {
	return map[string][]byte{
		"metadata.name":      []byte(v.Name),
		"metadata.namespace": []byte(v.Namespace),
		"metadata.uid":       []byte(v.UID),
	}
}

// translateIdentity rewrites the volumes of host pod h so service-account
// tokens and virtual downward-API fields come from the identity secret, and
// reports whether h needs that secret.
func translateIdentity(h *corev1.Pod) bool {
	secretName := IdentitySecretName(h.Name)
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
					sources = append(sources, secretProjection(secretName, corev1.KeyToPath{Key: TokenKey(vol.Name, j), Path: src.ServiceAccountToken.Path}))
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
