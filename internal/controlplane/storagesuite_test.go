package controlplane

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sublet-dev/sublet/internal/pki"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/kubernetes"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3rpc"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/api/apitesting"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/apis/example"
	examplev1 "k8s.io/apiserver/pkg/apis/example/v1"
	"k8s.io/apiserver/pkg/features"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/etcd3"
	etcdfeature "k8s.io/apiserver/pkg/storage/feature"
	storagetesting "k8s.io/apiserver/pkg/storage/testing"
	"k8s.io/apiserver/pkg/storage/value"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/component-base/featuregate"
	featuregatetesting "k8s.io/component-base/featuregate/testing"
	"k8s.io/utils/clock"
)

// TestStorageInterface runs k8s.io/apiserver's storage-interface suite, the
// contract the API server's etcd3 store keeps towards the registry, against
// that store on both our datastores: kine over SQLite as a virtual cluster
// configures it, and the embedded etcd as the control. A case that fails
// under sqlite but passes under etcd is a place where kine answers the etcd
// API differently from etcd.
//
// The cases, their arguments and the feature gates they set follow
// upstream's own etcd3 tests (pkg/storage/etcd3/store_test.go and
// watcher_test.go). Unlike upstream, which starts an etcd per case, each
// datastore runs once and every case gets its own key prefix; cases that
// compact, or whose assertions name raw etcd keys, get a datastore of their
// own.
func TestStorageInterface(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kine and etcd and runs the whole storage suite against each")
	}
	codec := suiteCodec(t)
	kinds := []struct {
		name  string
		start func(t *testing.T, p pki.Dir) string
		// progressNotify makes the datastore send watch progress
		// notifications every second from now until t ends, as upstream's
		// progress-notify cases want; nil leaves the datastore as it is.
		progressNotify func(t *testing.T)
	}{
		// kine sends progress notifications at its configured
		// NotifyInterval (5s), within the suite's 30s wait.
		{name: "sqlite", start: startSuiteKine},
		{name: "etcd", start: startSuiteEtcd, progressNotify: etcdProgressEverySecond},
	}
	for _, kind := range kinds {
		t.Run(kind.name, func(t *testing.T) {
			// Which etcd features the store may use is process-wide state;
			// what one datastore taught it must not carry to the other.
			freshFeatureSupportChecker(t)
			p := pki.Dir{Path: t.TempDir()}
			if err := p.Ensure([]string{"127.0.0.1", "localhost"}); err != nil {
				t.Fatal(err)
			}
			ds := &suiteDatastore{
				pki:            p,
				codec:          codec,
				start:          kind.start,
				progressNotify: kind.progressNotify,
			}
			ds.shared = ds.start(t, p)
			for _, c := range storageSuiteCases() {
				t.Run(c.name, func(t *testing.T) { c.run(t, ds) })
			}
		})
	}
}

// storageSuiteCase is one function of the upstream suite with the setup
// upstream gives it for the etcd3 store.
type storageSuiteCase struct {
	name string
	run  func(t *testing.T, ds *suiteDatastore)
}

