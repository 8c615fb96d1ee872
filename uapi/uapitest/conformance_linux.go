//go:build linux

package uapitest

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

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/uapi"
)

// Session is a named sequence of UAPI requests sent on one connection.
type Session struct {
	Name     string
	Requests []string
}

// Conformance checks that a Server for the devices newDevice makes answers
// every session of ConformanceSessions byte for byte as wireguard-go does
// (peer order and listen_port lines aside, as the reference device is down
// and has no port): the engine applies uapi.Change with wireguard-go's
// semantics. newDevice is called once per session and must return a fresh
// device without peers or private key; the sessions set no listen_port or
// fwmark.
func Conformance(t *testing.T, newDevice func(t *testing.T) uapi.Device) {
	compare(t, ConformanceSessions(), newDevice, func(line string) bool {
		return !strings.HasPrefix(line, "listen_port=")
	})
}

// CompareWithWireGuardGo runs each session against a fresh wireguard-go
// device and against a Server for a fresh newDevice, and compares the
// normalized replies.
func CompareWithWireGuardGo(t *testing.T, sessions []Session, newDevice func(t *testing.T) uapi.Device) {
	compare(t, sessions, newDevice, nil)
}

// compare is CompareWithWireGuardGo, keeping only the reply lines for which
// keep (if not nil) is true.
func compare(t *testing.T, sessions []Session, newDevice func(t *testing.T) uapi.Device, keep func(line string) bool) {
	filter := func(out string) string {
		if keep == nil {
			return out
		}
		var b strings.Builder
		for line := range strings.Lines(out) {
			if keep(line) {
				b.WriteString(line)
			}
		}
		return b.String()
	}
	for _, s := range sessions {
		t.Run(s.Name, func(t *testing.T) {
			want := Normalize(filter(Talk(t, WireGuardGo(t).IpcHandle, s.Requests)))
			srv := uapi.NewServer(newDevice(t), nil)
			got := Normalize(filter(Talk(t, func(c net.Conn) {
				srv.ServeConn(c)
				c.Close()
			}, s.Requests)))
			if got != want {
				t.Errorf("session %.80q: replies differ from wireguard-go's at line %d:\n got %.300q\nwant %.300q",
					s.Requests, firstDiff(got, want), got, want)
			}
		})
	}
}

