package uapi_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/warrenvpn/warren/uapi"
	"github.com/warrenvpn/warren/uapi/uapitest"
)

// nopTUN is a tun.Device that never delivers a packet or an event, so a
// wireguard-go device built on it stays down and binds no socket.
type nopTUN struct {
	events chan tun.Event
	done   chan struct{}
	once   sync.Once
}

func (t *nopTUN) File() *os.File { return nil }
func (t *nopTUN) Read([][]byte, []int, int) (int, error) {
	<-t.done
	return 0, os.ErrClosed
}
func (t *nopTUN) Write(bufs [][]byte, _ int) (int, error) { return len(bufs), nil }
func (t *nopTUN) MTU() (int, error)                       { return 1420, nil }
func (t *nopTUN) Name() (string, error)                   { return "nop", nil }
func (t *nopTUN) Events() <-chan tun.Event                { return t.events }
func (t *nopTUN) BatchSize() int                          { return 1 }
func (t *nopTUN) Close() error {
	t.once.Do(func() { close(t.done); close(t.events) })
	return nil
}

// newWireGuardGo returns a stopped wireguard-go device, closed at cleanup.
func newWireGuardGo(t testing.TB) *device.Device {
	t.Helper()
	d := device.NewDevice(&nopTUN{events: make(chan tun.Event), done: make(chan struct{})},
		conn.NewDefaultBind(), device.NewLogger(device.LogLevelSilent, ""))
	t.Cleanup(d.Close)
	return d
}

// talk sends the requests over a fresh Unix socket pair to serve, one at a
// time, each after the reply to the one before, as wg does (wireguard-go
// loses pipelined requests: its bufio.Scanner reads past the blank line).
// After the last request it half-closes and returns every byte served until
// serve closed its end.
func talk(t testing.TB, serve func(net.Conn), reqs []string) string {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]*net.UnixConn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c.(*net.UnixConn)
	}
	client, server := conns[0], conns[1]
	defer client.Close()
	// A server that neither answers nor hangs up fails the test instead of
	// hanging it; closing the client then ends the server.
	client.SetDeadline(time.Now().Add(20 * time.Second))
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { serve(server) })
	br := bufio.NewReader(client)
	var out strings.Builder
	for i, req := range reqs {
		if _, err := client.Write([]byte(req)); err != nil {
			break // the server hung up
		}
		if i == len(reqs)-1 {
			break
		}
		for {
			line, err := br.ReadString('\n')
			out.WriteString(line)
			if err != nil {
				return out.String()
			}
			if strings.HasPrefix(line, "errno=") {
				blank, _ := br.ReadString('\n')
				out.WriteString(blank)
				break
			}
		}
	}
	client.CloseWrite()
	rest, _ := io.ReadAll(br)
	out.Write(rest)
	return out.String()
}

// normalize sorts the peer blocks of every reply, as wireguard-go lists
// peers in map order.
func normalize(out string) string {
	var b strings.Builder
	var header string
	var blocks []string
	for line := range strings.Lines(out) {
		switch {
		case strings.HasPrefix(line, "errno="):
			slices.Sort(blocks)
			b.WriteString(header + strings.Join(blocks, "") + line)
			header, blocks = "", nil
		case strings.HasPrefix(line, "public_key="):
			blocks = append(blocks, line)
		case len(blocks) > 0:
			blocks[len(blocks)-1] += line
		default:
			header += line
		}
	}
	b.WriteString(header + strings.Join(blocks, ""))
	return b.String()
}