// storageSuiteCases lists every storagetesting function upstream runs
// against the etcd3 store, with upstream's arguments and feature gates.
// Left out: RunTestOptionalWatchBookmarksWithCorrectResourceVersion, which
// upstream runs against the watch cache only.
func storageSuiteCases() []storageSuiteCase {
	// plain and transforming are the cases that need only a store on the
	// shared datastore.
	plain := func(name string, run func(context.Context, *testing.T, storage.Interface)) storageSuiteCase {
		return storageSuiteCase{name, func(t *testing.T, ds *suiteDatastore) {
			e := ds.setup(t, suiteOptions{})
			run(e.ctx, t, e.store)
		}}
	}
	transforming := func(name string, run func(context.Context, *testing.T, storagetesting.InterfaceWithPrefixTransformer)) storageSuiteCase {
		return storageSuiteCase{name, func(t *testing.T, ds *suiteDatastore) {
			e := ds.setup(t, suiteOptions{})
			run(e.ctx, t, e.store)
		}}
	}
	private := suiteOptions{private: true}
	unsafeDelete := features.AllowUnsafeMalformedObjectDeletion

	return []storageSuiteCase{
		// Store cases, as upstream's store_test.go.
		{"Create", func(t *testing.T, ds *suiteDatastore) {
			e := ds.setup(t, suiteOptions{})
			storagetesting.RunTestCreate(e.ctx, t, e.store, e.checkStored)
		}},
		plain("CreateWithTTL", storagetesting.RunTestCreateWithTTL),
		plain("CreateWithKeyExist", storagetesting.RunTestCreateWithKeyExist),
		plain("Get", storagetesting.RunTestGet),
		plain("UnconditionalDelete", storagetesting.RunTestUnconditionalDelete),
		plain("ConditionalDelete", storagetesting.RunTestConditionalDelete),
		plain("DeleteWithSuggestion", storagetesting.RunTestDeleteWithSuggestion),
		plain("DeleteWithSuggestionAndConflict", storagetesting.RunTestDeleteWithSuggestionAndConflict),
		plain("DeleteWithSuggestionOfDeletedObject", storagetesting.RunTestDeleteWithSuggestionOfDeletedObject),
		plain("ValidateDeletionWithSuggestion", storagetesting.RunTestValidateDeletionWithSuggestion),
		plain("ValidateDeletionWithOnlySuggestionValid", storagetesting.RunTestValidateDeletionWithOnlySuggestionValid),
		plain("DeleteWithConflict", storagetesting.RunTestDeleteWithConflict),
		{"DeleteWithConflictAndMissingExpectedTransformOrDecodeError", func(t *testing.T, ds *suiteDatastore) {
			setGate(t, unsafeDelete, true)
			codec := &faultyCodec{Codec: ds.codec}
			e := ds.setup(t, suiteOptions{codec: codec})
			storagetesting.RunTestDeleteWithConflictAndMissingExpectedTransformOrDecodeError(e.ctx, t, e.store, codec.failing.Store)
		}},
		{"DeleteWithConflictAndExpectedTransformError", func(t *testing.T, ds *suiteDatastore) {
			setGate(t, unsafeDelete, true)
			faulty := &faultyTransformer{}
			e := ds.setup(t, suiteOptions{wrapTransformer: faulty.wrap})
			storagetesting.RunTestDeleteExpectedTransformOrDecodeError(e.ctx, t, e.store, faulty.failing.Store)
		}},
		{"DeleteWithConflictAndExpectedDecodeError", func(t *testing.T, ds *suiteDatastore) {
			setGate(t, unsafeDelete, true)
			codec := &faultyCodec{Codec: ds.codec}
			e := ds.setup(t, suiteOptions{codec: codec})
			storagetesting.RunTestDeleteExpectedTransformOrDecodeError(e.ctx, t, e.store, codec.failing.Store)
		}},
		{"DeleteWithSuggestionAndMissingExpectedTransformOrDecodeFailure", func(t *testing.T, ds *suiteDatastore) {
			setGate(t, unsafeDelete, true)
			e := ds.setup(t, suiteOptions{})
			storagetesting.RunTestDeleteWithSuggestionAndMissingExpectedTransformOrDecodeError(e.ctx, t, e.store)
		}},
		plain("PreconditionalDeleteWithSuggestion", storagetesting.RunTestPreconditionalDeleteWithSuggestion),
		plain("PreconditionalDeleteWithSuggestionPass", storagetesting.RunTestPreconditionalDeleteWithOnlySuggestionPass),
		plain("ListPaging", storagetesting.RunTestListPaging),
		{"GetListNonRecursive", func(t *testing.T, ds *suiteDatastore) {
			e := ds.setup(t, suiteOptions{})
			storagetesting.RunTestGetListNonRecursive(e.ctx, t, e.increaseRV, e.store)
		}},
		plain("GetListRecursivePrefix", storagetesting.RunTestGetListRecursivePrefix),
		plain("KeySchema", storagetesting.RunTestKeySchema),
		{"GetListWithErrorAggregation", func(t *testing.T, ds *suiteDatastore) {
			setGate(t, unsafeDelete, true)
			e := ds.setup(t, private)
			s := *e.store
			s.Interface = etcd3.NewStoreWithUnsafeCorruptObjectDeletion(s.Interface, suiteResource)
			storagetesting.RunTestGetListWithErrorAggregation(e.ctx, t, &s, corruptObjectErr())
		}},
		{"GetListWithoutErrorAggregation", func(t *testing.T, ds *suiteDatastore) {
			setGate(t, unsafeDelete, false)
			e := ds.setup(t, private)
			storagetesting.RunTestGetListWithoutErrorAggregation(e.ctx, t, e.store, corruptObjectErr())
		}},
		{"GuaranteedUpdate", func(t *testing.T, ds *suiteDatastore) {
			e := ds.setup(t, suiteOptions{})
			storagetesting.RunTestGuaranteedUpdate(e.ctx, t, e.store, e.checkStored)
		}},
		plain("GuaranteedUpdateWithTTL", storagetesting.RunTestGuaranteedUpdateWithTTL),
		transforming("GuaranteedUpdateChecksStoredData", storagetesting.RunTestGuaranteedUpdateChecksStoredData),
		plain("GuaranteedUpdateWithConflict", storagetesting.RunTestGuaranteedUpdateWithConflict),
		plain("GuaranteedUpdateWithSuggestionAndConflict", storagetesting.RunTestGuaranteedUpdateWithSuggestionAndConflict),
		transforming("TransformationFailure", storagetesting.RunTestTransformationFailure),
		{"List", func(t *testing.T, ds *suiteDatastore) {
			forRangeStream(t, func(t *testing.T) {
				freshFeatureSupportChecker(t)
				e := ds.setup(t, private)
				// Upstream also asserts that etcd served these lists by
				// RangeStream; that is the store's choice, not the
				// datastore's contract, so it is only reported here, once
				// the suite's parallel subtests are done.
				t.Cleanup(func() { t.Logf("RangeStream requests: %d", e.kv.GetStreamReadsAndReset()) })
				storagetesting.RunTestList(e.ctx, t, e.store, e.compact, false, e.lists)
			})
		}},
		{"ConsistentList", func(t *testing.T, ds *suiteDatastore) {
			forRangeStream(t, func(t *testing.T) {
				freshFeatureSupportChecker(t)
				e := ds.setup(t, suiteOptions{})
				storagetesting.RunTestConsistentList(e.ctx, t, e.store, e.increaseRV, false, true, false)
			})
		}},
		{"CompactRevision", func(t *testing.T, ds *suiteDatastore) {
			// The store learns of compactions by others through its watch
			// on the compaction key, which this gate turns on.
			setGate(t, features.ListFromCacheSnapshot, true)
			e := ds.setup(t, private)
			storagetesting.RunTestCompactRevision(e.ctx, t, e.store, e.increaseRV, e.compact)
		}},
		{"ListContinuation", func(t *testing.T, ds *suiteDatastore) {
			e := ds.setup(t, suiteOptions{})
			storagetesting.RunTestListContinuation(e.ctx, t, e.store, e.checkCalls)
		}},
		{"ListPaginationRareObject", func(t *testing.T, ds *suiteDatastore) {
			// The gate's watch on the compaction key adds a read the call
			// count does not expect.
			setGate(t, features.ListFromCacheSnapshot, false)
			e := ds.setup(t, suiteOptions{})
			storagetesting.RunTestListPaginationRareObject(e.ctx, t, e.store, e.checkCalls)
		}},
		{"ListContinuationWithFilter", func(t *testing.T, ds *suiteDatastore) {
			e := ds.setup(t, suiteOptions{})
			storagetesting.RunTestListContinuationWithFilter(e.ctx, t, e.store, e.checkCalls)
		}},
		plain("NamespaceScopedList", storagetesting.RunTestNamespaceScopedList),
		{"ListInconsistentContinuation", func(t *testing.T, ds *suiteDatastore) {
			e := ds.setup(t, private)
			storagetesting.RunTestListInconsistentContinuation(e.ctx, t, e.store, e.compact)
		}},
		// Ours: what the suite does not check of a continuation after a
		// compaction.
		{"RemainingCountAfterInconsistentContinuation", func(t *testing.T, ds *suiteDatastore) {
			forRangeStream(t, func(t *testing.T) {
				e := ds.setup(t, private)
				testRemainingCountAfterInconsistentContinuation(e.ctx, t, e)
			})
		}},
		transforming("ListResourceVersionMatch", storagetesting.RunTestListResourceVersionMatch),
		{"Stats", func(t *testing.T, ds *suiteDatastore) {
			for _, sizeEstimate := range []bool{true, false} {
				t.Run(fmt.Sprintf("SizeBasedListCostEstimate=%v", sizeEstimate), func(t *testing.T) {
					e := ds.setup(t, suiteOptions{})
					if sizeEstimate {
						if err := e.store.EnableResourceSizeEstimation(e.keys); err != nil {
							t.Fatal(err)
						}
					}
					storagetesting.RunTestStats(e.ctx, t, e.store, e.codec, e.store.prefix, sizeEstimate)
				})
			}
		}},

		// Watch cases, as upstream's watcher_test.go.
		plain("Watch", storagetesting.RunTestWatch),
		plain("ClusterScopedWatch", storagetesting.RunTestClusterScopedWatch),
		plain("NamespaceScopedWatch", storagetesting.RunTestNamespaceScopedWatch),
		plain("DeleteTriggerWatch", storagetesting.RunTestDeleteTriggerWatch),
		{"WatchFromZero", func(t *testing.T, ds *suiteDatastore) {
			e := ds.setup(t, private)
			storagetesting.RunTestWatchFromZero(e.ctx, t, e.store, e.compact)
		}},
		plain("WatchFromNonZero", storagetesting.RunTestWatchFromNonZero),
		plain("DelayedWatchDelivery", storagetesting.RunTestDelayedWatchDelivery),
		transforming("WatchError", storagetesting.RunTestWatchError),
		plain("WatchContextCancel", storagetesting.RunTestWatchContextCancel),
		plain("WatcherTimeout", storagetesting.RunTestWatcherTimeout),
		plain("WatchDeleteEventObjectHaveLatestRV", storagetesting.RunTestWatchDeleteEventObjectHaveLatestRV),
		plain("WatchInitializationSignal", storagetesting.RunTestWatchInitializationSignal),
		{"ProgressNotify", func(t *testing.T, ds *suiteDatastore) {
			e := ds.setup(t, suiteOptions{progressNotify: true})
			storagetesting.RunOptionalTestProgressNotify(e.ctx, t, e.store, e.increaseRV)
		}},
		{"WatchWithUnsafeDelete", func(t *testing.T, ds *suiteDatastore) {
			setGate(t, unsafeDelete, true)
			e := ds.setup(t, suiteOptions{})
			storagetesting.RunTestWatchWithUnsafeDelete(e.ctx, t, e.store, corruptObjectErr())
		}},
		{"WatchDispatchBookmarkEvents", func(t *testing.T, ds *suiteDatastore) {
			e := ds.setup(t, suiteOptions{progressNotify: true})
			storagetesting.RunTestWatchDispatchBookmarkEvents(e.ctx, t, e.store, false)
		}},
		plain("SendInitialEventsBackwardCompatibility", storagetesting.RunSendInitialEventsBackwardCompatibility),
		{"WatchSemantics", func(t *testing.T, ds *suiteDatastore) {
			forRangeStream(t, func(t *testing.T) {
				e := ds.setup(t, suiteOptions{})
				storagetesting.RunWatchSemantics(e.ctx, t, e.store)
			})
		}},
		{"WatchSemanticsWithConcurrentDecode", func(t *testing.T, ds *suiteDatastore) {
			forRangeStream(t, func(t *testing.T) {
				setGate(t, features.ConcurrentWatchObjectDecode, true)
				e := ds.setup(t, suiteOptions{})
				storagetesting.RunWatchSemantics(e.ctx, t, e.store)
			})
		}},
		{"WatchSemanticInitialEventsExtended", func(t *testing.T, ds *suiteDatastore) {
			forRangeStream(t, func(t *testing.T) {
				e := ds.setup(t, suiteOptions{})
				storagetesting.RunWatchSemanticInitialEventsExtended(e.ctx, t, e.store)
			})
		}},
		{"WatchListMatchSingle", func(t *testing.T, ds *suiteDatastore) {
			forRangeStream(t, func(t *testing.T) {
				e := ds.setup(t, suiteOptions{})
				storagetesting.RunWatchListMatchSingle(e.ctx, t, e.store)
			})
		}},
		transforming("WatchErrorEventIsBlockingFurtherEvent", storagetesting.RunWatchErrorIsBlockingFurtherEvents),
	}
}

