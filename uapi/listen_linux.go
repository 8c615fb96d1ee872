package uapi

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// ListenDir creates the control socket of iface in dir (made with mode 0755
// if missing) and listens on it.
//
// If the socket file exists and a daemon accepts a connection on it, ListenDir
// fails with ErrInUse. If nobody answers, the file is stale (left by a dead
// daemon): it is removed and replaced.
//
// The socket never exists with wider permissions than 0600, without touching
// the process-wide umask: it is bound inside a private temporary directory,
// set to 0600 and then hard-linked into place, which also fails rather than
// replace a socket another daemon created in the meantime.
func ListenDir(dir, iface string) (*Listener, error) {
	if err := checkName(iface); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	path := SocketPath(dir, iface)

	tmp, err := os.MkdirTemp(dir, "."+iface+"-")
	if err != nil {
		return nil, fmt.Errorf("create socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	tmpPath := filepath.Join(tmp, "s")
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmpPath, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("create socket: %w", err)
	}
	ul.SetUnlinkOnClose(false)
	fail := func(err error) (*Listener, error) {
		ul.Close()
		return nil, err
	}
	if err := os.Chmod(tmpPath, 0o600); err != nil {
		return fail(fmt.Errorf("create socket: %w", err))
	}
	for attempt := 0; ; attempt++ {
		err := os.Link(tmpPath, path)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || attempt > 0 {
			return fail(fmt.Errorf("create socket %s: %w", path, err))
		}
		if isLive(path) {
			return fail(fmt.Errorf("%s: %w", path, ErrInUse))
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fail(fmt.Errorf("remove stale socket: %w", err))
		}
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(fmt.Errorf("create socket: %w", err))
	}
	return &Listener{l: ul, path: path, ino: inode(fi)}, nil
}

// isLive reports whether a daemon accepts connections on the socket at path.
func isLive(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func inode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// Close stops listening and removes the socket file, unless it has been
// replaced by another daemon's socket since.
func (l *Listener) Close() error {
	err := l.l.Close()
	if fi, serr := os.Lstat(l.path); serr == nil && inode(fi) == l.ino {
		if rerr := os.Remove(l.path); rerr != nil && err == nil {
			err = rerr
		}
	}
	return err
}
