package uapi

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/warrenvpn/warren/config"
)

// DefaultDir is the directory where wg and wg-quick look for control
// sockets.
const DefaultDir = "/var/run/wireguard"

// ErrInUse is returned by Listen when a live daemon already answers on the
// interface's socket.
var ErrInUse = errors.New("socket in use")

// ErrRemoved is returned by Accept (and so by Server.Serve) once the socket
// file has been deleted or replaced from outside: the way an administrator
// tells a wireguard-go daemon to shut down (RELIABILITY L5).
var ErrRemoved = errors.New("control socket removed")

// Listener is a UAPI control socket, <dir>/<iface>.sock, readable and
// writable by its owner only (mode 0600) in a directory of mode 0755 (when
// Listen creates it). Close removes the socket file if it is still ours.
//
// On Linux a goroutine owned by the Listener watches the socket file; when it
// is deleted or replaced, pending and later Accepts fail with ErrRemoved.
// Close stops that goroutine and waits for it.
type Listener struct {
	l       *net.UnixListener
	path    string
	id      fileID      // identity of the socket file we created
	removed atomic.Bool // the socket file is gone or no longer ours
	watch   watcher

	closeOnce sync.Once
	closeErr  error // result of the first Close
}

var _ net.Listener = (*Listener)(nil)

// Listen creates the control socket of iface in DefaultDir; see ListenDir.
func Listen(iface string) (*Listener, error) {
	return ListenDir(DefaultDir, iface)
}

// SocketPath returns the path of iface's control socket in dir.
func SocketPath(dir, iface string) string {
	return filepath.Join(dir, iface+".sock")
}

// checkName rejects interface names that would escape the socket directory
// or are not valid interface names (config.ValidName).
func checkName(iface string) error {
	if !config.ValidName(iface) {
		return fmt.Errorf("invalid interface name %q", iface)
	}
	return nil
}

// Accept waits for the next connection. After Close it returns
// net.ErrClosed, after the socket file was removed ErrRemoved.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.l.Accept()
	if err != nil && l.removed.Load() {
		return nil, fmt.Errorf("%s: %w", l.path, ErrRemoved)
	}
	return c, err
}

// Addr returns the socket's address: its path.
func (l *Listener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

// Path returns the socket file's path.
func (l *Listener) Path() string { return l.path }