// suiteResource is the resource the suite stores: pods of its example API
// group, under /pods/.
var suiteResource = schema.GroupResource{Resource: "pods"}

// suiteValuePrefix marks every value the suite's transformer writes, so a
// value read back is known to have passed through it.
const suiteValuePrefix = "sublet-suite!"

// suiteDatastore is one datastore kind under the suite: an instance the
// cases share, each under its own key prefix, and the means to start more.
type suiteDatastore struct {
	pki            pki.Dir
	codec          runtime.Codec
	start          func(t *testing.T, p pki.Dir) string
	progressNotify func(t *testing.T)
	shared         string // URL of the shared instance
	prefixes       int    // key prefixes handed out on the shared instance
}

// suiteOptions is what a case asks of its setup beyond the defaults.
type suiteOptions struct {
	// codec replaces the example API's codec.
	codec runtime.Codec
	// wrapTransformer wraps the prefix transformer the store starts with.
	wrapTransformer func(value.Transformer) value.Transformer
	// private gives the case a datastore of its own and the empty key
	// prefix: for cases that compact, which would cut the history later
	// cases read, and for cases whose assertions name raw etcd keys.
	private bool
	// progressNotify asks for watch progress notifications every second.
	progressNotify bool
}

// suiteEnv is the setup of one case: an etcd3 store on a datastore, and
// the hooks the suite's functions take.
type suiteEnv struct {
	ctx        context.Context
	store      *suiteStore
	client     *kubernetes.Client
	kv         *storagetesting.KVRecorder
	lists      *storagetesting.KubernetesRecorder
	codec      runtime.Codec
	pathPrefix string // where the store's keys live in the datastore, ending in "/"
}

