package egress

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
)

// maxSocketPath is the longest unix socket path that works everywhere we
// run: sun_path holds 108 bytes on Linux and 104 on the BSDs, with the
// terminating NUL.
const maxSocketPath = 103

// socketSuffix is what Listen appends to the temporary directory's path,
// with the most digits os.MkdirTemp puts in a name.
const socketSuffix = "/sublet-egress-4294967295/proxy.sock"

// Socket is the guard's unix socket, in a directory of its own that only
// this process's user may enter.
type Socket struct {
	net.Listener
	// Path is the socket's path, for the egress selector configuration.
	Path string
	dir  string
}

// socketDirPattern names the guard's socket directories.
const socketDirPattern = "sublet-egress-"

// Listen opens the guard's socket in a new private directory under the
// temporary directory, or under /tmp when $TMPDIR is too long for a socket
// path (a data dir would be no better: its length is the caller's). It
// first removes the directories of guards that died without cleaning up.
func Listen() (*Socket, error) {
	base := os.TempDir()
	if len(base)+len(socketSuffix) > maxSocketPath {
		base = "/tmp"
	}
	removeDead(base)
	dir, err := os.MkdirTemp(base, socketDirPattern)
	if err != nil {
		return nil, fmt.Errorf("egress guard socket: %w", err)
	}
	path := filepath.Join(dir, "proxy.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("egress guard socket: %w", err)
	}
	return &Socket{Listener: l, Path: path, dir: dir}, nil
}

// Close closes the socket and removes its directory.
func (s *Socket) Close() error {
	err := s.Listener.Close()
	if rerr := os.RemoveAll(s.dir); err == nil {
		err = rerr
	}
	return err
}

// removeDead removes this user's socket directories under base whose socket
// no one listens on: their guard was killed (a guard that stops removes its
// own). A directory without a socket yet is a guard starting; it is left.
func removeDead(base string) {
	dirs, _ := filepath.Glob(filepath.Join(base, socketDirPattern+"*"))
	for _, dir := range dirs {
		fi, err := os.Stat(dir)
		if err != nil || !fi.IsDir() {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Getuid() {
			continue
		}
		c, err := net.Dial("unix", filepath.Join(dir, "proxy.sock"))
		if err == nil {
			c.Close()
			continue
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			_ = os.RemoveAll(dir)
		}
	}
}
