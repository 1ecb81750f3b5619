package snapshot

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// KeySecret is the Secret, in the platform's namespace of every host
// cluster, that holds the platform's snapshot keys: data "key" is the one
// snapshots are written with; "previous-…" are keys it replaced, still
// used to read snapshots made with them. The platform server gives every
// connected cluster its own key, so their agents read each other's
// snapshots (a move); an agent without a server makes one.
const KeySecret = "sublet-snapshot-key"

// previousPrefix marks the data keys of replaced keys.
const previousPrefix = "previous-"

// Keyring is the keys of a KeySecret.
type Keyring struct {
	// Current writes snapshots.
	Current *Key
	// All reads them (Current first).
	All []*Key
}

// For returns the key of recipient, or Current if none matches (whose
// Extract then says the snapshot is of another platform).
func (r *Keyring) For(recipient string) *Key {
	for _, k := range r.All {
		if k.Recipient() == recipient {
			return k
		}
	}
	return r.Current
}

// ParseKeyring reads the keys of a KeySecret's data.
func ParseKeyring(data map[string][]byte) (*Keyring, error) {
	cur, err := ParseKey(string(data["key"]))
	if err != nil {
		return nil, fmt.Errorf("data key: %w", err)
	}
	r := &Keyring{Current: cur, All: []*Key{cur}}
	var names []string
	for n := range data {
		if strings.HasPrefix(n, previousPrefix) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		k, err := ParseKey(string(data[n]))
		if err != nil {
			return nil, fmt.Errorf("data %s: %w", n, err)
		}
		r.All = append(r.All, k)
	}
	return r, nil
}

// LoadKeyring reads the keys of Secret KeySecret in namespace, making the
// Secret with a new key if there is none. Agents racing to make it all
// end with the one stored first.
func LoadKeyring(ctx context.Context, cs kubernetes.Interface, namespace string) (*Keyring, error) {
	secrets := cs.CoreV1().Secrets(namespace)
	for range 3 {
		s, err := secrets.Get(ctx, KeySecret, metav1.GetOptions{})
		if err == nil {
			r, err := ParseKeyring(s.Data)
			if err != nil {
				return nil, fmt.Errorf("secret %s/%s: %w; a host admin fixes or deletes it (snapshots made with a deleted key can no longer be read)", namespace, KeySecret, err)
			}
			return r, nil
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("read the snapshot key (secret %s/%s): %w", namespace, KeySecret, err)
		}
		k, err := GenerateKey()
		if err != nil {
			return nil, err
		}
		_, err = secrets.Create(ctx, keySecret(namespace, map[string][]byte{"key": []byte(k.Secret())}), metav1.CreateOptions{})
		if err == nil {
			return &Keyring{Current: k, All: []*Key{k}}, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("store a new snapshot key (secret %s/%s): %w", namespace, KeySecret, err)
		}
	}
	return nil, fmt.Errorf("the snapshot key (secret %s/%s) keeps changing", namespace, KeySecret)
}

// ShareKey makes key the current key of Secret KeySecret in namespace of
// cluster cs, keeping a different current key it had as a previous one, so
// the snapshots made with it stay readable. It writes nothing when key is
// already current.
func ShareKey(ctx context.Context, cs kubernetes.Interface, namespace string, key *Key) error {
	secrets := cs.CoreV1().Secrets(namespace)
	s, err := secrets.Get(ctx, KeySecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = secrets.Create(ctx, keySecret(namespace, map[string][]byte{"key": []byte(key.Secret())}), metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	if string(s.Data["key"]) == key.Secret() {
		return nil
	}
	if s.Data == nil {
		s.Data = map[string][]byte{}
	}
	if old, err := ParseKey(string(s.Data["key"])); err == nil {
		s.Data[previousPrefix+strings.TrimPrefix(old.Recipient(), "age1")[:16]] = s.Data["key"]
	}
	s.Data["key"] = []byte(key.Secret())
	_, err = secrets.Update(ctx, s, metav1.UpdateOptions{})
	return err
}

func keySecret(namespace string, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: KeySecret, Namespace: namespace,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "sublet"}},
		Type: corev1.SecretTypeOpaque,
		Data: data,
	}
}
