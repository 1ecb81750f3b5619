package pod

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/sublet-dev/sublet/internal/isolation"
	"github.com/sublet-dev/sublet/internal/translate"
)

var names = translate.Translator{VCluster: "demo", HostNamespace: "host-ns"}

// virtualPod is a plain virtual pod team/web-1, changed by each case.
func virtualPod(change func(*corev1.Pod)) *corev1.Pod {
	v := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "team", UID: "uid-1", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
	}
	if change != nil {
		change(v)
	}
	return v
}

func cmVolume(name, cm string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: cm}}}}
}

// envOf is container i's environment by name.
func envOf(h *corev1.Pod, i int) map[string]corev1.EnvVar {
	env := map[string]corev1.EnvVar{}
	for _, e := range h.Spec.Containers[i].Env {
		env[e.Name] = e
	}
	return env
}

// check is one value of the host pod and what it must be.
type check struct {
	what string
	got  func(h *corev1.Pod) string
	want string
}

func TestHostPod(t *testing.T) {
	tr := Translator{Names: names}
	tests := []struct {
		name     string
		virtual  func(*corev1.Pod)
		runtime  Runtime
		services []*corev1.Service
		identity bool
		checks   []check
	}{{
		name: "names and namespace",
		checks: []check{
			{"name", func(h *corev1.Pod) string { return h.Name }, "web-1-x-team-x-demo"},
			{"namespace", func(h *corev1.Pod) string { return h.Namespace }, "host-ns"},
			{"hostname", func(h *corev1.Pod) string { return h.Spec.Hostname }, "web-1"},
			{"owner name", func(h *corev1.Pod) string { return h.Annotations[translate.AnnotationObjectName] }, "web-1"},
			{"owner namespace", func(h *corev1.Pod) string { return h.Annotations[translate.AnnotationObjectNS] }, "team"},
			{"owner uid", func(h *corev1.Pod) string { return h.Annotations[translate.AnnotationObjectUID] }, "uid-1"},
		},
	}, {
		name: "long dotted name",
		virtual: func(v *corev1.Pod) {
			v.Name = strings.Repeat("a", 60) + ".b." + strings.Repeat("c", 20)
		},
		checks: []check{
			{"name", func(h *corev1.Pod) string { return h.Name }, names.HostName("team", strings.Repeat("a", 60)+".b."+strings.Repeat("c", 20))},
			{"name is a shortened form", func(h *corev1.Pod) string { return h.Name[:53] }, strings.Repeat("a", 52) + "-"},
			{"hostname truncated, no dots", func(h *corev1.Pod) string { return h.Spec.Hostname }, strings.Repeat("a", 60) + "-b"},
		},
	}, {
		name:    "tenant's own hostname kept, subdomain cleared",
		virtual: func(v *corev1.Pod) { v.Spec.Hostname, v.Spec.Subdomain = "db-0", "db" },
		checks: []check{
			{"hostname", func(h *corev1.Pod) string { return h.Spec.Hostname }, "db-0"},
			{"subdomain", func(h *corev1.Pod) string { return h.Spec.Subdomain }, ""},
		},
	}, {
		name: "labels",
		checks: []check{
			{"owner label", func(h *corev1.Pod) string { return h.Labels[translate.LabelCopyOf] }, "demo"},
			{"virtual namespace label", func(h *corev1.Pod) string { return h.Labels[translate.LabelVirtualNS] }, "team"},
			{"translated label", func(h *corev1.Pod) string { return h.Labels[translate.LabelKey("app")] }, "web"},
			{"untranslated label", func(h *corev1.Pod) string { return h.Labels["app"] }, ""},
		},
	}, {
		name: "scheduling and identity of the virtual cluster cleared",
		virtual: func(v *corev1.Pod) {
			v.Spec.NodeName, v.Spec.SchedulerName, v.Spec.PriorityClassName = "virtual-node", "mine", "tenant-high"
			v.Spec.Priority = ptr.To[int32](1000)
			v.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "wait"}}
			v.Spec.ServiceAccountName, v.Spec.DeprecatedServiceAccount = "builder", "builder"
		},
		checks: []check{
			{"node name", func(h *corev1.Pod) string { return h.Spec.NodeName }, ""},
			{"scheduler", func(h *corev1.Pod) string { return h.Spec.SchedulerName }, ""},
			{"priority class", func(h *corev1.Pod) string { return h.Spec.PriorityClassName }, ""},
			{"priority", func(h *corev1.Pod) string { return ptrString(h.Spec.Priority) }, "<nil>"},
			{"scheduling gates", func(h *corev1.Pod) string { return fmt.Sprint(h.Spec.SchedulingGates) }, "[]"},
			{"service account", func(h *corev1.Pod) string { return h.Spec.ServiceAccountName + h.Spec.DeprecatedServiceAccount }, ""},
			{"automount host token", func(h *corev1.Pod) string { return ptrString(h.Spec.AutomountServiceAccountToken) }, "false"},
		},
	}, {
		name: "service-account token from the identity secret",
		virtual: func(v *corev1.Pod) {
			v.Spec.Volumes = []corev1.Volume{{Name: "kube-api-access-abcde", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](3607)}},
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
				{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{
					{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}},
					{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
				}}},
			}}}}}
		},
		identity: true,
		checks: []check{
			{"no host token", func(h *corev1.Pod) string {
				return ptrString(h.Spec.Volumes[0].Projected.Sources[0].ServiceAccountToken)
			}, "<nil>"},
			{"token from identity secret", func(h *corev1.Pod) string { return h.Spec.Volumes[0].Projected.Sources[0].Secret.Name }, "web-1-x-team-x-demo-identity"},
			{"token key", func(h *corev1.Pod) string { return h.Spec.Volumes[0].Projected.Sources[0].Secret.Items[0].Key }, "token.kube-api-access-abcde.0"},
			{"token path", func(h *corev1.Pod) string { return h.Spec.Volumes[0].Projected.Sources[0].Secret.Items[0].Path }, "token"},
			{"root CA configmap", func(h *corev1.Pod) string { return h.Spec.Volumes[0].Projected.Sources[1].ConfigMap.Name }, names.HostName("team", "kube-root-ca.crt")},
			{"labels from the host", func(h *corev1.Pod) string { return h.Spec.Volumes[0].Projected.Sources[2].DownwardAPI.Items[0].Path }, "labels"},
			{"namespace from identity secret", func(h *corev1.Pod) string { return h.Spec.Volumes[0].Projected.Sources[3].Secret.Items[0].Key }, "metadata.namespace"},
		},
	}, {
		name: "downward API volume without virtual fields needs no identity",
		virtual: func(v *corev1.Pod) {
			v.Spec.Volumes = []corev1.Volume{{Name: "info", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
				Items: []corev1.DownwardAPIVolumeFile{{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}}}}}}}
		},
		checks: []check{
			{"volume kept", func(h *corev1.Pod) string { return h.Spec.Volumes[0].DownwardAPI.Items[0].Path }, "labels"},
		},
	}, {
		name: "downward API volume with the virtual name",
		virtual: func(v *corev1.Pod) {
			v.Spec.Volumes = []corev1.Volume{{Name: "info", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
				DefaultMode: ptr.To[int32](0o400),
				Items: []corev1.DownwardAPIVolumeFile{
					{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
					{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}},
				}}}}}
		},
		identity: true,
		checks: []check{
			{"now projected", func(h *corev1.Pod) string { return ptrString(h.Spec.Volumes[0].DownwardAPI) }, "<nil>"},
			{"mode kept", func(h *corev1.Pod) string { return ptrString(h.Spec.Volumes[0].Projected.DefaultMode) }, "256"},
			{"labels from the host", func(h *corev1.Pod) string { return h.Spec.Volumes[0].Projected.Sources[0].DownwardAPI.Items[0].Path }, "labels"},
			{"name from identity secret", func(h *corev1.Pod) string { return h.Spec.Volumes[0].Projected.Sources[1].Secret.Items[0].Key }, "metadata.name"},
		},
	}, {
		name: "volumes name host copies",
		virtual: func(v *corev1.Pod) {
			v.Spec.Volumes = []corev1.Volume{
				cmVolume("cfg", "settings"),
				{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "web-tls"}}},
				{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}},
				{Name: "both", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}},
					{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}}},
				}}}},
				{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			}
			v.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "registry"}}
		},
		checks: []check{
			{"configmap", func(h *corev1.Pod) string { return h.Spec.Volumes[0].ConfigMap.Name }, "settings-x-team-x-demo"},
			{"secret", func(h *corev1.Pod) string { return h.Spec.Volumes[1].Secret.SecretName }, "web-tls-x-team-x-demo"},
			{"claim", func(h *corev1.Pod) string { return h.Spec.Volumes[2].PersistentVolumeClaim.ClaimName }, "data-x-team-x-demo"},
			{"projected configmap", func(h *corev1.Pod) string { return h.Spec.Volumes[3].Projected.Sources[0].ConfigMap.Name }, "cm-x-team-x-demo"},
			{"projected secret", func(h *corev1.Pod) string { return h.Spec.Volumes[3].Projected.Sources[1].Secret.Name }, "sec-x-team-x-demo"},
			{"volume names kept", func(h *corev1.Pod) string { return h.Spec.Volumes[0].Name + "," + h.Spec.Volumes[4].Name }, "cfg,scratch"},
			{"pull secret", func(h *corev1.Pod) string { return h.Spec.ImagePullSecrets[0].Name }, "registry-x-team-x-demo"},
		},
	}, {
		name: "ephemeral claim templates are the caller's",
		virtual: func(v *corev1.Pod) {
			v.Spec.Volumes = []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{
				VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{Spec: corev1.PersistentVolumeClaimSpec{VolumeName: "pv"}}}}}}
		},
		checks: []check{
			{"template untouched", func(h *corev1.Pod) string { return h.Spec.Volumes[0].Ephemeral.VolumeClaimTemplate.Spec.VolumeName }, "pv"},
		},
	}, {
		name: "environment references and downward API",
		virtual: func(v *corev1.Pod) {
			v.Annotations = map[string]string{"team.example/owner": "ana"}
			v.Spec.ServiceAccountName = "builder"
			v.Spec.Containers[0].Env = []corev1.EnvVar{
				{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "password"}}},
				{Name: "MODE", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}, Key: "mode"}}},
				{Name: "MY_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				{Name: "MY_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
				{Name: "MY_UID", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.uid"}}},
				{Name: "MY_SA", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.serviceAccountName"}}},
				{Name: "MY_APP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
				{Name: "MY_OWNER", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations['team.example/owner']"}}},
				{Name: "MY_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			}
			v.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{
				{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "all-settings"}}},
				{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "all-secrets"}}},
			}
			v.Spec.InitContainers = []corev1.Container{{Name: "init", EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "init"}}}}}}
			v.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug",
				EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "debug"}}}}}}}
		},
		checks: []check{
			{"secret key", func(h *corev1.Pod) string { return envOf(h, 0)["PASSWORD"].ValueFrom.SecretKeyRef.Name }, "db-x-team-x-demo"},
			{"configmap key", func(h *corev1.Pod) string { return envOf(h, 0)["MODE"].ValueFrom.ConfigMapKeyRef.Name }, "settings-x-team-x-demo"},
			{"envFrom configmap", func(h *corev1.Pod) string { return h.Spec.Containers[0].EnvFrom[0].ConfigMapRef.Name }, "all-settings-x-team-x-demo"},
			{"envFrom secret", func(h *corev1.Pod) string { return h.Spec.Containers[0].EnvFrom[1].SecretRef.Name }, "all-secrets-x-team-x-demo"},
			{"init container", func(h *corev1.Pod) string { return h.Spec.InitContainers[0].EnvFrom[0].ConfigMapRef.Name }, "init-x-team-x-demo"},
			{"ephemeral container", func(h *corev1.Pod) string { return h.Spec.EphemeralContainers[0].EnvFrom[0].SecretRef.Name }, "debug-x-team-x-demo"},
			{"name", func(h *corev1.Pod) string { return envOf(h, 0)["MY_NAME"].Value }, "web-1"},
			{"namespace", func(h *corev1.Pod) string { return envOf(h, 0)["MY_NAMESPACE"].Value }, "team"},
			{"uid", func(h *corev1.Pod) string { return envOf(h, 0)["MY_UID"].Value }, "uid-1"},
			{"service account", func(h *corev1.Pod) string { return envOf(h, 0)["MY_SA"].Value }, "builder"},
			{"label", func(h *corev1.Pod) string { return envOf(h, 0)["MY_APP"].Value }, "web"},
			{"annotation", func(h *corev1.Pod) string { return envOf(h, 0)["MY_OWNER"].Value }, "ana"},
			{"pod IP stays a field ref", func(h *corev1.Pod) string { return envOf(h, 0)["MY_IP"].ValueFrom.FieldRef.FieldPath }, "status.podIP"},
			{"no host service links", func(h *corev1.Pod) string { return ptrString(h.Spec.EnableServiceLinks) }, "false"},
			{"no API server without a runtime", func(h *corev1.Pod) string { return envOf(h, 0)["KUBERNETES_SERVICE_HOST"].Value }, ""},
		},
	}, {
		name:    "service links of the virtual namespace and the virtual API server",
		runtime: Runtime{APIHost: "10.0.0.5", APIPort: 6443},
		services: []*corev1.Service{
			{ObjectMeta: metav1.ObjectMeta{Name: "db-main", Namespace: "team"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.3.4", Ports: []corev1.ServicePort{{Name: "pg", Port: 5432, Protocol: corev1.ProtocolTCP}}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "headless", Namespace: "team"}, Spec: corev1.ServiceSpec{ClusterIP: "None"}},
			{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "elsewhere"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.3.5", Ports: []corev1.ServicePort{{Port: 80}}}},
		},
		virtual: func(v *corev1.Pod) {
			v.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "DB_MAIN_SERVICE_HOST", Value: "mine"}}
		},
		checks: []check{
			{"API host", func(h *corev1.Pod) string { return envOf(h, 0)["KUBERNETES_SERVICE_HOST"].Value }, "10.0.0.5"},
			{"API port", func(h *corev1.Pod) string { return envOf(h, 0)["KUBERNETES_SERVICE_PORT"].Value }, "6443"},
			{"link of the virtual namespace", func(h *corev1.Pod) string { return envOf(h, 0)["DB_MAIN_SERVICE_PORT"].Value }, "5432"},
			{"no link of another namespace", func(h *corev1.Pod) string { return envOf(h, 0)["OTHER_SERVICE_HOST"].Value }, ""},
			{"the container's own variable comes last, so it wins", func(h *corev1.Pod) string {
				return h.Spec.Containers[0].Env[len(h.Spec.Containers[0].Env)-1].Value
			}, "mine"},
		},
	}, {
		name:    "service links turned off",
		runtime: Runtime{APIHost: "10.0.0.5", APIPort: 6443},
		services: []*corev1.Service{
			{ObjectMeta: metav1.ObjectMeta{Name: "db-main", Namespace: "team"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.3.4", Ports: []corev1.ServicePort{{Port: 5432}}}},
		},
		virtual: func(v *corev1.Pod) { v.Spec.EnableServiceLinks = ptr.To(false) },
		checks: []check{
			{"API host still set", func(h *corev1.Pod) string { return envOf(h, 0)["KUBERNETES_SERVICE_HOST"].Value }, "10.0.0.5"},
			{"no service link", func(h *corev1.Pod) string { return envOf(h, 0)["DB_MAIN_SERVICE_HOST"].Value }, ""},
		},
	}, {
		name:    "ClusterFirst DNS of the virtual cluster",
		runtime: Runtime{DNSServer: "10.96.0.10", ClusterDomain: "tenant.local"},
		virtual: func(v *corev1.Pod) { v.Spec.DNSConfig = &corev1.PodDNSConfig{Searches: []string{"example.com"}} },
		checks: []check{
			{"policy", func(h *corev1.Pod) string { return string(h.Spec.DNSPolicy) }, "None"},
			{"server", func(h *corev1.Pod) string { return h.Spec.DNSConfig.Nameservers[0] }, "10.96.0.10"},
			{"search", func(h *corev1.Pod) string { return strings.Join(h.Spec.DNSConfig.Searches, " ") }, "team.svc.tenant.local svc.tenant.local tenant.local example.com"},
		},
	}, {
		name:    "Default DNS kept",
		runtime: Runtime{DNSServer: "10.96.0.10"},
		virtual: func(v *corev1.Pod) { v.Spec.DNSPolicy = corev1.DNSDefault },
		checks: []check{
			{"policy", func(h *corev1.Pod) string { return string(h.Spec.DNSPolicy) }, "Default"},
			{"config", func(h *corev1.Pod) string { return ptrString(h.Spec.DNSConfig) }, "<nil>"},
		},
	}, {
		name:    "host network keeps the host's DNS unless asked",
		runtime: Runtime{DNSServer: "10.96.0.10"},
		virtual: func(v *corev1.Pod) { v.Spec.HostNetwork = true },
		checks: []check{
			{"policy", func(h *corev1.Pod) string { return string(h.Spec.DNSPolicy) }, ""},
		},
	}, {
		name: "affinity terms select host copies in the host namespace",
		virtual: func(v *corev1.Pod) {
			term := corev1.PodAffinityTerm{
				LabelSelector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
				Namespaces:        []string{"kube-system"},
				NamespaceSelector: &metav1.LabelSelector{},
				TopologyKey:       "kubernetes.io/hostname",
			}
			v.Spec.Affinity = &corev1.Affinity{
				PodAffinity:     &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{term}},
				PodAntiAffinity: &corev1.PodAntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{Weight: 10, PodAffinityTerm: term}}},
			}
			v.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{TopologyKey: "zone", LabelSelector: &metav1.LabelSelector{
				MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"web"}}}}}}
		},
		checks: []check{
			{"affinity label", func(h *corev1.Pod) string {
				return h.Spec.Affinity.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0].LabelSelector.MatchLabels[translate.LabelKey("app")]
			}, "db"},
			{"affinity owner", func(h *corev1.Pod) string {
				return h.Spec.Affinity.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0].LabelSelector.MatchLabels[translate.LabelCopyOf]
			}, "demo"},
			{"affinity virtual namespace", func(h *corev1.Pod) string {
				return h.Spec.Affinity.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0].LabelSelector.MatchLabels[translate.LabelVirtualNS]
			}, "team"},
			{"affinity namespaces", func(h *corev1.Pod) string {
				t := h.Spec.Affinity.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0]
				return strings.Join(t.Namespaces, ",") + ptrString(t.NamespaceSelector)
			}, "<nil>"},
			{"topology kept", func(h *corev1.Pod) string {
				return h.Spec.Affinity.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0].TopologyKey
			}, "kubernetes.io/hostname"},
			{"anti-affinity label", func(h *corev1.Pod) string {
				return h.Spec.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.LabelSelector.MatchLabels[translate.LabelKey("app")]
			}, "db"},
			{"anti-affinity namespaces", func(h *corev1.Pod) string {
				t := h.Spec.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm
				return strings.Join(t.Namespaces, ",") + ptrString(t.NamespaceSelector)
			}, "<nil>"},
			{"spread expression key", func(h *corev1.Pod) string {
				return h.Spec.TopologySpreadConstraints[0].LabelSelector.MatchExpressions[0].Key
			}, translate.LabelKey("app")},
			{"spread owner", func(h *corev1.Pod) string {
				return h.Spec.TopologySpreadConstraints[0].LabelSelector.MatchLabels[translate.LabelCopyOf]
			}, "demo"},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := virtualPod(tt.virtual)
			before := v.DeepCopy()
			tr := tr
			tr.Runtime = tt.runtime
			h, identity, _ := tr.HostPod(v, tt.services)
			for _, c := range tt.checks {
				if got := c.got(h); got != c.want {
					t.Errorf("%s = %q, want %q", c.what, got, c.want)
				}
			}
			if identity != tt.identity {
				t.Errorf("needs identity secret = %v, want %v", identity, tt.identity)
			}
			if !reflect.DeepEqual(v, before) {
				t.Error("HostPod modified the virtual pod")
			}
		})
	}
}

