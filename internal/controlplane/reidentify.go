package controlplane

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"time"

	"github.com/sublet-dev/sublet/internal/pki"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes/scheme"
)

// registryPrefix is where the API server keeps its objects in the
// datastore: its --etcd-prefix, which apiserverArgs leaves at the default.
const registryPrefix = "/registry"

// secretsPerPage is how many secrets Reidentify reads at a time.
const secretsPerPage = 200

// storedPrefix starts every object the API server stores in protobuf: the
// magic number of the protobuf serializer. Anything else (JSON, or a value
// encrypted at rest) cannot be rewritten here.
var storedPrefix = []byte("k8s\x00")

// Reidentify gives the copied datastore in the data dir dir a new identity
// before a control plane first starts on it, and returns the fork's
// cluster ID, the new UID of its kube-system namespace. Service-account
// token secrets lose their token, CA and namespace, which the
// controller-manager's token controller fills in again, signing with the
// fork's key: a fork must not hold tokens valid on the cluster it was
// copied from.
//
// No control plane may run on dir (its lock is held meanwhile). Reidentify
// creates the certificates of dir/pki it needs to reach the datastore if
// they are missing; it does not replace a CA or service-account key found
// there, so a fork must come without the source's pki directory.
func Reidentify(ctx context.Context, dir string) (clusterID string, err error) {
	err = EditDatastore(ctx, dir, func(ctx context.Context, c *clientv3.Client) error {
		if clusterID, err = renewClusterID(ctx, c); err != nil {
			return err
		}
		return clearServiceAccountTokens(ctx, c)
	})
	return clusterID, err
}

// EditDatastore starts the datastore of the data dir dir alone (no API
// server; its lock is held meanwhile, so no control plane may run on it)
// and calls edit with a client of it, as the API server reaches it. It
// creates the certificates of dir/pki it needs that are missing.
func EditDatastore(ctx context.Context, dir string, edit func(context.Context, *clientv3.Client) error) error {
	ds, err := DatastoreOf(dir)
	if err != nil {
		return err
	}
	d := dataDir{root: dir}
	lock, err := d.lock()
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := d.checkCopiedDatastore(ds); err != nil {
		return err
	}
	p := d.pkiDir()
	if err := p.Ensure([]string{"127.0.0.1", "localhost"}); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	store, err := d.datastoreAlone(ds, p)
	if err != nil {
		return err
	}
	url, err := store.start(ctx)
	if err != nil {
		return fmt.Errorf("datastore (%s): %w", ds, err)
	}
	defer store.stop()
	client, err := dialDatastore(p, url)
	if err != nil {
		return err
	}
	defer client.Close()
	return edit(ctx, client)
}

// CreateStored stores obj (with its kind set) under key, as the API server
// would, unless key exists. The key of a namespaced object is
// /registry/RESOURCE/NAMESPACE/NAME.
func CreateStored(ctx context.Context, c *clientv3.Client, key string, obj runtime.Object) error {
	return replaceStored(ctx, c, key, 0, 0, obj)
}

// checkCopiedDatastore fails unless the data dir holds an intact datastore
// of kind ds.
func (d dataDir) checkCopiedDatastore(ds string) error {
	where := d.sqlite()
	if ds == DatastoreEtcd {
		where = d.etcd()
	}
	if _, err := os.Stat(where); err != nil {
		return fmt.Errorf("data dir %s holds no %s datastore to reidentify: %w", d.root, ds, unwrapPathError(err))
	}
	return d.checkDatastore(ds)
}

// datastoreAlone is the datastore of kind ds on the data dir, as a control
// plane would start it, but without upkeep of its own.
func (d dataDir) datastoreAlone(ds string, p pki.Dir) (datastore, error) {
	if ds == DatastoreSQLite {
		return &kineStore{file: d.sqlite(), pki: p, reclaimEvery: -1}, nil
	}
	if err := os.MkdirAll(d.logs(), 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", d.logs(), err)
	}
	return d.etcdStore(p), nil
}

