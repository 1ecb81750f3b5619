package snapshot

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
)

// WriteTree writes the directories and regular files under dir to w as
// a plain tar stream: a data dir on its way between the agent and a
// virtual cluster's pod, over a connection that is already encrypted
// and authenticated. Snapshots themselves are written with Write.
func WriteTree(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	if err := addTree(tw, dir); err != nil {
		return err
	}
	return tw.Close()
}

// ReadTree writes the tar stream r, as WriteTree wrote it, under dir (an
// empty or absent directory), within lim; on error it removes what it
// wrote. Errors match ErrCorrupt for a stream that is not such a tar and
// ErrTooLarge for one over lim.
func ReadTree(r io.Reader, dir string, lim Limits) error {
	existed, err := checkTarget(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("extract into %s: %w", dir, err)
	}
	p := &payload{tr: tar.NewReader(r), lim: lim}
	dirs, err := extractEntries(p, dir)
	if err == nil {
		err = chmodDirs(dirs)
	}
	if err != nil {
		removeWritten(dir, existed)
	}
	return err
}