func TestHostPodAnnotations(t *testing.T) {
	v := virtualPod(func(v *corev1.Pod) {
		v.Annotations = map[string]string{
			"checksum/config":                   "abc",
			"cert-manager.io/issuer":            "le",
			"k8s.v1.cni.cncf.io/networks":       "macvlan",
			translate.AnnotationObjectName:      "forged",
			"kubectl.kubernetes.io/restartedAt": "now",
		}
	})
	tests := []struct {
		name        string
		allowed     []string
		kept        []string
		wantDropped []string
	}{
		{name: "base rule", kept: []string{"checksum/config", "kubectl.kubernetes.io/restartedAt"},
			wantDropped: []string{"cert-manager.io/issuer", "k8s.v1.cni.cncf.io/networks", translate.AnnotationObjectName}},
		{name: "allowed by the admin", allowed: []string{"k8s.v1.cni.cncf.io/*"}, kept: []string{"checksum/config", "k8s.v1.cni.cncf.io/networks"},
			wantDropped: []string{"cert-manager.io/issuer", translate.AnnotationObjectName}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _, dropped := Translator{Names: names, Policy: isolation.PodPolicy{AllowedAnnotations: tt.allowed}}.HostPod(v, nil)
			for _, k := range tt.kept {
				if h.Annotations[k] != v.Annotations[k] {
					t.Errorf("annotation %s = %q, want %q", k, h.Annotations[k], v.Annotations[k])
				}
			}
			for _, k := range tt.wantDropped {
				if _, ok := h.Annotations[k]; ok && k != translate.AnnotationObjectName {
					t.Errorf("annotation %s reached the host", k)
				}
			}
			if h.Annotations[translate.AnnotationObjectName] != "web-1" {
				t.Errorf("owner annotation %q: the tenant's own value won", h.Annotations[translate.AnnotationObjectName])
			}
			if !reflect.DeepEqual(dropped, tt.wantDropped) {
				t.Errorf("dropped %v, want %v", dropped, tt.wantDropped)
			}
		})
	}
}

