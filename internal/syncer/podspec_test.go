package syncer

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

var update = flag.Bool("update", false, "rewrite testdata/podspec-fields.txt from corev1.PodSpec")

// What the syncer does with each field of a virtual pod's spec on the way
// to the host. A decision covers the field and everything below it; the
// golden list testdata/podspec-fields.txt pins what "everything below" was
// when the decision was made, so a Kubernetes upgrade that adds a field
// anywhere fails TestPodSpecFieldsHaveDecisions until someone decides.
const (
	translated = "translated to this virtual cluster's own host copy"
	cleared    = "cleared: the host decides (scheduling, identity)"
	refused    = "refused: the pod stays off the host (pod.HostReferences)"
	checked    = "kept, and checked against the Pod Security level"
	kept       = "kept: names no host object"
)

var podSpecDecisions = map[string]string{
	"Volumes[].Name":                                    kept,
	"Volumes[].HostPath":                                checked,
	"Volumes[].EmptyDir":                                kept,
	"Volumes[].Secret":                                  translated,
	"Volumes[].ConfigMap":                               translated,
	"Volumes[].PersistentVolumeClaim":                   translated,
	"Volumes[].DownwardAPI":                             translated, // name, namespace, uid, labels: the virtual pod's (translateIdentity)
	"Volumes[].Projected.Sources[].Secret":              translated,
	"Volumes[].Projected.Sources[].ConfigMap":           translated,
	"Volumes[].Projected.Sources[].DownwardAPI":         translated,
	"Volumes[].Projected.Sources[].ServiceAccountToken": translated, // minted by the virtual API server
	"Volumes[].Projected.Sources[].ClusterTrustBundle":  refused,
	"Volumes[].Projected.Sources[].PodCertificate":      refused,
	"Volumes[].Projected.DefaultMode":                   kept,
	"Volumes[].Projected.DefaultUser":                   kept,
	"Volumes[].NFS":                                     refused,    // the node mounts any server for the tenant, outside network policies
	"Volumes[].Ephemeral":                               translated, // the claim template as PVCs are (pod.ClaimTemplate); recorded as kept before issue 34 and was not safe
	"Volumes[].Image":                                   kept,
	"Volumes[].CSI":                                     refused, // with nodePublishSecretRef, or a driver the admin does not allow (isolation.pods.allowedCSIDrivers)
	"Volumes[].GCEPersistentDisk":                       refused,
	"Volumes[].AWSElasticBlockStore":                    refused,
	"Volumes[].GitRepo":                                 refused,
	"Volumes[].ISCSI":                                   refused,
	"Volumes[].Glusterfs":                               refused,
	"Volumes[].RBD":                                     refused,
	"Volumes[].FlexVolume":                              refused,
	"Volumes[].Cinder":                                  refused,
	"Volumes[].CephFS":                                  refused,
	"Volumes[].Flocker":                                 refused,
	"Volumes[].FC":                                      refused,
	"Volumes[].AzureFile":                               refused,
	"Volumes[].VsphereVolume":                           refused,
	"Volumes[].Quobyte":                                 refused,
	"Volumes[].AzureDisk":                               refused,
	"Volumes[].PhotonPersistentDisk":                    refused,
	"Volumes[].PortworxVolume":                          refused,
	"Volumes[].ScaleIO":                                 refused,
	"Volumes[].StorageOS":                               refused,

	"RestartPolicy":                 kept,
	"TerminationGracePeriodSeconds": kept,
	"ActiveDeadlineSeconds":         kept,
	"DNSPolicy":                     translated, // ClusterFirst → the virtual cluster's DNS (translateDNS)
	"DNSConfig":                     translated,
	"NodeSelector":                  restricted, // the admin's isolation.pods.nodeSelector wins
	"ServiceAccountName":            cleared,
	"DeprecatedServiceAccount":      cleared,
	"AutomountServiceAccountToken":  cleared,
	"NodeName":                      cleared,
	"SchedulerName":                 cleared,
	"SchedulingGates":               cleared, // the syncer waits while the virtual pod has any
	"PriorityClassName":             cleared,
	"Priority":                      cleared,
	"PreemptionPolicy":              kept,
	"HostNetwork":                   checked,
	"HostPID":                       checked,
	"HostIPC":                       checked,
	"HostUsers":                     checked,
	"ShareProcessNamespace":         kept,
	"SecurityContext":               checked,
	"ImagePullSecrets":              translated,
	"Hostname":                      kept,
	"HostnameOverride":              kept,
	"Subdomain":                     cleared,
	"SetHostnameAsFQDN":             kept,
	"Affinity.NodeAffinity":         kept,       // ANDed with the admin's nodeSelector
	"Affinity.PodAffinity":          translated, // selectors rewritten, namespaces dropped
	"Affinity.PodAntiAffinity":      translated,
	"TopologySpreadConstraints":     translated,
	"Tolerations":                   restricted, // node condition taints and isolation.pods.allowedTolerations
	"HostAliases":                   kept,
	"ReadinessGates":                kept,
	"RuntimeClassName":              refused,
	"EnableServiceLinks":            translated, // the virtual namespace's services (translateEnv)
	"Overhead":                      kept,
	"OS":                            kept,
	"ResourceClaims":                refused,
	"Resources":                     kept, // its claims name the pod's resourceClaims, refused above
	"SchedulingGroup":               refused,
	"EvictionResponders":            refused,
}

