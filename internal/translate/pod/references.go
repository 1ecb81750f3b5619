package pod

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/sublet-dev/sublet/internal/isolation"
)

// Reference is a configmap or secret a pod uses, by its virtual name.
type Reference struct {
	Name string
	// Optional says the pod starts without it.
	Optional bool
}

// References lists the configmaps and secrets pod p uses: in volumes,
// projected volumes, environment and (secrets, all optional) image pull
// secrets.
func References(p *corev1.Pod) (configMaps, secrets []Reference) {
	opt := func(b *bool) bool { return b != nil && *b }
	for _, v := range p.Spec.Volumes {
		switch {
		case v.ConfigMap != nil:
			configMaps = append(configMaps, Reference{v.ConfigMap.Name, opt(v.ConfigMap.Optional)})
		case v.Secret != nil:
			secrets = append(secrets, Reference{v.Secret.SecretName, opt(v.Secret.Optional)})
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				if s.ConfigMap != nil {
					configMaps = append(configMaps, Reference{s.ConfigMap.Name, opt(s.ConfigMap.Optional)})
				}
				if s.Secret != nil {
					secrets = append(secrets, Reference{s.Secret.Name, opt(s.Secret.Optional)})
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
				configMaps = append(configMaps, Reference{r.Name, opt(r.Optional)})
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil {
				secrets = append(secrets, Reference{r.Name, opt(r.Optional)})
			}
		}
		for _, e := range c.EnvFrom {
			if e.ConfigMapRef != nil {
				configMaps = append(configMaps, Reference{e.ConfigMapRef.Name, opt(e.ConfigMapRef.Optional)})
			}
			if e.SecretRef != nil {
				secrets = append(secrets, Reference{e.SecretRef.Name, opt(e.SecretRef.Optional)})
			}
		}
	}
	// A missing pull secret does not stop a kubelet from starting a pod.
	for _, s := range p.Spec.ImagePullSecrets {
		secrets = append(secrets, Reference{s.Name, true})
	}
	return configMaps, secrets
}

// HostReferences lists what in a virtual pod's spec would reach past the
// tenant's own objects on the host: volumes that name a host Secret, host
// Endpoints or a disk of the host's infrastructure by ID, code the node
// would run for a volume, resource claims and runtime classes (host
// objects no translation maps to), and scheduling hooks of host objects.
// Everything that names a tenant object is translated by HostPod instead;
// the syncer's podspec_test.go records the decision for every PodSpec
// field.
func HostReferences(spec *corev1.PodSpec, p isolation.PodPolicy) []string {
	var refs []string
	for _, v := range spec.Volumes {
		if what := hostVolume(v.VolumeSource, p); what != "" {
			refs = append(refs, fmt.Sprintf("volume %q %s", v.Name, what))
		}
		if p := v.Projected; p != nil {
			for _, src := range p.Sources {
				if src.ClusterTrustBundle != nil {
					refs = append(refs, fmt.Sprintf("volume %q projects a ClusterTrustBundle of the host", v.Name))
				}
				if src.PodCertificate != nil {
					refs = append(refs, fmt.Sprintf("volume %q asks the host's signer %q for a certificate", v.Name, src.PodCertificate.SignerName))
				}
			}
		}
	}
	if len(spec.ResourceClaims) > 0 {
		refs = append(refs, "resourceClaims name host ResourceClaims")
	}
	if spec.RuntimeClassName != nil && *spec.RuntimeClassName != "" {
		refs = append(refs, fmt.Sprintf("runtimeClassName %q names a host RuntimeClass", *spec.RuntimeClassName))
	}
	if spec.SchedulingGroup != nil {
		refs = append(refs, "schedulingGroup names a host scheduling group")
	}
	if len(spec.EvictionResponders) > 0 {
		refs = append(refs, "evictionResponders name host components")
	}
	return refs
}

// hostVolume says how a volume source reaches the host directly ("" if it
// does not).
func hostVolume(v corev1.VolumeSource, p isolation.PodPolicy) string {
	const secret = "names a host Secret (secretRef); use a PersistentVolumeClaim"
	const disk = "names a disk of the host's infrastructure directly; use a PersistentVolumeClaim"
	switch {
	case v.CSI != nil && v.CSI.NodePublishSecretRef != nil:
		return "names a host Secret (csi.nodePublishSecretRef); use a PersistentVolumeClaim"
	case v.CSI != nil && !slices.Contains(p.AllowedCSIDrivers, v.CSI.Driver):
		return fmt.Sprintf("makes the host's CSI driver %q act on the pod's volumeAttributes on the host's node; use a PersistentVolumeClaim, "+
			"or an admin may allow the driver with isolation.pods.allowedCSIDrivers", v.CSI.Driver)
	case v.NFS != nil:
		return "makes the host's node mount an NFS server of the pod's choosing, outside any network policy; use a PersistentVolumeClaim"
	case v.CephFS != nil && (v.CephFS.SecretRef != nil || v.CephFS.SecretFile != ""):
		return secret
	case v.RBD != nil && (v.RBD.SecretRef != nil || v.RBD.Keyring != ""):
		return secret
	case v.ISCSI != nil && v.ISCSI.SecretRef != nil:
		return secret
	case v.FlexVolume != nil:
		return "runs a FlexVolume driver on the host's node"
	case v.ScaleIO != nil, v.StorageOS != nil, v.AzureFile != nil, v.Cinder != nil && v.Cinder.SecretRef != nil:
		return secret
	case v.Glusterfs != nil:
		return "names host Endpoints (glusterfs.endpoints)"
	case v.GitRepo != nil:
		return "runs git on the host's node (gitRepo is deprecated; clone in an init container)"
	case v.GCEPersistentDisk != nil, v.AWSElasticBlockStore != nil, v.AzureDisk != nil, v.Cinder != nil, v.FC != nil,
		v.Flocker != nil, v.PhotonPersistentDisk != nil, v.PortworxVolume != nil, v.Quobyte != nil, v.VsphereVolume != nil,
		v.ISCSI != nil, v.RBD != nil, v.CephFS != nil:
		return disk
	}
	return ""
}