// setup makes the etcd3 store for one case the way upstream's testSetup
// does, on a new client to the shared datastore or a private one.
func (ds *suiteDatastore) setup(t *testing.T, opts suiteOptions) *suiteEnv {
	t.Helper()
	endpoint, prefix := ds.shared, ""
	if opts.private {
		endpoint = ds.start(t, ds.pki)
	} else {
		ds.prefixes++
		prefix = fmt.Sprintf("/case-%d", ds.prefixes)
	}
	if opts.progressNotify && ds.progressNotify != nil {
		ds.progressNotify(t)
	}
	client, kv, lists := ds.connect(t, endpoint)

	codec := opts.codec
	if codec == nil {
		codec = ds.codec
	}
	base := storagetesting.NewPrefixTransformer([]byte(suiteValuePrefix), false)
	var first value.Transformer = base
	if opts.wrapTransformer != nil {
		first = opts.wrapTransformer(base)
	}
	transformer := &swappableTransformer{current: first}

	versioner := storage.APIObjectVersioner{}
	compactor := etcd3.NewCompactor(client.Client, 0, clock.RealClock{}, nil)
	t.Cleanup(compactor.Stop)
	leases := etcd3.NewDefaultLeaseManagerConfig()
	// As upstream: reuse leases for a second only, so that TTL cases see
	// their keys expire within the suite's 30s waits.
	leases.ReuseDurationSeconds = 1
	s, err := etcd3.New(client, compactor, codec,
		func() runtime.Object { return &example.Pod{} },
		func() runtime.Object { return &example.PodList{} },
		prefix, "/pods/", suiteResource, transformer, leases,
		etcd3.NewDefaultDecoder(codec, versioner), versioner)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return &suiteEnv{
		ctx:        context.Background(),
		store:      &suiteStore{Interface: s, prefix: base, transformer: transformer},
		client:     client,
		kv:         kv,
		lists:      lists,
		codec:      codec,
		pathPrefix: prefix + "/",
	}
}

