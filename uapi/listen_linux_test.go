package uapi_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warrenvpn/warren/internal/leakcheck"
	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
	"github.com/warrenvpn/warren/uapi"
	"github.com/warrenvpn/warren/uapi/uapitest"
)

// serveListener serves l with the reference device until cleanup.
func serveListener(t testing.TB, l *uapi.Listener) *uapitest.Device {
	t.Helper()
	dev := &uapitest.Device{}
	done := make(chan error, 1)
	go func() { done <- uapi.NewServer(dev, nil).Serve(l) }()
	t.Cleanup(func() {
		l.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return dev
}

// dialGet sends get=1 on a new connection to path and returns the reply.
func dialGet(t testing.TB, path string) string {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "get=1\n\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var out strings.Builder
	for {
		line, err := br.ReadString('\n')
		out.WriteString(line)
		if err != nil || strings.HasPrefix(line, "errno=") {
			return out.String()
		}
	}
}

func TestListenDir(t *testing.T) {
	leakcheck.Check(t)
	dir := filepath.Join(t.TempDir(), "wireguard")
	l, err := uapi.ListenDir(dir, "wg-test0")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "wg-test0.sock")
	if l.Path() != path {
		t.Errorf("Path() = %q, want %q", l.Path(), path)
	}
	// RELIABILITY C8: owner-only socket in a 0755 directory.
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("socket directory: %v, %v; want mode 0755", fi.Mode(), err)
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket: %v, %v; want a socket of mode 0600", fi.Mode(), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("socket directory holds %d entries, want only the socket", len(entries))
	}
	serveListener(t, l)
	if got := dialGet(t, path); got != "errno=0\n" {
		t.Errorf("get over the socket = %q, want errno=0", got)
	}

	// RELIABILITY C8: a second daemon for the same interface refuses.
	if l2, err := uapi.ListenDir(dir, "wg-test0"); !errors.Is(err, uapi.ErrInUse) {
		if l2 != nil {
			l2.Close()
		}
		t.Errorf("second ListenDir: %v, want ErrInUse", err)
	}
	if got := dialGet(t, path); got != "errno=0\n" {
		t.Errorf("first daemon no longer answers after the refused second: %q", got)
	}

	if err := l.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file still there after Close: %v", err)
	}
}

// TestListenStale is RELIABILITY C9: a socket file left by a dead daemon is
// replaced.
func TestListenStale(t *testing.T) {
	leakcheck.Check(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "wg-stale.sock")
	dead, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	dead.SetUnlinkOnClose(false)
	dead.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	l, err := uapi.ListenDir(dir, "wg-stale")
	if err != nil {
		t.Fatalf("ListenDir over a stale socket: %v", err)
	}
	serveListener(t, l)
	if got := dialGet(t, path); got != "errno=0\n" {
		t.Errorf("get = %q, want errno=0", got)
	}
}

