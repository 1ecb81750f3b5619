package controlplane

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"time"

	"github.com/sublet-dev/sublet/internal/pki"

	"github.com/k3s-io/kine/pkg/endpoint"
	"github.com/k3s-io/kine/pkg/tls"
	"go.etcd.io/etcd/server/v3/embed"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"k8s.io/klog/v2"
)

var sqliteMagic = []byte("SQLite format 3\x00")

// kineStore serves the etcd API from a SQLite file through kine.
type kineStore struct {
	file string
	pki  pki.Dir
	log  klog.Logger
	// reclaimEvery is how often free space is looked for (0: every
	// minute; negative: never, for a benchmark that reclaims itself).
	reclaimEvery time.Duration
	cancel       context.CancelFunc
	wg           sync.WaitGroup
}

// checkSQLiteFile fails if file exists but is not a SQLite database.
func checkSQLiteFile(file string) error {
	f, err := os.Open(file)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("%s should be the SQLite database but is a directory; move it away or use another --data-dir", file)
	}
	head := make([]byte, len(sqliteMagic))
	if _, err := io.ReadFull(f, head); err != nil || !bytes.Equal(head, sqliteMagic) {
		if fi.Size() == 0 {
			return nil
		}
		return fmt.Errorf("%s is not a SQLite database: restore it from a backup or remove the data dir to start afresh", file)
	}
	return nil
}

func (s *kineStore) start(ctx context.Context) (string, error) {
	port, err := FreePort("127.0.0.1")
	if err != nil {
		return "", err
	}
	// kine lives until stop: the API server still writes while it shuts
	// down after ctx ended (lease and endpoint removal), and without its
	// datastore it waits out its whole shutdown timeout.
	ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := useIncrementalVacuum(ctx, s.file); err != nil {
		s.cancel()
		return "", err
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := endpoint.Config{
		WaitGroup: &s.wg,
		Listener:  listen,
		Endpoint:  "sqlite://" + s.file + "?_journal=WAL&cache=shared&_busy_timeout=30000&_txlock=immediate",
		ServerTLSConfig: tls.Config{
			CertFile:      s.pki.ClientCert(pki.EtcdServer),
			KeyFile:       s.pki.ClientKey(pki.EtcdServer),
			TrustedCAFile: s.pki.CACert(),
		},
		// kine rejects some zero values; these are its command's own
		// defaults, except for compaction.
		NotifyInterval:      5 * time.Second,
		EmulatedETCDVersion: "3.6.11",
		// No compaction of kine's own (its default: every 5 minutes, all
		// but the last 1000 revisions), which makes it ignore compaction
		// requests: the API server compacts, as it does etcd (every
		// --etcd-compaction-interval, to the revision of the interval
		// before), exactly to the revision it asks for. Reads and watches
		// at a compacted revision then get 410 Gone as on etcd, instead of
		// being served from history etcd no longer has.
		CompactInterval:  0,
		CompactTimeout:   5 * time.Second,
		CompactMinRetain: 0,
		CompactBatchSize: 1000,
		PollBatchSize:    500,
		PollInterval:     time.Second,
	}
	cfg.ConnectionPoolConfig.MaxIdle = 2
	cfg.ConnectionPoolConfig.MaxIdleTime = 2 * time.Minute
	if cfg.GRPCServer, err = kineGRPCServer(cfg.ServerTLSConfig); err != nil {
		s.cancel()
		return "", err
	}
	if _, err := endpoint.Listen(ctx, cfg); err != nil {
		s.cancel()
		return "", fmt.Errorf("start kine on %s: %w", s.file, err)
	}
	if s.reclaimEvery >= 0 {
		r := newReclaimer(s.file, s.log)
		if s.reclaimEvery > 0 {
			r.every = s.reclaimEvery
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			r.run(ctx)
		}()
	}
	return "https://" + listen, nil
}

func (s *kineStore) stop() {
	if s.cancel != nil {
		s.cancel()
		s.wg.Wait()
	}
}

// kineGRPCServer is the gRPC server kine would make (etcd's defaults for
// keepalive, streams and message sizes, TLS with client certificates) with
// small per-connection buffers. The API server keeps one datastore
// connection per resource, about 70, and gRPC's default 32 KiB read buffer
// plus 32 KiB write buffer on each side was ~4 MiB of an idle virtual
// cluster's heap; the write buffer is now taken from a pool while a write
// is in flight.
func kineGRPCServer(tlsCfg tls.Config) (*grpc.Server, error) {
	serverTLS, err := tlsCfg.ServerConfig()
	if err != nil {
		return nil, fmt.Errorf("kine TLS: %w", err)
	}
	return grpc.NewServer(
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: embed.DefaultGRPCKeepAliveMinTime}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: embed.DefaultGRPCKeepAliveInterval, Timeout: embed.DefaultGRPCKeepAliveTimeout}),
		grpc.MaxConcurrentStreams(embed.DefaultMaxConcurrentStreams),
		grpc.MaxRecvMsgSize(int(embed.DefaultMaxRequestBytes)+512*1024),
		grpc.MaxSendMsgSize(math.MaxInt32),
		grpc.ReadBufferSize(4<<10),
		grpc.SharedWriteBuffer(true),
		grpc.Creds(credentials.NewTLS(serverTLS)),
	), nil
}