// connect opens an etcd client to endpoint as the API server does, with its
// client certificate, and records the client's reads for the cases that
// count them.
func (ds *suiteDatastore) connect(t *testing.T, endpoint string) (*kubernetes.Client, *storagetesting.KVRecorder, *storagetesting.KubernetesRecorder) {
	t.Helper()
	client, err := kubernetes.New(etcdClientConfig(t, ds.pki, endpoint))
	if err != nil {
		t.Fatalf("connect to %s: %v", endpoint, err)
	}
	t.Cleanup(func() { client.Close() })
	lists := storagetesting.NewKubernetesRecorder(client.Kubernetes)
	kv := storagetesting.NewKVRecorder(client.KV, lists)
	client.KV = kv
	client.Kubernetes = lists
	return client, kv, lists
}

// startSuiteKine starts kine over a new SQLite file, configured as a
// virtual cluster's, until t ends.
// etcdClientConfig is the configuration of an etcd client to endpoint as
// the API server's: its client certificate, the control plane's CA.
func etcdClientConfig(tb testing.TB, p pki.Dir, endpoint string) clientv3.Config {
	tb.Helper()
	tlsInfo := transport.TLSInfo{
		CertFile:      p.ClientCert(pki.APIServerEtcdClient),
		KeyFile:       p.ClientKey(pki.APIServerEtcdClient),
		TrustedCAFile: p.CACert(),
	}
	tlsConfig, err := tlsInfo.ClientConfig()
	if err != nil {
		tb.Fatal(err)
	}
	return clientv3.Config{Endpoints: []string{endpoint}, TLS: tlsConfig, DialTimeout: 10 * time.Second, Logger: zap.NewNop()}
}