// TestListenCloseKeepsReplacement: Close does not remove a socket file that
// is no longer ours.
func TestListenCloseKeepsReplacement(t *testing.T) {
	leakcheck.Check(t)
	dir := t.TempDir()
	l, err := uapi.ListenDir(dir, "wg-repl")
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(l.Path())
	if err := os.WriteFile(l.Path(), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := os.Lstat(l.Path()); err != nil {
		t.Errorf("Close removed a file it did not create: %v", err)
	}
}

// TestListenRemoved is RELIABILITY L5 (the socket half): deleting or
// replacing the socket file ends Serve with ErrRemoved.
func TestListenRemoved(t *testing.T) {
	tests := []struct {
		name    string
		replace bool
	}{
		{"deleted", false},
		{"replaced", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			leakcheck.Check(t)
			l, err := uapi.ListenDir(t.TempDir(), "wg-rm")
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- uapi.NewServer(&uapitest.Device{}, nil).Serve(l) }()
			if got := dialGet(t, l.Path()); got != "errno=0\n" {
				t.Fatalf("get = %q", got)
			}
			if err := os.Remove(l.Path()); err != nil {
				t.Fatal(err)
			}
			if tc.replace {
				if err := os.WriteFile(l.Path(), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case err := <-done:
				if !errors.Is(err, uapi.ErrRemoved) {
					t.Errorf("Serve = %v, want ErrRemoved", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Serve still running 10 s after the socket file was removed")
			}
			if err := l.Close(); err != nil {
				t.Errorf("Close after removal: %v", err)
			}
			if _, err := os.Lstat(l.Path()); tc.replace != (err == nil) {
				t.Errorf("after Close, Lstat = %v; want the replacement kept (%v)", err, tc.replace)
			}
		})
	}
}

func TestListenBadNames(t *testing.T) {
	for _, name := range []string{"", ".", "..", "a/b", "../x", "sixteen-chars-xx", "a b"} {
		if l, err := uapi.ListenDir(t.TempDir(), name); err == nil {
			l.Close()
			t.Errorf("ListenDir(%q) succeeded, want an error", name)
		}
	}
}

// TestServeEndsConnections: closing the listener ends Serve, including
// connections that are idle in the middle of a session.
func TestServeEndsConnections(t *testing.T) {
	leakcheck.Check(t)
	l, err := uapi.ListenDir(t.TempDir(), "wg-end")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- uapi.NewServer(&uapitest.Device{}, nil).Run(ctx, l) }()
	c, err := net.Dial("unix", l.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "set=1\nfwmark=1\n") // unfinished request
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	// The server closed its end: the read ends (with ECONNRESET, as the
	// unfinished request was never read) instead of hanging.
	if _, err := io.ReadAll(c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read after shutdown: %v", err)
	}
}

// TestSocketOwnerOnly is RELIABILITY C8 (root): a non-root user cannot
// connect to the socket. The test binary re-runs itself as nobody.
func TestSocketOwnerOnly(t *testing.T) {
	netlabtest.RequireRoot(t)
	// Every directory on the way must be open to nobody, so that only the
	// socket's own mode can refuse.
	base, err := os.MkdirTemp("", "warren-uapi-c8-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "uapi.test")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := uapi.ListenDir(filepath.Join(base, "run"), "wg-c8")
	if err != nil {
		t.Fatal(err)
	}
	serveListener(t, l)
	dialAsNobody := func() string {
		cmd := exec.Command(bin, "-test.run=^TestDialChild$", "-test.v")
		cmd.Env = append(os.Environ(), "WARREN_UAPI_DIAL="+l.Path())
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	if out := dialAsNobody(); !strings.Contains(out, "dial: permission denied") {
		t.Errorf("nobody dialling the 0600 socket: want permission denied, got:\n%s", out)
	}
	// Control: with the mode opened up, the same child gets through, so the
	// refusal above came from the socket's mode.
	if err := os.Chmod(l.Path(), 0o666); err != nil {
		t.Fatal(err)
	}
	if out := dialAsNobody(); !strings.Contains(out, "dial: ok") {
		t.Errorf("nobody dialling a 0666 socket: want ok, got:\n%s", out)
	}
}

// TestDialChild is the child half of TestSocketOwnerOnly; it does nothing
// unless WARREN_UAPI_DIAL names a socket.
func TestDialChild(t *testing.T) {
	path := os.Getenv("WARREN_UAPI_DIAL")
	if path == "" {
		return
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		if errors.Is(err, syscall.EACCES) {
			t.Log("dial: permission denied")
			return
		}
		t.Logf("dial: %v", err)
		return
	}
	c.Close()
	t.Log("dial: ok")
}

// TestListenStaleTempDirs covers C9's leftovers: the empty temporary
// directories a daemon killed while binding its socket left are removed by
// the next ListenDir once a minute old; a fresh one (another daemon binding
// now) and other names are left alone.
func TestListenStaleTempDirs(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-time.Hour)
	for _, name := range []string{".wg-tmp-2402353577", ".wg-tmp-204125378", ".wg-tmp-fresh1", ".wg-tmpx-1", ".wg-tmp-99"} {
		if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		if name != ".wg-tmp-99" {
			if err := os.Chtimes(filepath.Join(dir, name), old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	l, err := uapi.ListenDir(dir, "wg-tmp")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	var left []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if got, want := strings.Join(left, " "), ".wg-tmp-99 .wg-tmp-fresh1 .wg-tmpx-1"; got != want {
		t.Errorf("left in the directory: %q, want %q", got, want)
	}
}
