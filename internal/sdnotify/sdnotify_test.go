package sdnotify_test

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/warrenvpn/warren/internal/sdnotify"
)

// listen opens a NOTIFY_SOCKET as systemd would and returns its name and a
// function that reads the next datagram.
func listen(t *testing.T, abstract bool) (string, func() string) {
	t.Helper()
	name := filepath.Join(t.TempDir(), "notify.sock")
	addr := name
	if abstract {
		if runtime.GOOS != "linux" {
			t.Skip("abstract sockets are Linux's")
		}
		name = fmt.Sprintf("@warren-sdnotify-test-%p", t)
		addr = "\x00" + name[1:]
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Skipf("no unixgram sockets here: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return name, func() string {
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n])
	}
}

// TestNotify (L26): the messages of a service's life arrive whole and in order,
// on a path and on an abstract socket.
func TestNotify(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		t.Run(fmt.Sprint("abstract=", abstract), func(t *testing.T) {
			name, next := listen(t, abstract)
			t.Setenv("NOTIFY_SOCKET", name)
			n := sdnotify.New()
			if !n.Enabled() {
				t.Fatal("Enabled() = false with NOTIFY_SOCKET set")
			}
			steps := []struct {
				send func() error
				want string // a regexp of the whole datagram
			}{
				{func() error { return n.Ready("up") }, "READY=1\nSTATUS=up\n"},
				{func() error { return n.Reloading("reloading") }, "RELOADING=1\n(MONOTONIC_USEC=[1-9][0-9]*\n)?STATUS=reloading\n"},
				{func() error { return n.Status("5 peers") }, "STATUS=5 peers\n"},
				{func() error { return n.Stopping("stopping") }, "STOPPING=1\nSTATUS=stopping\n"},
			}
			for _, s := range steps {
				if err := s.send(); err != nil {
					t.Fatal(err)
				}
				if got := next(); !regexp.MustCompile("^" + s.want + "$").MatchString(got) {
					t.Errorf("datagram %q, want %q", got, s.want)
				}
			}
			if runtime.GOOS == "linux" {
				n.Reloading("x")
				if got := next(); !strings.Contains(got, "MONOTONIC_USEC=") {
					t.Errorf("RELOADING without MONOTONIC_USEC on Linux: %q", got)
				}
			}
		})
	}
}

// TestNoSocket: without NOTIFY_SOCKET nothing is sent and nothing fails.
func TestNoSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := sdnotify.New()
	if n.Enabled() {
		t.Error("Enabled() = true without NOTIFY_SOCKET")
	}
	if err := n.Ready("up"); err != nil {
		t.Errorf("Ready without a socket: %v", err)
	}
	var nilN *sdnotify.Notifier
	if err := nilN.Stopping("x"); err != nil {
		t.Errorf("Stopping on nil: %v", err)
	}
}