func startSuiteKine(t *testing.T, p pki.Dir) string {
	t.Helper()
	store := &kineStore{file: filepath.Join(t.TempDir(), "state.db"), pki: p}
	url, err := store.start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.stop)
	return url
}

// startSuiteEtcd starts the embedded etcd in a new data dir, configured as
// the control plane configures it, until t ends.
func startSuiteEtcd(t *testing.T, p pki.Dir) string {
	t.Helper()
	dir := t.TempDir()
	store := &etcdStore{dir: filepath.Join(dir, "etcd"), pki: p, logFile: filepath.Join(dir, "etcd.log")}
	url, err := store.start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.stop)
	return url
}

// etcdProgressEverySecond makes every embedded etcd in this process send
// progress notifications each second on the watches opened until t ends.
// Upstream starts its etcd with a one-second WatchProgressNotifyInterval for
// these cases; that setting ends up in this process-wide value anyway, which
// each new watch stream reads, so setting it here lets the shared instance
// serve them. Our etcd otherwise keeps etcd's ten-minute default.
func etcdProgressEverySecond(t *testing.T) {
	saved := v3rpc.GetProgressReportInterval()
	v3rpc.SetProgressReportInterval(time.Second)
	t.Cleanup(func() { v3rpc.SetProgressReportInterval(saved) })
}

// checkStored is the suite's KeyValidation: the value under key is what
// the store writes, the transformer's prefix before an object stored
// without its resource version or self link.
func (e *suiteEnv) checkStored(ctx context.Context, t *testing.T, key string) {
	etcdKey := e.pathPrefix + strings.TrimPrefix(key, "/")
	resp, err := e.client.KV.Get(ctx, etcdKey)
	if err != nil {
		t.Fatalf("get %s: %v", etcdKey, err)
	}
	if len(resp.Kvs) == 0 {
		t.Fatalf("nothing stored under %s", etcdKey)
	}
	data, ok := strings.CutPrefix(string(resp.Kvs[0].Value), suiteValuePrefix)
	if !ok {
		t.Fatalf("value under %s lacks the transformer's prefix %q", etcdKey, suiteValuePrefix)
	}
	obj, err := runtime.Decode(e.codec, []byte(data))
	if err != nil {
		t.Fatalf("decode the value under %s: %v", etcdKey, err)
	}
	pod := obj.(*example.Pod)
	if pod.ResourceVersion != "" {
		t.Errorf("stored object has resource version %q, want none", pod.ResourceVersion)
	}
	if pod.SelfLink != "" {
		t.Errorf("stored object has self link %q, want none", pod.SelfLink)
	}
}

// increaseRV is the suite's IncreaseRVFunc: one write outside the store's
// keys moves the datastore's revision on by one.
func (e *suiteEnv) increaseRV(ctx context.Context, t *testing.T) int64 {
	resp, err := e.client.KV.Put(ctx, "increaseRV", "ok")
	if err != nil {
		t.Fatalf("increase the revision: %v", err)
	}
	return resp.Header.Revision
}

// compact is the suite's Compaction: it compacts the datastore at
// resourceVersion as the API server's compactor does, by compare-and-swap
// on the compaction key and then the compaction itself, and waits until
// the store has seen it when it watches for compactions.
func (e *suiteEnv) compact(ctx context.Context, t *testing.T, resourceVersion string) {
	rev, err := storage.APIObjectVersioner{}.ParseResourceVersion(resourceVersion)
	if err != nil {
		t.Fatal(err)
	}
	// The swap needs the compaction key's version; a failed swap reports
	// it, so the second attempt succeeds unless the first one erred.
	var version int64
	for attempt := 1; ; attempt++ {
		next, _, compacted, err := etcd3.Compact(ctx, e.client.Client, version, int64(rev))
		if err == nil && next == version+1 && compacted == int64(rev) {
			break
		}
		if attempt == 3 {
			t.Fatalf("compact at revision %d: swap on version %d gave version %d, compacted %d, error %v", rev, version, next, compacted, err)
		}
		version = next
	}
	if !utilfeature.DefaultFeatureGate.Enabled(features.ListFromCacheSnapshot) {
		return
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, wait.ForeverTestTimeout, true, func(context.Context) (bool, error) {
		return e.store.CompactRevision() == int64(rev), nil
	})
	if err != nil {
		t.Fatalf("the store did not see the compaction at revision %d: it reports %d", rev, e.store.CompactRevision())
	}
}

