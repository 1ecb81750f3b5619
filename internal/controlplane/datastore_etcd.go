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

type etcdStore struct {
	dir     string
	pki     pki.Dir
	logFile string
	etcd    *embed.Etcd
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
	peerPort, err := FreePort("127.0.0.1")
	if err != nil {
		return "", err
	}
	clientURL := url.URL{Scheme: "https", Host: fmt.Sprintf("127.0.0.1:%d", clientPort)}
	peerURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", peerPort)}

	cfg := embed.NewConfig()
	cfg.Name = "sublet"
	cfg.Dir = s.dir
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
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
	s.etcd = e
	return clientURL.String(), nil
}

func (s *etcdStore) stop() {
	if s.etcd != nil {
		s.etcd.Close()
	}
}
