package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestVClusterConfigMapsAndSecretsFollowPods: configmaps and secrets are
// copied to the host exactly while a pod uses them; a pod whose secret the
// tenant did not create never gets a host pod, even when the host has an
// object under the translated name.
func TestVClusterConfigMapsAndSecretsFollowPods(t *testing.T) {
	needHost(t)
	ctx := context.Background()
	hostNS := createNamespace(t, host.Client, "vc-copies")
	const vcName = "copies"
	hname := func(n string) string { return fmt.Sprintf("%s-x-default-x-%s", n, vcName) }

	// A host secret under the name a tenant secret "planted" would get.
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: hname("planted")}, StringData: map[string]string{"token": "host-only"}}
	if _, err := host.Client.CoreV1().Secrets(hostNS).Create(ctx, foreign, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	vc := startVCluster(t, vcName, hostNS)
	v := vc.Client.CoreV1()
	waitDefaultServiceAccount(t, vc.Client, "default")
	mustCreate := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := v.ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings"}, Data: map[string]string{"color": "blue"}}, metav1.CreateOptions{})
	mustCreate(err)
	_, err = v.ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "lonely"}, Data: map[string]string{"a": "b"}}, metav1.CreateOptions{})
	mustCreate(err)
	_, err = v.Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"}, StringData: map[string]string{"password": "s3cret"}}, metav1.CreateOptions{})
	mustCreate(err)

	app := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Spec: corev1.PodSpec{
			Volumes: []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}}},
			Containers: []corev1.Container{{
				Name: "app", Image: "app",
				Env: []corev1.EnvVar{{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "password"}}}},
				VolumeMounts: []corev1.VolumeMount{{Name: "cfg", MountPath: "/cfg"}},
			}},
		},
	}
	_, err = v.Pods("default").Create(ctx, app, metav1.CreateOptions{})
	mustCreate(err)
	waitPodRunning(t, vc, "default", "app")

	cm, err := host.Client.CoreV1().ConfigMaps(hostNS).Get(ctx, hname("settings"), metav1.GetOptions{})
	if err != nil || cm.Data["color"] != "blue" {
		t.Fatalf("host copy of configmap settings: %v %v", cm, err)
	}
	sec, err := host.Client.CoreV1().Secrets(hostNS).Get(ctx, hname("db"), metav1.GetOptions{})
	if err != nil || string(sec.Data["password"]) != "s3cret" {
		t.Fatalf("host copy of secret db: %v", err)
	}
	if _, err := host.Client.CoreV1().ConfigMaps(hostNS).Get(ctx, hname("lonely"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("configmap no pod uses was copied to the host (err=%v)", err)
	}

	// An update reaches the host copy.
	cmv, err := v.ConfigMaps("default").Get(ctx, "settings", metav1.GetOptions{})
	mustCreate(err)
	cmv.Data["color"] = "green"
	_, err = v.ConfigMaps("default").Update(ctx, cmv, metav1.UpdateOptions{})
	mustCreate(err)
	poll(t, 30*time.Second, "host configmap updated", func(ctx context.Context) (bool, error) {
		cm, err := host.Client.CoreV1().ConfigMaps(hostNS).Get(ctx, hname("settings"), metav1.GetOptions{})
		return err == nil && cm.Data["color"] == "green", nil
	})

	// A pod using a secret the tenant never created gets no host pod, and
	// the host's own secret under that name is left alone.
	thief := app.DeepCopy()
	thief.Name = "thief"
	thief.Spec.Containers[0].Env[0].ValueFrom.SecretKeyRef.Name = "planted"
	_, err = v.Pods("default").Create(ctx, thief, metav1.CreateOptions{})
	mustCreate(err)
	// The syncer has looked at the pod once it reports why it waits.
	waitEvent(t, vc.Client, "default", "Pod", "thief", "FailedMount", `secret "planted" not found`)
	if _, err := host.Client.CoreV1().Pods(hostNS).Get(ctx, hname("thief"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("host pod created for a pod whose secret does not exist in the virtual cluster (err=%v)", err)
	}
	// Even once the tenant creates "planted", the host secret is not theirs.
	_, err = v.Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "planted"}, StringData: map[string]string{"token": "tenant"}}, metav1.CreateOptions{})
	mustCreate(err)
	// The syncer has tried to copy it once it reports the host name taken;
	// without its own copy on the host the pod cannot start.
	waitEvent(t, vc.Client, "default", "Secret", "planted", "HostNameConflict", hname("planted"))
	if _, err := host.Client.CoreV1().Pods(hostNS).Get(ctx, hname("thief"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("host pod created against a host secret the virtual cluster does not own (err=%v)", err)
	}
	if s, err := host.Client.CoreV1().Secrets(hostNS).Get(ctx, hname("planted"), metav1.GetOptions{}); err != nil || string(s.Data["token"]) != "host-only" {
		t.Errorf("host secret overwritten or removed: %v", err)
	}

	// Once no pod uses them, the host copies go.
	for _, name := range []string{"app", "thief"} {
		if err := v.Pods("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	poll(t, 30*time.Second, "host copies removed", func(ctx context.Context) (bool, error) {
		_, err1 := host.Client.CoreV1().ConfigMaps(hostNS).Get(ctx, hname("settings"), metav1.GetOptions{})
		_, err2 := host.Client.CoreV1().Secrets(hostNS).Get(ctx, hname("db"), metav1.GetOptions{})
		return apierrors.IsNotFound(err1) && apierrors.IsNotFound(err2), nil
	})
}
