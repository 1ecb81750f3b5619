package controlplane

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/sublet-dev/sublet/internal/pki"

	"github.com/k3s-io/kine/pkg/endpoint"
	"github.com/k3s-io/kine/pkg/tls"
)

var sqliteMagic = []byte("SQLite format 3\x00")

// kineStore serves the etcd API from a SQLite file through kine.
type kineStore struct {
	file   string
	pki    pki.Dir
	cancel context.CancelFunc
	wg     sync.WaitGroup
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
		// kine rejects zero values; these are its command's own defaults.
		NotifyInterval:      30 * time.Second,
		EmulatedETCDVersion: "3.6.11",
		CompactInterval:     5 * time.Minute,
		CompactTimeout:      5 * time.Second,
		CompactMinRetain:    1000,
		CompactBatchSize:    1000,
		PollBatchSize:       500,
		PollInterval:        5 * time.Second,
	}
	cfg.ConnectionPoolConfig.MaxIdle = 2
	cfg.ConnectionPoolConfig.MaxIdleTime = 2 * time.Minute
	if _, err := endpoint.Listen(ctx, cfg); err != nil {
		s.cancel()
		return "", fmt.Errorf("start kine on %s: %w", s.file, err)
	}
	return "https://" + listen, nil
}

func (s *kineStore) stop() {
	if s.cancel != nil {
		s.cancel()
		s.wg.Wait()
	}
}