// etcd3MaxPageSize is the largest page the etcd3 store asks for when it
// grows its pages.
const etcd3MaxPageSize = 10000

// checkCalls is the suite's CallsValidation: a list read and transformed
// the expected number of objects, in as many range requests as the store
// needs when it starts from pageSize and doubles the page after each one
// (counted as upstream does); no page size means a single request.
func (e *suiteEnv) checkCalls(t *testing.T, pageSize, objects uint64) {
	if reads := e.store.prefix.GetReadsAndReset(); reads != objects {
		t.Errorf("transformed %d objects, want %d", reads, objects)
	}
	requests := uint64(1)
	if pageSize != 0 {
		page := pageSize
		for read := uint64(1); read < objects; requests++ {
			page = min(2*page, etcd3MaxPageSize)
			read += page
		}
	}
	if got := e.kv.GetReadsAndReset() + e.kv.GetStreamReadsAndReset(); got != requests {
		t.Fatalf("made %d range requests, want %d", got, requests)
	}
}

// keys lists the keys of the store's objects, for its size estimate.
func (e *suiteEnv) keys(ctx context.Context) ([]string, error) {
	resp, err := e.client.KV.Get(ctx, e.pathPrefix+"pods/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	return keys, nil
}

// suiteStore is the etcd3 store with the transformer hooks the suite's
// InterfaceWithPrefixTransformer and InterfaceWithTransformerOverride cases
// need. The store keeps its transformer to itself, so it is given a
// swappableTransformer and the hooks swap what that delegates to.
type suiteStore struct {
	storage.Interface
	prefix      *storagetesting.PrefixTransformer // the transformer the store starts with
	transformer *swappableTransformer
}

func (s *suiteStore) UpdatePrefixTransformer(modify storagetesting.PrefixTransformerModifier) func() {
	changed := *s.prefix
	return s.transformer.swap(modify(&changed))
}

func (s *suiteStore) UpdateTransformer(modify storagetesting.TransformerModifier) func() {
	return s.transformer.swap(modify(s.transformer.get()))
}

// swappableTransformer delegates to a transformer that can be replaced
// while the store runs.
type swappableTransformer struct {
	mu      sync.RWMutex
	current value.Transformer
}

func (s *swappableTransformer) get() value.Transformer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.current
}

// swap makes next the transformer and returns the function that restores
// the one before.
func (s *swappableTransformer) swap(next value.Transformer) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.current
	s.current = next
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.current = prev
	}
}

func (s *swappableTransformer) TransformFromStorage(ctx context.Context, data []byte, dataCtx value.Context) ([]byte, bool, error) {
	return s.get().TransformFromStorage(ctx, data, dataCtx)
}

func (s *swappableTransformer) TransformToStorage(ctx context.Context, data []byte, dataCtx value.Context) ([]byte, error) {
	return s.get().TransformToStorage(ctx, data, dataCtx)
}

// faultyTransformer fails every read while failing is set.
type faultyTransformer struct {
	value.Transformer
	failing atomic.Bool
}

func (f *faultyTransformer) wrap(t value.Transformer) value.Transformer {
	f.Transformer = t
	return f
}

func (f *faultyTransformer) TransformFromStorage(ctx context.Context, data []byte, dataCtx value.Context) ([]byte, bool, error) {
	if f.failing.Load() {
		return nil, false, errors.New("injected transformer failure")
	}
	return f.Transformer.TransformFromStorage(ctx, data, dataCtx)
}

// faultyCodec fails every decode while failing is set.
type faultyCodec struct {
	runtime.Codec
	failing atomic.Bool
}

func (c *faultyCodec) Decode(data []byte, defaults *schema.GroupVersionKind, into runtime.Object) (runtime.Object, *schema.GroupVersionKind, error) {
	if c.failing.Load() {
		return nil, nil, errors.New("injected decode failure")
	}
	return c.Codec.Decode(data, defaults, into)
}

// failingTransformer fails every read with err.
type failingTransformer struct {
	value.Transformer
	err error
}