// dialDatastore connects to the datastore at url as the API server does.
func dialDatastore(p pki.Dir, url string) (*clientv3.Client, error) {
	tlsInfo := transport.TLSInfo{
		CertFile:      p.ClientCert(pki.APIServerEtcdClient),
		KeyFile:       p.ClientKey(pki.APIServerEtcdClient),
		TrustedCAFile: p.CACert(),
	}
	tlsConfig, err := tlsInfo.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("datastore client TLS: %w", err)
	}
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, TLS: tlsConfig, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("connect to the datastore at %s: %w", url, err)
	}
	return client, nil
}

// renewClusterID gives the kube-system namespace a new UID and returns it.
func renewClusterID(ctx context.Context, c *clientv3.Client) (string, error) {
	key := registryPrefix + "/namespaces/" + metav1.NamespaceSystem
	resp, err := c.Get(ctx, key)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return "", fmt.Errorf("the datastore has no %s: it is not the datastore of a control plane that has run, or its API server had another --etcd-prefix", key)
	}
	kv := resp.Kvs[0]
	ns := &corev1.Namespace{}
	if err := decodeStored(kv.Key, kv.Value, ns); err != nil {
		return "", err
	}
	ns.UID = uuid.NewUUID()
	if err := replaceStored(ctx, c, string(kv.Key), kv.ModRevision, kv.Lease, ns); err != nil {
		return "", err
	}
	return string(ns.UID), nil
}

// clearServiceAccountTokens drops the data of every service-account token
// secret that the token controller fills in.
func clearServiceAccountTokens(ctx context.Context, c *clientv3.Client) error {
	prefix := registryPrefix + "/secrets/"
	end := clientv3.GetPrefixRangeEnd(prefix)
	for from := prefix; ; {
		resp, err := c.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(secretsPerPage))
		if err != nil {
			return fmt.Errorf("list %s: %w", prefix, err)
		}
		for _, kv := range resp.Kvs {
			secret := &corev1.Secret{}
			if err := decodeStored(kv.Key, kv.Value, secret); err != nil {
				return err
			}
			if !clearTokenData(secret) {
				continue
			}
			if err := replaceStored(ctx, c, string(kv.Key), kv.ModRevision, kv.Lease, secret); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// tokenControllerKeys are the data keys of a service-account token secret
// that the token controller fills in when they are missing.
var tokenControllerKeys = []string{corev1.ServiceAccountTokenKey, corev1.ServiceAccountRootCAKey, corev1.ServiceAccountNamespaceKey}

// clearTokenData drops from s, if it is a service-account token secret, the
// data the token controller fills in, and reports whether s changed.
func clearTokenData(s *corev1.Secret) bool {
	if s.Type != corev1.SecretTypeServiceAccountToken {
		return false
	}
	changed := false
	for _, k := range tokenControllerKeys {
		if _, ok := s.Data[k]; ok {
			delete(s.Data, k)
			changed = true
		}
	}
	return changed
}

// storageSerializer reads and writes objects as the API server stores them.
func storageSerializer() *protobuf.Serializer {
	return protobuf.NewSerializer(scheme.Scheme, scheme.Scheme)
}

// decodeStored decodes the object the API server stored under key into
// into.
func decodeStored(key, value []byte, into runtime.Object) error {
	if !bytes.HasPrefix(value, storedPrefix) {
		return fmt.Errorf("%s is not stored in protobuf (encrypted at rest?); it cannot be rewritten", key)
	}
	if _, _, err := storageSerializer().Decode(value, nil, into); err != nil {
		return fmt.Errorf("decode %s: %w", key, err)
	}
	return nil
}

// replaceStored writes obj back under key, with the lease it had, unless
// the key changed since its revision modRevision, when obj was read.
func replaceStored(ctx context.Context, c *clientv3.Client, key string, modRevision, lease int64, obj runtime.Object) error {
	var buf bytes.Buffer
	if obj.GetObjectKind().GroupVersionKind() == (schema.GroupVersionKind{}) {
		return fmt.Errorf("encode %s: the object has lost its kind", key)
	}
	if err := storageSerializer().Encode(obj, &buf); err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	var opts []clientv3.OpOption
	if lease != 0 {
		opts = append(opts, clientv3.WithLease(clientv3.LeaseID(lease)))
	}
	// The one form of conditional write that both etcd and kine accept.
	resp, err := c.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", modRevision)).
		Then(clientv3.OpPut(key, buf.String(), opts...)).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("write %s: it changed while being rewritten; is a process using the datastore?", key)
	}
	return nil
}
