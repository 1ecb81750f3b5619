package agent

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sublet-dev/sublet/internal/controlplane"
	"github.com/sublet-dev/sublet/internal/controlplane/readiness"
)

// checkLayout refuses a data dir unpacked from a snapshot that holds
// anything copyDataDir does not write: the marker, the bootstrapped
// marker, the datastore's backup and pki/'s certificates and keys. Anyone
// who may push to a namespace's registry prefix can build a snapshot (the
// platform's recipient is public), and a data dir holds files the agent
// and the control plane read and dial (kubeconfigs, the egress selector,
// etcd's client URL): those must come from the control plane's own start,
// never from a snapshot.
func checkLayout(dir, datastore string) error {
	allowed := map[string]bool{controlplane.MarkerFile: false, readiness.BootstrappedFile: false, "pki": true}
	backup := controlplane.EtcdSnapshotFile
	switch datastore {
	case controlplane.DatastoreEtcd:
	case controlplane.DatastoreSQLite:
		backup, allowed["db"] = filepath.Join("db", "state.db"), true
	default:
		return fmt.Errorf("its manifest names datastore %q; Sublet writes %s or %s", datastore, controlplane.DatastoreSQLite, controlplane.DatastoreEtcd)
	}
	allowed[backup] = false
	for _, need := range []string{controlplane.MarkerFile, backup} {
		if _, err := os.Lstat(filepath.Join(dir, need)); err != nil {
			return fmt.Errorf("it has no %s", need)
		}
	}
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		isDir, known := allowed[rel]
		if !known && filepath.Dir(rel) == "pki" {
			isDir, known = false, controlplane.PKIFileName.MatchString(d.Name())
		}
		if !known || isDir != d.IsDir() {
			return fmt.Errorf("it holds %s, which no snapshot of a %s data dir has", rel, datastore)
		}
		return nil
	})
}

// dirSize is the size of the regular files under dir.
func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n += info.Size()
		return nil
	})
	return n, err
}