func (f failingTransformer) TransformFromStorage(context.Context, []byte, value.Context) ([]byte, bool, error) {
	return nil, false, f.err
}

// corruptObjectErr is the error the etcd3 store makes of a value it cannot
// transform. The suite injects it to mark objects corrupt; its type is the
// store's own, so the store's wrapper makes it from a failing read.
func corruptObjectErr() error {
	wrapped := etcd3.WithCorruptObjErrorHandlingTransformer(failingTransformer{err: errors.New("bits flipped")})
	_, _, err := wrapped.TransformFromStorage(context.Background(), nil, value.DefaultContext(""))
	return err
}

// suiteCodec encodes the example API's pods as the store's codec.
func suiteCodec(t *testing.T) runtime.Codec {
	scheme := runtime.NewScheme()
	metav1.AddToGroupVersion(scheme, metav1.SchemeGroupVersion)
	if err := example.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := examplev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return apitesting.TestCodec(serializer.NewCodecFactory(scheme), examplev1.SchemeGroupVersion)
}

// forRangeStream runs test with the EtcdRangeStream gate off and on, as
// upstream runs the list and watch-list cases.
func forRangeStream(t *testing.T, test func(t *testing.T)) {
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprintf("rangeStream=%v", on), func(t *testing.T) {
			setGate(t, features.EtcdRangeStream, on)
			test(t)
		})
	}
}

func setGate(t *testing.T, f featuregate.Feature, on bool) {
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, f, on)
}

// freshFeatureSupportChecker gives the etcd3 store, until t ends, a new
// record of which etcd features the datastore supports.
func freshFeatureSupportChecker(t *testing.T) {
	saved := etcdfeature.DefaultFeatureSupportChecker
	etcdfeature.DefaultFeatureSupportChecker = etcdfeature.NewDefaultFeatureSupportChecker()
	t.Cleanup(func() { etcdfeature.DefaultFeatureSupportChecker = saved })
}

// testRemainingCountAfterInconsistentContinuation: 400 pods listed 40 at a
// time; the first page's continue token expires by a compaction, and the
// list goes on with the token the 410 offers. The next page is pods 41-80,
// and its remainingItemCount says 320 are left, as on etcd.
func testRemainingCountAfterInconsistentContinuation(ctx context.Context, t *testing.T, e *suiteEnv) {
	const total, limit = 400, 40
	for i := 0; i < total; i++ {
		out := &example.Pod{}
		if err := e.store.Create(ctx, fmt.Sprintf("/pods/ns/pod-%03d", i), &example.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("pod-%03d", i)}}, out, 0); err != nil {
			t.Fatal(err)
		}
	}
	list := func(continueToken string) (*example.PodList, error) {
		out := &example.PodList{}
		pred := storage.Everything
		pred.Limit, pred.Continue = limit, continueToken
		pred.GetAttrs = func(obj runtime.Object) (labels.Set, fields.Set, error) { return nil, nil, nil }
		err := e.store.GetList(ctx, "/pods/", storage.ListOptions{Predicate: pred, Recursive: true}, out)
		return out, err
	}
	first, err := list("")
	if err != nil {
		t.Fatal(err)
	}
	if first.RemainingItemCount == nil || *first.RemainingItemCount != total-limit {
		t.Fatalf("first page: remainingItemCount %v, want %d", first.RemainingItemCount, total-limit)
	}
	// A write after the first page, then a compaction to it: the first
	// page's revision is gone.
	e.compact(ctx, t, fmt.Sprint(e.increaseRV(ctx, t)))
	_, err = list(first.Continue)
	status, ok := err.(apierrors.APIStatus)
	if !ok || status.Status().Code != 410 || status.Status().ListMeta.Continue == "" {
		t.Fatalf("continuing after a compaction: %v, want 410 with an inconsistent continue token", err)
	}
	second, err := list(status.Status().ListMeta.Continue)
	if err != nil {
		t.Fatal(err)
	}
	if len(second.Items) != limit || second.Items[0].Name != "pod-040" {
		t.Fatalf("second page: %d items from %v, want %d from pod-040", len(second.Items), second.Items, limit)
	}
	if second.RemainingItemCount == nil || *second.RemainingItemCount != total-2*limit {
		t.Errorf("second page after an inconsistent continuation: remainingItemCount %v, want %d", deref(second.RemainingItemCount), total-2*limit)
	}
}

func deref(p *int64) interface{} {
	if p == nil {
		return nil
	}
	return *p
}