func TestTruncateLabel(t *testing.T) {
	for in, want := range map[string]string{
		"web-1":                          "web-1",
		"web.example":                    "web-example",
		strings.Repeat("a", 63):          strings.Repeat("a", 63),
		strings.Repeat("a", 62) + ".b":   strings.Repeat("a", 62),
		strings.Repeat("a", 61) + "-.bc": strings.Repeat("a", 61),
		strings.Repeat("a", 70):          strings.Repeat("a", 63),
	} {
		if got := truncateLabel(in); got != want {
			t.Errorf("truncateLabel(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestImagesDiffer(t *testing.T) {
	pod := func(images ...string) *corev1.Pod {
		p := &corev1.Pod{}
		for _, i := range images {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Image: i})
		}
		return p
	}
	tests := []struct {
		name string
		a, b *corev1.Pod
		want bool
	}{
		{"same", pod("a", "b"), pod("a", "b"), false},
		{"one changed", pod("a", "b"), pod("a", "c"), true},
		{"different containers are not an image change", pod("a"), pod("a", "b"), false},
		{"no containers", pod(), pod(), false},
	}
	for _, tt := range tests {
		if got := ImagesDiffer(tt.a, tt.b); got != tt.want {
			t.Errorf("%s: ImagesDiffer = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// ptrString prints what p points to, or <nil>.
func ptrString[T any](p *T) string {
	if p == nil {
		return "<nil>"
	}
	return fmt.Sprint(*p)
}
