package pod

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/sublet-dev/sublet/internal/isolation"
)

func TestReferences(t *testing.T) {
	ref := func(name string) corev1.LocalObjectReference { return corev1.LocalObjectReference{Name: name} }
	tests := []struct {
		name                string
		spec                corev1.PodSpec
		configMaps, secrets []Reference
	}{
		{name: "none", spec: corev1.PodSpec{Containers: []corev1.Container{{Env: []corev1.EnvVar{{Name: "A", Value: "plain"}}}}}},
		{name: "everywhere", spec: corev1.PodSpec{
			Volumes: []corev1.Volume{
				{VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: ref("cm-vol")}}},
				{VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec-vol", Optional: ptr.To(true)}}},
				{VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: ref("cm-proj")}},
					{Secret: &corev1.SecretProjection{LocalObjectReference: ref("sec-proj")}},
				}}}},
				{VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "not-a-configmap"}}},
			},
			InitContainers: []corev1.Container{{EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: ref("cm-envfrom")}}}}},
			Containers: []corev1.Container{{
				Env: []corev1.EnvVar{
					{Name: "A", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: ref("sec-env")}}},
					{Name: "B", Value: "plain"},
					{Name: "C", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: ref("cm-env"), Optional: ptr.To(true)}}},
				},
				EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: ref("sec-envfrom"), Optional: ptr.To(false)}}},
			}},
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "pull"}},
		},
			configMaps: []Reference{{"cm-vol", false}, {"cm-proj", false}, {"cm-envfrom", false}, {"cm-env", true}},
			secrets:    []Reference{{"sec-vol", true}, {"sec-proj", false}, {"sec-env", false}, {"sec-envfrom", false}, {"pull", true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cms, secrets := References(&corev1.Pod{Spec: tt.spec})
			if !reflect.DeepEqual(cms, tt.configMaps) {
				t.Errorf("configmaps = %v, want %v", cms, tt.configMaps)
			}
			if !reflect.DeepEqual(secrets, tt.secrets) {
				t.Errorf("secrets = %v, want %v", secrets, tt.secrets)
			}
		})
	}
}

// TestHostReferences: every decision "refused" of the syncer's
// podspec_test.go is enforced by HostReferences, and what is kept passes.
func TestHostReferences(t *testing.T) {
	vol := func(src corev1.VolumeSource) *corev1.PodSpec {
		return &corev1.PodSpec{Volumes: []corev1.Volume{{Name: "v", VolumeSource: src}}}
	}
	ref := &corev1.LocalObjectReference{Name: "host-secret"}
	for name, spec := range map[string]*corev1.PodSpec{
		"csi secret":          vol(corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: "d", NodePublishSecretRef: ref}}),
		"cephfs secret":       vol(corev1.VolumeSource{CephFS: &corev1.CephFSVolumeSource{SecretRef: ref}}),
		"rbd secret":          vol(corev1.VolumeSource{RBD: &corev1.RBDVolumeSource{SecretRef: ref}}),
		"iscsi secret":        vol(corev1.VolumeSource{ISCSI: &corev1.ISCSIVolumeSource{SecretRef: ref}}),
		"flexvolume":          vol(corev1.VolumeSource{FlexVolume: &corev1.FlexVolumeSource{Driver: "d"}}),
		"scaleio":             vol(corev1.VolumeSource{ScaleIO: &corev1.ScaleIOVolumeSource{SecretRef: ref}}),
		"storageos":           vol(corev1.VolumeSource{StorageOS: &corev1.StorageOSVolumeSource{SecretRef: ref}}),
		"azurefile":           vol(corev1.VolumeSource{AzureFile: &corev1.AzureFileVolumeSource{SecretName: "s"}}),
		"cinder":              vol(corev1.VolumeSource{Cinder: &corev1.CinderVolumeSource{VolumeID: "x"}}),
		"glusterfs endpoints": vol(corev1.VolumeSource{Glusterfs: &corev1.GlusterfsVolumeSource{EndpointsName: "ep"}}),
		"gitrepo":             vol(corev1.VolumeSource{GitRepo: &corev1.GitRepoVolumeSource{Repository: "r"}}),
		"aws disk":            vol(corev1.VolumeSource{AWSElasticBlockStore: &corev1.AWSElasticBlockStoreVolumeSource{VolumeID: "vol-1"}}),
		"cluster trust bundle": vol(corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{ClusterTrustBundle: &corev1.ClusterTrustBundleProjection{Path: "ca"}}}}}),
		"pod certificate": vol(corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{PodCertificate: &corev1.PodCertificateProjection{SignerName: "example.com/signer"}}}}}),
		"resource claim": {ResourceClaims: []corev1.PodResourceClaim{{Name: "gpu"}}},
		"runtime class":  {RuntimeClassName: ptr.To("privileged-runtime")},
		"nfs":            vol(corev1.VolumeSource{NFS: &corev1.NFSVolumeSource{Server: "10.0.0.5", Path: "/exports/other-team"}}),
		"csi inline, driver not allowed": vol(corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: "nfs.csi.k8s.io",
			VolumeAttributes: map[string]string{"server": "10.0.0.5", "share": "/"}}}),
	} {
		if refs := HostReferences(spec, isolation.PodPolicy{}); len(refs) == 0 {
			t.Errorf("%s: not refused", name)
		}
	}
	for name, spec := range map[string]*corev1.PodSpec{
		"plain":      {Containers: []corev1.Container{{Name: "c", Image: "i"}}},
		"csi inline": vol(corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: "d"}}),
		"secret":     vol(corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "mine"}}),
		"projected": vol(corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "t"}}}}}),
		"empty runtime class": {RuntimeClassName: ptr.To("")},
	} {
		if refs := HostReferences(spec, isolation.PodPolicy{AllowedCSIDrivers: []string{"d"}}); len(refs) != 0 {
			t.Errorf("%s: refused: %v", name, refs)
		}
	}
}
