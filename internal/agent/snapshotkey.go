package agent

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/snapshot"
)

// SnapshotKeySecret is the Secret (in the agent's policy namespace) whose
// key "key" is the platform's snapshot key. Every agent that should read
// another's snapshots (a move between host clusters) needs the same one.
const SnapshotKeySecret = "sublet-snapshot-key"

// snapshotKey reads the platform's snapshot key, making it on first use.
// Agents racing to make it all end with the one stored first.
func snapshotKey(ctx context.Context, host kubernetes.Interface, namespace string) (*snapshot.Key, error) {
	secrets := host.CoreV1().Secrets(namespace)
	for range 3 {
		s, err := secrets.Get(ctx, SnapshotKeySecret, metav1.GetOptions{})
		if err == nil {
			k, err := snapshot.ParseKey(string(s.Data["key"]))
			if err != nil {
				return nil, fmt.Errorf("secret %s/%s: %w; delete it to make a new key (snapshots made with the old one can then not be read)", namespace, SnapshotKeySecret, err)
			}
			return k, nil
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("read the snapshot key (secret %s/%s): %w", namespace, SnapshotKeySecret, err)
		}
		k, err := snapshot.GenerateKey()
		if err != nil {
			return nil, err
		}
		_, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: SnapshotKeySecret, Namespace: namespace,
				Labels: map[string]string{storagev1.LabelManagedBy: storagev1.AgentName}},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{"key": []byte(k.Secret())},
		}, metav1.CreateOptions{})
		if err == nil {
			return k, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("store the new snapshot key (secret %s/%s): %w", namespace, SnapshotKeySecret, err)
		}
	}
	return nil, fmt.Errorf("the snapshot key (secret %s/%s) keeps changing", namespace, SnapshotKeySecret)
}
