package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/sublet-dev/sublet/internal/pki"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/storage/wal"
)

// etcdWALSegmentBytes replaces etcd's 64 MB write-ahead-log preallocation: a
// control plane of one small cluster never needs that much, and it is the
// bulk of an idle data dir.
const etcdWALSegmentBytes = 8 * 1000 * 1000

// etcdMemberName is the name of the one member of a control plane's etcd.
const etcdMemberName = "sublet"

type etcdStore struct {
	dir     string
	pki     pki.Dir
	logFile string
	// urlFile, if set, is where start records the client URL, which is new
	// at each start, for BackupEtcd to find the running etcd.
	urlFile string
	etcd    *embed.Etcd
}

// etcdStore is the datastore of a control plane started with
// --datastore=etcd on the data dir.
func (d dataDir) etcdStore(p pki.Dir) *etcdStore {
	return &etcdStore{dir: d.etcd(), pki: p, logFile: d.path("logs", "etcd.log"), urlFile: d.etcdClientURLFile()}
}

// etcdMember is the configuration of the one member of a control plane's
// etcd, with peer URL peer. The first start of a member, or a restore,
// derives the member and cluster IDs from its peer URL and cluster token
// and records them; a restart takes them from the write-ahead log and
// ignores the initial cluster, so the peer port may change at each start.
func etcdMember(peer url.URL) *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = etcdMemberName
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	return cfg
}

// freePeerURL is a peer URL on a free port of the loopback address. The
// member listens there but has no peer to talk to.
func freePeerURL() (url.URL, error) {
	port, err := FreePort("127.0.0.1")
	if err != nil {
		return url.URL{}, err
	}
	return url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", port)}, nil
}

// checkEtcdDir fails if dir exists but does not look like etcd's data.
func checkEtcdDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s should be the etcd data directory but is a file; move it away or use another --data-dir", dir)
	}
	db := filepath.Join(dir, "member", "snap", "db")
	if _, err := os.Stat(db); errors.Is(err, os.ErrNotExist) {
		entries, _ := os.ReadDir(dir)
		if len(entries) == 0 {
			return nil
		}
		return fmt.Errorf("%s is not an etcd data directory (no member/snap/db); move it away or use another --data-dir", dir)
	}
	b, err := bolt.Open(db, 0o400, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		return fmt.Errorf("etcd database %s is unreadable (%v): restore it from a backup or remove the data dir to start afresh", db, err)
	}
	return b.Close()
}

func (s *etcdStore) start(ctx context.Context) (string, error) {
	wal.SegmentSizeBytes = etcdWALSegmentBytes
	clientPort, err := FreePort("127.0.0.1")
	if err != nil {
		return "", err
	}
	peerURL, err := freePeerURL()
	if err != nil {
		return "", err
	}
	clientURL := url.URL{Scheme: "https", Host: fmt.Sprintf("127.0.0.1:%d", clientPort)}

	cfg := etcdMember(peerURL)
	cfg.Dir = s.dir
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ClientTLSInfo = transport.TLSInfo{
		CertFile:       s.pki.ClientCert(pki.EtcdServer),
		KeyFile:        s.pki.ClientKey(pki.EtcdServer),
		TrustedCAFile:  s.pki.CACert(),
		ClientCertAuth: true,
	}
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{s.logFile}
	cfg.SnapshotCount = 5000
	cfg.Metrics = "basic"

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return "", fmt.Errorf("start etcd in %s: %w", s.dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return "", fmt.Errorf("etcd: %w", err)
	case <-time.After(60 * time.Second):
		e.Close()
		return "", fmt.Errorf("etcd in %s was not ready after 60s; see %s", s.dir, s.logFile)
	case <-ctx.Done():
		e.Close()
		return "", ctx.Err()
	}
	if s.urlFile != "" {
		if err := pki.WriteFileAtomic(s.urlFile, []byte(clientURL.String()+"\n"), 0o600); err != nil {
			e.Close()
			return "", fmt.Errorf("record the etcd client URL: %w", err)
		}
	}
	s.etcd = e
	return clientURL.String(), nil
}

func (s *etcdStore) stop() {
	if s.urlFile != "" {
		_ = os.Remove(s.urlFile)
	}
	if s.etcd != nil {
		s.etcd.Close()
	}
}
