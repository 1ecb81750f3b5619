package controlplane

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
)

// storedValue is a key's value and revision in the datastore.
type storedValue struct {
	modRevision int64
	value       string
}

// TestReidentifyRewrites writes objects as the API server stores them to a
// kine datastore, reidentifies it, and reads back: kube-system has a new
// UID and nothing else new; service-account token secrets lost their token,
// CA and namespace, and nothing else; no other key changed. Over 400
// secrets make the listing take several pages.
func TestReidentifyRewrites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	d := dataDir{root: dir}
	if err := d.prepare(DatastoreSQLite); err != nil {
		t.Fatal(err)
	}
	created := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	kubeSystem := &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-system", UID: "0b1d1c57-0000-4000-8000-000000000001", CreationTimestamp: created,
			Labels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}, Annotations: map[string]string{"a": "b"}},
		Spec:   corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{corev1.FinalizerKubernetes}},
		Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive},
	}
	robotToken := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "robot-token", Namespace: "default", UID: "0b1d1c57-0000-4000-8000-000000000002", CreationTimestamp: created,
			Labels:      map[string]string{"app": "robot"},
			Annotations: map[string]string{corev1.ServiceAccountNameKey: "robot", corev1.ServiceAccountUIDKey: "0b1d1c57-0000-4000-8000-000000000003", "keep": "me"}},
		Type: corev1.SecretTypeServiceAccountToken,
		Data: map[string][]byte{"token": []byte("eyJ.old.token"), "ca.crt": []byte("old CA"), "namespace": []byte("default"), "extra": []byte("kept")},
	}
	lastToken := robotToken.DeepCopy()
	lastToken.Name, lastToken.Namespace = "last", "zz-last"
	objects := map[string]runtime.Object{
		"/registry/namespaces/kube-system":      kubeSystem,
		"/registry/namespaces/default":          &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default", UID: "0b1d1c57-0000-4000-8000-000000000004"}},
		"/registry/secrets/default/robot-token": robotToken,
		"/registry/secrets/zz-last/last":        lastToken,
		"/registry/secrets/default/opaque": &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "opaque", Namespace: "default"},
			Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"token": []byte("not a service-account token"), "ca.crt": []byte("x")}},
		"/registry/secrets/default/unfilled": &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "unfilled", Namespace: "default",
			Annotations: map[string]string{corev1.ServiceAccountNameKey: "robot"}}, Type: corev1.SecretTypeServiceAccountToken},
		"/registry/serviceaccounts/default/robot": &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "robot", Namespace: "default"}},
	}
	for i := range 2*secretsPerPage + 10 {
		name := fmt.Sprintf("s-%03d", i)
		objects["/registry/secrets/filler/"+name] = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "filler"}, Data: map[string][]byte{"k": []byte(name)}}
	}
	before := withKine(t, d, func(c *clientv3.Client) map[string]storedValue {
		for key, obj := range objects {
			if err := createKey(ctx, c, key, encodeAsAPIServer(t, obj)); err != nil {
				t.Fatal(err)
			}
		}
		return readAll(ctx, t, c)
	})

	clusterID, err := Reidentify(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}

	after := withKine(t, d, func(c *clientv3.Client) map[string]storedValue { return readAll(ctx, t, c) })
	if clusterID == "" || clusterID == string(kubeSystem.UID) {
		t.Errorf("Reidentify returned cluster ID %q; want a new UID", clusterID)
	}
	wantNS := kubeSystem.DeepCopy()
	wantNS.UID = types.UID(clusterID)
	wantToken := robotToken.DeepCopy()
	wantToken.Data = map[string][]byte{"extra": []byte("kept")}
	wantLast := lastToken.DeepCopy()
	wantLast.Data = wantToken.Data
	changed := map[string]runtime.Object{
		"/registry/namespaces/kube-system":      wantNS,
		"/registry/secrets/default/robot-token": wantToken,
		"/registry/secrets/zz-last/last":        wantLast,
	}
	if len(after) != len(before) {
		t.Errorf("%d keys after Reidentify, %d before", len(after), len(before))
	}
	for key, was := range before {
		now := after[key]
		want, ok := changed[key]
		if !ok {
			if now != was {
				t.Errorf("%s changed (revision %d to %d)", key, was.modRevision, now.modRevision)
			}
			continue
		}
		got := decodeAsAPIServer(t, now.value, want.DeepCopyObject())
		if !apiequality.Semantic.DeepEqual(got, want) {
			t.Errorf("%s after Reidentify:\n got %#v\nwant %#v", key, got, want)
		}
	}
}

