package uapi

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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
	removeStaleTemp(dir, iface, time.Now())

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
	l := &Listener{l: ul, path: path, id: idOf(fi)}
	if err := l.watch.start(path, l.onChange); err != nil {
		os.Remove(path)
		return fail(fmt.Errorf("watch socket: %w", err))
	}
	return l, nil
}

// onChange runs on the watcher's goroutine after any change to the socket
// file: if it is gone or replaced, Accept is made to fail with ErrRemoved.
// It reports whether to keep watching.
func (l *Listener) onChange() bool {
	if l.isOurs() {
		return true
	}
	l.removed.Store(true)
	l.l.Close()
	return false
}

// watcher follows changes to one file with inotify on a goroutine of its
// own.
type watcher struct {
	f  *os.File // the inotify descriptor, non-blocking so Close interrupts Read
	wg sync.WaitGroup
}

// start watches path, calling changed after each event until it returns
// false or stop is called.
func (w *watcher) start(path string, changed func() bool) error {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return err
	}
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_ATTRIB|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF); err != nil {
		unix.Close(fd)
		return err
	}
	w.f = os.NewFile(uintptr(fd), "inotify")
	w.wg.Go(func() {
		buf := make([]byte, 4096)
		for {
			if _, err := w.f.Read(buf); err != nil {
				return // closed by stop
			}
			if !changed() {
				return
			}
		}
	})
	return nil
}

// stop ends the watch and waits for its goroutine.
func (w *watcher) stop() {
	if w.f != nil {
		w.f.Close()
		w.wg.Wait()
	}
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

// fileID identifies a file. An inode number is only reused once the inode is
// freed, and our bound socket keeps its inode alive until the listener is
// closed: compare IDs only while it is open.
type fileID struct {
	dev, ino uint64
	typ      fs.FileMode
}

func idOf(fi fs.FileInfo) fileID {
	id := fileID{typ: fi.Mode().Type()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), st.Ino
	}
	return id
}

// isOurs reports whether the socket file is still the one we created; the
// listener must still be open.
func (l *Listener) isOurs() bool {
	fi, err := os.Lstat(l.path)
	return err == nil && idOf(fi) == l.id
}

// Close stops listening and removes the socket file, unless it has been
// removed or replaced since. Later calls return the first one's result.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.close() })
	return l.closeErr
}

func (l *Listener) close() error {
	l.watch.stop()
	var rerr error
	if !l.removed.Load() && l.isOurs() {
		rerr = os.Remove(l.path)
	}
	err := l.l.Close()
	if l.removed.Load() && errors.Is(err, net.ErrClosed) {
		err = nil // closed by the watcher already
	}
	return cmp.Or(err, rerr)
}

// staleTempAge is the age past which a temporary directory of ListenDir is
// left over: one lives for the few system calls of binding a socket.
const staleTempAge = time.Minute

// removeStaleTemp removes the temporary directories of ListenDir for iface
// in dir that a daemon killed while binding its socket left behind (older
// than staleTempAge, so that another daemon's directory in use is left
// alone). Failures are ignored: the directories are empty and harmless.
func removeStaleTemp(dir, iface string, now time.Time) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, ent := range entries {
		rest, ok := strings.CutPrefix(ent.Name(), "."+iface+"-")
		if !ok || !ent.IsDir() || !isDigits(rest) {
			continue
		}
		if fi, err := ent.Info(); err == nil && now.Sub(fi.ModTime()) > staleTempAge {
			os.RemoveAll(filepath.Join(dir, ent.Name()))
		}
	}
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}