// TestWireGuardGoCompat runs the same sessions against wireguard-go's own
// UAPI handler and against a Server with the reference device, and compares
// the replies byte for byte (RELIABILITY C1, C2, C3, C7).
func TestWireGuardGoCompat(t *testing.T) {
	peer3 := "set=1\nprivate_key=" + hexA + "\nlisten_port=0\nfwmark=51820\nreplace_peers=true\n" +
		"public_key=" + hexB + "\npreshared_key=" + hexC + "\nendpoint=198.18.0.2:51820\npersistent_keepalive_interval=25\n" +
		"replace_allowed_ips=true\nallowed_ip=198.18.0.93/27\nallowed_ip=fd00:7761::5/64\nallowed_ip=::ffff:198.18.9.9/128\n" +
		"public_key=" + hexC + "\nendpoint=[fd00:7761::2%lo]:1\nallowed_ip=0.0.0.0/0\nallowed_ip=::/0\nprotocol_version=1\n" +
		"public_key=" + keyHex(7) + "\n\n"
	ip := func(i int) string { return fmt.Sprintf("198.18.%d.%d/32", i/256, i%256) }
	var forty strings.Builder
	for p := range 40 {
		forty.WriteString(peerBlock(keyHex(p), 52, func(i int) string { return ip(p*52 + i) }))
	}
	tests := []struct {
		name string
		reqs []string
	}{
		{"get empty", []string{"get=1\n\n"}},
		{"three peers", []string{peer3, "get=1\n\n"}},
		{"keys cleared", []string{peer3, "set=1\nprivate_key=" + hexZ + "\npublic_key=" + hexB + "\npreshared_key=" + hexZ + "\n\n", "get=1\n\n"}},
		{"several requests", []string{"set=1\nfwmark=1\n\n", "get=1\n\n", "set=1\nfwmark=0\nlisten_port=0\n\n", "get=1\n\n"}},
		{"replace_peers", []string{peer3, "set=1\nreplace_peers=true\npublic_key=" + hexC + "\nallowed_ip=198.18.3.0/24\n\n", "get=1\n\n"}},
		{"replace_allowed_ips", []string{peer3, "set=1\npublic_key=" + hexB + "\nallowed_ip=198.18.5.0/24\nreplace_allowed_ips=true\nallowed_ip=198.18.4.0/24\n\n", "get=1\n\n"}},
		{"allowed ip moves", []string{peer3, "set=1\npublic_key=" + hexC + "\nallowed_ip=198.18.0.64/27\n\n", "get=1\n\n"}},
		{"allowed ip removal", []string{peer3, "set=1\npublic_key=" + hexB + "\nallowed_ip=-fd00:7761::/64\nallowed_ip=-0.0.0.0/0\n\n", "get=1\n\n"}},
		{"remove", []string{peer3, "set=1\npublic_key=" + hexB + "\nremove=true\npublic_key=" + keyHex(9) + "\nremove=true\n\n", "get=1\n\n"}},
		{"remove then re-add", []string{peer3, "set=1\npublic_key=" + hexB + "\nremove=true\npublic_key=" + hexB + "\nallowed_ip=198.18.7.0/24\n\n", "get=1\n\n"}},
		{"update_only", []string{peer3, "set=1\npublic_key=" + keyHex(9) + "\nupdate_only=true\nendpoint=198.18.0.3:3\n" +
			"public_key=" + hexB + "\nupdate_only=true\nendpoint=198.18.0.4:4\n\n", "get=1\n\n"}},
		{"40 peers x 52", []string{"set=1\n" + forty.String() + "\n", "get=1\n\n"}},
		{"394 minus 6", []string{"set=1\n" + peerBlock(hexB, 394, ip) + "\n", "set=1\npublic_key=" + hexB +
			"\nallowed_ip=-198.18.0.0/32\nallowed_ip=-198.18.0.1/32\nallowed_ip=-198.18.0.100/32\nallowed_ip=-198.18.0.255/32\n" +
			"allowed_ip=-198.18.1.0/32\nallowed_ip=-198.18.1.137/32\n\n", "get=1\n\n"}},
		{"CRLF body", []string{"set=1\nfwmark=3\r\n\r\n", "get=1\n\n"}},
		{"CRLF operation", []string{"set=1\r\nfwmark=3\n\n"}},
		{"set at end of input", []string{"set=1\nfwmark=2\n"}},
		// Failed requests: wireguard-go closes the session on the leftover
		// lines, so nothing may follow them here.
		{"unknown device key", []string{"set=1\nfoo=1\n\n"}},
		{"unknown peer key", []string{"set=1\npublic_key=" + hexB + "\nfoo=1\n\n"}},
		{"malformed", []string{"set=1\nfwmark\n\n"}},
		{"bad port", []string{"set=1\nlisten_port=65536\n\n"}},
		{"bad key", []string{"set=1\nprivate_key=00\n\n"}},
		{"bad endpoint", []string{"set=1\npublic_key=" + hexB + "\nendpoint=example.com:1\n\n"}},
		{"protocol_version 2", []string{"set=1\npublic_key=" + hexB + "\nprotocol_version=2\n\n"}},
		{"replace_peers false", []string{"set=1\nreplace_peers=false\n\n"}},
		{"get then garbage", []string{"get=1\nxget=1\n\n"}},
		{"get then line", []string{"get=1\nfoo\n"}},
		{"unknown operation", []string{"foo=1\n\n"}},
		{"operation CRLF", []string{"get=1\r\n\r\n"}},
		{"get at end of input", []string{"get=1\n"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wg := newWireGuardGo(t)
			want := normalize(talk(t, wg.IpcHandle, tc.reqs))
			srv := uapi.NewServer(&uapitest.Device{}, nil)
			got := normalize(talk(t, func(c net.Conn) {
				srv.ServeConn(c)
				c.Close()
			}, tc.reqs))
			if got != want {
				t.Errorf("session %.80q: replies differ from wireguard-go's at line %d:\n got %.300q\nwant %.300q",
					tc.reqs, firstDiff(got, want), got, want)
			}
		})
	}
}

// firstDiff returns the number of the first line where a and b differ.
func firstDiff(a, b string) int {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(la), len(lb)) {
		if la[i] != lb[i] {
			return i + 1
		}
	}
	return min(len(la), len(lb)) + 1
}

// FuzzWireGuardGoCompat sends a set request with an arbitrary body to
// wireguard-go and to a Server, and compares the first replies: the errno
// of every way a request can be wrong must be wireguard-go's (C1).
func FuzzWireGuardGoCompat(f *testing.F) {
	f.Add("private_key=" + hexA + "\nlisten_port=1\nfwmark=2\nreplace_peers=true\npublic_key=" + hexB +
		"\nallowed_ip=-198.18.0.0/24\nendpoint=[::1]:1\npersistent_keepalive_interval=3\nprotocol_version=1\nremove=true\n")
	f.Add("public_key=" + hexC + "\nupdate_only=true\nreplace_allowed_ips=true\npreshared_key=" + hexZ + "\n")
	f.Add("fwmark\n")
	f.Add("listen_port=65536\n")
	f.Add("public_key=" + hexB + "\nallowed_ip=1.2.3.4/33\n")
	f.Fuzz(func(t *testing.T, body string) {
		req := []string{"set=1\n" + body + "\n\n"}
		first := func(s string) string {
			if i := strings.Index(s, "\n\n"); i >= 0 {
				return s[:i+2]
			}
			return s
		}
		want := first(talk(t, newWireGuardGo(t).IpcHandle, req))
		srv := uapi.NewServer(&uapitest.Device{}, nil)
		got := first(talk(t, func(c net.Conn) {
			srv.ServeConn(c)
			c.Close()
		}, req))
		if got != want {
			t.Errorf("set body %q: first reply %q, wireguard-go %q", body, got, want)
		}
	})
}