// withKine runs f with a client of kine started on the data dir's SQLite
// file, and stops kine.
func withKine[T any](t *testing.T, d dataDir, f func(*clientv3.Client) T) T {
	t.Helper()
	p := d.pkiDir()
	if err := p.Ensure(nil); err != nil {
		t.Fatal(err)
	}
	store := &kineStore{file: d.sqlite(), pki: p, reclaimEvery: -1}
	url, err := store.start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer store.stop()
	client, err := clientv3.New(etcdClientConfig(t, p, url))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	return f(client)
}

// readAll reads every key under /registry/.
func readAll(ctx context.Context, t *testing.T, c *clientv3.Client) map[string]storedValue {
	t.Helper()
	resp, err := c.Get(ctx, "/registry/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]storedValue{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = storedValue{modRevision: kv.ModRevision, value: string(kv.Value)}
	}
	return out
}

// encodeAsAPIServer encodes obj as the API server stores it: protobuf in
// the object's external version.
func encodeAsAPIServer(t *testing.T, obj runtime.Object) []byte {
	t.Helper()
	info, ok := runtime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), runtime.ContentTypeProtobuf)
	if !ok {
		t.Fatal("no protobuf serializer")
	}
	data, err := runtime.Encode(scheme.Codecs.EncoderForVersion(info.Serializer, corev1.SchemeGroupVersion), obj)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func decodeAsAPIServer(t *testing.T, value string, into runtime.Object) runtime.Object {
	t.Helper()
	obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(value), nil, into)
	if err != nil {
		t.Fatal(err)
	}
	// The objects to compare with have no type meta.
	obj.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{})
	return obj
}

func TestReidentifyRefusals(t *testing.T) {
	ctx := context.Background()
	running := t.TempDir()
	if err := (dataDir{root: running}).prepare(DatastoreSQLite); err != nil {
		t.Fatal(err)
	}
	lock, err := dataDir{root: running}.lock()
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	empty := t.TempDir()
	emptyDir := dataDir{root: empty}
	if err := emptyDir.prepare(DatastoreSQLite); err != nil {
		t.Fatal(err)
	}
	withKine(t, emptyDir, func(*clientv3.Client) any { return nil })
	noStore := t.TempDir()
	if err := (dataDir{root: noStore}).prepare(DatastoreEtcd); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, dir, want string }{
		{"not a data dir", t.TempDir(), "is not a sublet data dir"},
		{"in use", running, "in use by another sublet process"},
		{"no datastore", noStore, "holds no etcd datastore"},
		{"never ran", empty, "has no /registry/namespaces/kube-system"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Reidentify(ctx, tc.dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Reidentify: %v; want an error saying %q", err, tc.want)
			}
		})
	}
}

func TestReidentifyClearTokenData(t *testing.T) {
	for _, tc := range []struct {
		name        string
		secret      corev1.Secret
		wantChanged bool
		wantData    map[string][]byte
	}{
		{"token secret", corev1.Secret{Type: corev1.SecretTypeServiceAccountToken,
			Data: map[string][]byte{"token": []byte("t"), "ca.crt": []byte("c"), "namespace": []byte("n"), "other": []byte("o")}},
			true, map[string][]byte{"other": []byte("o")}},
		{"token only", corev1.Secret{Type: corev1.SecretTypeServiceAccountToken, Data: map[string][]byte{"token": []byte("t")}},
			true, map[string][]byte{}},
		{"not filled yet", corev1.Secret{Type: corev1.SecretTypeServiceAccountToken}, false, nil},
		{"opaque", corev1.Secret{Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"token": []byte("t")}},
			false, map[string][]byte{"token": []byte("t")}},
		{"no type", corev1.Secret{Data: map[string][]byte{"token": []byte("t")}}, false, map[string][]byte{"token": []byte("t")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.secret.DeepCopy()
			if changed := clearTokenData(s); changed != tc.wantChanged {
				t.Errorf("changed %v, want %v", changed, tc.wantChanged)
			}
			if !apiequality.Semantic.DeepEqual(s.Data, tc.wantData) {
				t.Errorf("data %v, want %v", s.Data, tc.wantData)
			}
		})
	}
}