// ConformanceSessions returns the sessions of Conformance: configuration
// and get, the semantics of replace_peers, replace_allowed_ips, remove,
// update_only and allowed_ip=- (RELIABILITY C7), cleared keys and the own
// key (C6), the sizes of C2 and C3, and malformed requests (C1).
func ConformanceSessions() []Session {
	peer3 := "set=1\nprivate_key=" + KeyA + "\nreplace_peers=true\n" +
		"public_key=" + KeyB + "\npreshared_key=" + KeyC + "\nendpoint=198.18.0.2:51820\npersistent_keepalive_interval=25\n" +
		"replace_allowed_ips=true\nallowed_ip=198.18.0.93/27\nallowed_ip=fd00:7761::5/64\nallowed_ip=::ffff:198.18.9.9/128\n" +
		"public_key=" + KeyC + "\nendpoint=[fd00:7761::2]:1\nallowed_ip=0.0.0.0/0\nallowed_ip=::/0\nprotocol_version=1\n" +
		"public_key=" + KeyN(7) + "\n\n"
	priv, err := crypto.ParsePrivateKeyHex(KeyA)
	if err != nil {
		panic(err) // a constant
	}
	own := priv.PublicKey().Hex()
	ip := func(i int) string { return fmt.Sprintf("198.18.%d.%d/32", i/256, i%256) }
	v6 := func(i int) string { return fmt.Sprintf("fd00:7761::%x:%x/128", i/256, i%256) }
	var forty, empty29 strings.Builder
	for p := range 40 {
		forty.WriteString(PeerBlock(KeyN(p), 52, func(i int) string { return ip(p*52 + i) }))
	}
	for p := range 29 {
		empty29.WriteString(PeerBlock(KeyN(p), 0, nil))
	}
	get := "get=1\n\n"
	return []Session{
		{"get empty", []string{get}},
		{"three peers", []string{peer3, get}},
		{"keys cleared", []string{peer3, "set=1\nprivate_key=" + KeyZ + "\npublic_key=" + KeyB + "\npreshared_key=" + KeyZ + "\n\n", get}},
		{"own public key as a peer is ignored", []string{"set=1\nprivate_key=" + KeyA + "\npublic_key=" + own + "\nallowed_ip=198.18.0.0/24\n\n", get}},
		{"private key of a peer removes it", []string{"set=1\npublic_key=" + own + "\nallowed_ip=198.18.0.0/24\n\n", "set=1\nprivate_key=" + KeyA + "\n\n", get}},
		{"keepalive off, endpoint changed", []string{peer3, "set=1\npublic_key=" + KeyB + "\npersistent_keepalive_interval=0\nendpoint=[fd00:7761::9]:9\n\n", get}},
		{"replace_peers", []string{peer3, "set=1\nreplace_peers=true\npublic_key=" + KeyC + "\nallowed_ip=198.18.3.0/24\n\n", get}},
		{"replace_allowed_ips", []string{peer3, "set=1\npublic_key=" + KeyB + "\nallowed_ip=198.18.5.0/24\nreplace_allowed_ips=true\nallowed_ip=198.18.4.0/24\n\n", get}},
		{"allowed ip moves", []string{peer3, "set=1\npublic_key=" + KeyC + "\nallowed_ip=198.18.0.64/27\n\n", get}},
		{"allowed ip removal", []string{peer3, "set=1\npublic_key=" + KeyB + "\nallowed_ip=-fd00:7761::/64\nallowed_ip=-0.0.0.0/0\n\n", get}},
		{"remove", []string{peer3, "set=1\npublic_key=" + KeyB + "\nremove=true\npublic_key=" + KeyN(9) + "\nremove=true\n\n", get}},
		{"remove then re-add", []string{peer3, "set=1\npublic_key=" + KeyB + "\nremove=true\npublic_key=" + KeyB + "\nallowed_ip=198.18.7.0/24\n\n", get}},
		{"update_only", []string{peer3, "set=1\npublic_key=" + KeyN(9) + "\nupdate_only=true\nendpoint=198.18.0.3:3\n" +
			"public_key=" + KeyB + "\nupdate_only=true\nendpoint=198.18.0.4:4\n\n", get}},
		{"one peer 255x256x2", []string{"set=1\n" + PeerBlock(KeyB, 255*256*2, func(i int) string {
			if i%2 == 0 {
				return fmt.Sprintf("10.%d.%d.0/24", i/2/256, i/2%256)
			}
			return v6(i / 2)
		}) + "\n", get}},
		{"40 peers x 52", []string{"set=1\n" + forty.String() + "\n", get}},
		{"29 empty peers and one with two", []string{"set=1\n" + empty29.String() + PeerBlock(KeyN(29), 2, v6) + "\n", get}},
		{"197 IPv6 /128s next to an empty peer", []string{"set=1\n" + PeerBlock(KeyN(0), 0, nil) + PeerBlock(KeyN(1), 197, v6) + "\n", get}},
		{"394 minus 6", []string{"set=1\n" + PeerBlock(KeyB, 394, ip) + "\n", "set=1\npublic_key=" + KeyB +
			"\nallowed_ip=-198.18.0.0/32\nallowed_ip=-198.18.0.1/32\nallowed_ip=-198.18.0.100/32\nallowed_ip=-198.18.0.255/32\n" +
			"allowed_ip=-198.18.1.0/32\nallowed_ip=-198.18.1.137/32\n\n", get}},
		{"CRLF body", []string{"set=1\npublic_key=" + KeyB + "\r\n\r\n", get}},
		{"set at end of input", []string{"set=1\npublic_key=" + KeyB + "\n"}},
		// Failed requests: wireguard-go closes the session on the leftover
		// lines, so nothing may follow them here.
		{"unknown device key", []string{"set=1\nfoo=1\n\n"}},
		{"unknown peer key", []string{"set=1\npublic_key=" + KeyB + "\nfoo=1\n\n"}},
		{"malformed", []string{"set=1\npublic_key\n\n"}},
		{"bad port", []string{"set=1\nlisten_port=65536\n\n"}},
		{"bad key", []string{"set=1\nprivate_key=00\n\n"}},
		{"bad endpoint", []string{"set=1\npublic_key=" + KeyB + "\nendpoint=example.com:1\n\n"}},
		{"protocol_version 2", []string{"set=1\npublic_key=" + KeyB + "\nprotocol_version=2\n\n"}},
		{"replace_peers false", []string{"set=1\nreplace_peers=false\n\n"}},
		{"get then garbage", []string{"get=1\nxget=1\n\n"}},
		{"get then line", []string{"get=1\nfoo\n"}},
		{"unknown operation", []string{"foo=1\n\n"}},
		{"CRLF operation", []string{"get=1\r\n\r\n"}},
		{"get at end of input", []string{"get=1\n"}},
	}
}

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

// WireGuardGo returns a stopped wireguard-go device (no socket, no TUN), closed
// at cleanup: the reference implementation of the protocol.
func WireGuardGo(t testing.TB) *device.Device {
	t.Helper()
	d := device.NewDevice(&nopTUN{events: make(chan tun.Event), done: make(chan struct{})},
		conn.NewDefaultBind(), device.NewLogger(device.LogLevelSilent, ""))
	t.Cleanup(d.Close)
	return d
}

// Talk sends the requests over a fresh Unix socket pair to serve, one at a
// time, each after the reply to the one before, as wg does (wireguard-go
// loses pipelined requests: its bufio.Scanner reads past the blank line).
// After the last request it half-closes and returns every byte served until
// serve closed its end. serve must close its connection when done.
func Talk(t testing.TB, serve func(net.Conn), reqs []string) string {
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

// Normalize sorts the peer blocks of every reply in out, as wireguard-go
// lists peers in map order.
func Normalize(out string) string {
	var b strings.Builder
	var header, block strings.Builder
	var blocks []string
	flushBlock := func() {
		if block.Len() > 0 {
			blocks = append(blocks, block.String())
			block.Reset()
		}
	}
	for line := range strings.Lines(out) {
		switch {
		case strings.HasPrefix(line, "errno="):
			flushBlock()
			slices.Sort(blocks)
			b.WriteString(header.String() + strings.Join(blocks, "") + line)
			header.Reset()
			blocks = nil
		case strings.HasPrefix(line, "public_key="):
			flushBlock()
			block.WriteString(line)
		case block.Len() > 0:
			block.WriteString(line)
		default:
			header.WriteString(line)
		}
	}
	flushBlock()
	b.WriteString(header.String() + strings.Join(blocks, ""))
	return b.String()
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
