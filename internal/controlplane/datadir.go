package controlplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/sublet-dev/sublet/internal/exitcode"
	"github.com/sublet-dev/sublet/internal/pki"
)

// MarkerFile, in a data dir, records what created it (its datastore), so a
// later start can tell its own data from anything else.
const MarkerFile = "sublet-data-dir.json"

type marker struct {
	Datastore string `json:"datastore"`
}

// recordedDatastore is the datastore a data dir was created with, or ""
// when it has none yet (or its marker is unreadable: prepare then says why).
func (d dataDir) recordedDatastore() string {
	data, err := os.ReadFile(d.path(MarkerFile))
	if err != nil {
		return ""
	}
	var m marker
	if json.Unmarshal(data, &m) != nil {
		return ""
	}
	return m.Datastore
}

// dataDir is the on-disk layout of one control plane.
type dataDir struct {
	root string
}

func (d dataDir) path(elem ...string) string {
	return filepath.Join(append([]string{d.root}, elem...)...)
}

// PKI is the certificate directory of the control plane whose data dir is
// dir.
func PKI(dir string) pki.Dir { return dataDir{root: dir}.pkiDir() }

func (d dataDir) pkiDir() pki.Dir           { return pki.Dir{Path: d.path("pki")} }
func (d dataDir) etcd() string              { return d.path("etcd") }
func (d dataDir) etcdClientURLFile() string { return d.path("etcd-client-url") }
func (d dataDir) sqlite() string            { return d.path("db", "state.db") }
func (d dataDir) logs() string              { return d.path("logs") }
func (d dataDir) AdminKubeconfig() string   { return d.path("admin.kubeconfig") }
func (d dataDir) egressSelectorConfig() string {
	return d.path("components", "egress-selector.json")
}
func (d dataDir) componentKubeconfig(n string) string {
	return d.path("components", n+".kubeconfig")
}

// prepare creates the data dir and checks it is writable and ours. It writes
// nothing but the marker of a new dir.
func (d dataDir) prepare(datastore string) error {
	if err := os.MkdirAll(d.root, 0o700); err != nil {
		return fmt.Errorf("cannot create data dir %s: %v; pass a writable --data-dir", d.root, unwrapPathError(err))
	}
	probe, err := os.CreateTemp(d.root, ".write-probe-*")
	if err != nil {
		return fmt.Errorf("data dir %s is not writable: %v; fix its permissions or pass another --data-dir", d.root, unwrapPathError(err))
	}
	probe.Close()
	os.Remove(probe.Name())

	data, err := os.ReadFile(d.path(MarkerFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		entries, err := os.ReadDir(d.root)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), ".") {
				return fmt.Errorf("data dir %s is not empty and was not created by sublet (found %q); pass an empty or new --data-dir", d.root, e.Name())
			}
		}
		m, _ := json.Marshal(marker{Datastore: datastore})
		if err := pki.WriteFileAtomic(d.path(MarkerFile), m, 0o600); err != nil {
			return err
		}
	case err != nil:
		return fmt.Errorf("read %s: %w", d.path(MarkerFile), err)
	default:
		var m marker
		if err := json.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("%s is corrupt (%v); remove the data dir to start afresh", d.path(MarkerFile), err)
		}
		if m.Datastore != datastore {
			// Starting again unchanged fails again: a configuration error.
			return exitcode.Configf("data dir %s holds a %s datastore, not %s; start with --datastore=%s or pass another --data-dir", d.root, m.Datastore, datastore, m.Datastore)
		}
	}
	for _, dir := range []string{d.logs(), d.path("components"), filepath.Dir(d.sqlite())} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	return nil
}

// checkDatastore fails if the datastore in the data dir is not intact.
func (d dataDir) checkDatastore(datastore string) error {
	if datastore == DatastoreEtcd {
		return checkEtcdDir(d.etcd())
	}
	return checkSQLiteFile(d.sqlite())
}

// lock takes an exclusive lock on the data dir for the life of the process,
// so two control planes never share one datastore.
func (d dataDir) lock() (*os.File, error) {
	path := d.path(".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		owner, _ := os.ReadFile(path)
		f.Close()
		return nil, fmt.Errorf("data dir %s is in use by another sublet process (pid %s); stop it or pass another --data-dir", d.root, strings.TrimSpace(string(owner)))
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}

// LockHolder reports whether a process holds the lock of data dir dir (a
// control plane runs on it) and, if the lock file names it, its pid. It
// takes the lock for an instant when no one holds it.
func LockHolder(dir string) (pid int, held bool) {
	f, err := os.Open(dataDir{root: dir}.path(".lock"))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return 0, false
	}
	owner, _ := io.ReadAll(f)
	pid, _ = strconv.Atoi(strings.TrimSpace(string(owner)))
	return pid, true
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}