// containerDecisions hold for Containers, InitContainers and
// EphemeralContainers alike.
var containerDecisions = map[string]string{
	"Name": kept, "Image": kept, "Command": kept, "Args": kept, "WorkingDir": kept,
	"Ports":                    checked, // hostPort
	"EnvFrom":                  translated,
	"Env":                      translated, // configMapKeyRef, secretKeyRef, fieldRef; fileKeyRef and resourceFieldRef read the pod itself
	"Resources":                kept,
	"ResizePolicy":             kept,
	"RestartPolicy":            kept,
	"RestartPolicyRules":       kept,
	"VolumeMounts":             kept, // names the pod's own volumes
	"VolumeDevices":            kept,
	"LivenessProbe":            checked, // probe hosts
	"ReadinessProbe":           checked,
	"StartupProbe":             checked,
	"Lifecycle":                checked,
	"TerminationMessagePath":   kept,
	"TerminationMessagePolicy": kept,
	"ImagePullPolicy":          kept,
	"SecurityContext":          checked,
	"Stdin":                    kept, "StdinOnce": kept, "TTY": kept,
	"TargetContainerName": kept, // ephemeral containers only
}

// podSpecPaths walks t and returns every field path below it, in the form
// Volumes[].CSI.NodePublishSecretRef; leaves are non-struct types and
// API machinery types (quantities, times).
func podSpecPaths(t reflect.Type, path string, out *[]string, seen map[reflect.Type]bool) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		if t.Kind() != reflect.Pointer {
			path += "[]"
		}
		t = t.Elem()
	}
	if path != "" {
		*out = append(*out, path)
	}
	walked := strings.HasPrefix(t.PkgPath(), "k8s.io/api/") || strings.HasPrefix(t.PkgPath(), "sigs.k8s.io/gateway-api/")
	if t.Kind() != reflect.Struct || !walked || seen[t] {
		return
	}
	seen[t] = true
	defer delete(seen, t)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		p := f.Name
		switch {
		case f.Anonymous:
			p = path
		case path != "":
			p = path + "." + f.Name
		}
		podSpecPaths(f.Type, p, out, seen)
	}
}

// checkFieldsGolden compares the field paths of a type with
// testdata/NAME-fields.txt (rewritten with -update): a field added since the
// decisions were made fails until someone decides for it in where.
func checkFieldsGolden(t *testing.T, name, typ, where string, paths []string) {
	t.Helper()
	golden := filepath.Join("testdata", name+"-fields.txt")
	got := strings.Join(paths, "\n") + "\n"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test ./internal/syncer -run %s -update writes it)", err, t.Name())
	}
	if got == string(want) {
		return
	}
	known := map[string]bool{}
	for _, p := range strings.Split(string(want), "\n") {
		known[p] = true
	}
	var added []string
	for _, p := range paths {
		if !known[p] {
			added = append(added, p)
		}
	}
	t.Errorf("%s changed since the decisions were made; new fields: %v. Decide for each (%s), then rerun with -update", typ, added, where)
}

// decisionFor finds the decision recorded for path or an ancestor of it.
func decisionFor(path string) (string, bool) {
	if d, ok := kindDecision(podSpecDecisions, path); ok {
		return d, true
	}
	for _, list := range []string{"Containers[].", "InitContainers[].", "EphemeralContainers[]."} {
		if rest, ok := strings.CutPrefix(path, list); ok {
			return kindDecision(containerDecisions, rest)
		}
	}
	return "", false
}

func TestPodSpecFieldsHaveDecisions(t *testing.T) {
	var paths []string
	podSpecPaths(reflect.TypeOf(corev1.PodSpec{}), "", &paths, map[reflect.Type]bool{})
	sort.Strings(paths)
	checkFieldsGolden(t, "podspec", "corev1.PodSpec", "podSpecDecisions, hostPod, pod.HostReferences", paths)
	var undecided []string
	for _, p := range paths {
		// Containers, volumes and their lists are decided field by field.
		switch p {
		case "Volumes[]", "Volumes[].Projected", "Volumes[].Projected.Sources[]", "Affinity",
			"Containers[]", "InitContainers[]", "EphemeralContainers[]":
			continue
		}
		if _, ok := decisionFor(p); !ok {
			undecided = append(undecided, p)
		}
	}
	if len(undecided) > 0 {
		t.Errorf("PodSpec fields with no decision recorded in podSpecDecisions: %v", undecided)
	}
}
