package vmlab_test

// The guest is booted once per test binary and shared by every test: boot
// takes 10 to 30 s under software emulation. Tests that change the guest's
// eth0 (roaming, netem) do not run in parallel with others; each test's
// WireGuard interfaces, ports and overlay prefixes are its own.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/warrenvpn/warren/internal/netlab"
	"github.com/warrenvpn/warren/internal/vmlab"
	"github.com/warrenvpn/warren/internal/vmlab/vmlabtest"
)

// Underlay addresses: the TAP in the lab namespace and the guest's eth0.
var (
	host4  = netip.MustParsePrefix("198.18.100.1/24")
	host6  = netip.MustParsePrefix("fd00:7761:100::1/64")
	guest4 = netip.MustParsePrefix("198.18.100.2/24")
	guest6 = netip.MustParsePrefix("fd00:7761:100::2/64")
)

const labTAP = "vmtap0"

// lab is the shared guest and the namespace that holds its TAP.
type lab struct {
	ns     *netlab.Namespace
	g      *vmlab.Guest
	warren string // host path of the warren binary, also /bin/warren in the guest
	dir    string
}

var shared struct {
	once sync.Once
	lab  *lab
	err  error
}

// sharedLab returns the shared guest, booting it on first use.
func sharedLab(t testing.TB) *lab {
	t.Helper()
	vmlabtest.Require(t)
	shared.once.Do(func() { shared.lab, shared.err = bootLab() })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.lab
}

func bootLab() (*lab, error) {
	l := &lab{}
	var err error
	if l.dir, err = os.MkdirTemp("", "vmlab-test-"); err != nil {
		return nil, err
	}
	l.warren = filepath.Join(l.dir, "warren")
	build := exec.Command("go", "build", "-o", l.warren, "github.com/warrenvpn/warren/cmd/warren")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		l.close()
		return nil, fmt.Errorf("build warren: %v\n%s", err, out)
	}
	if l.ns, err = netlab.NewNamespace("vmlab"); err != nil {
		l.close()
		return nil, err
	}
	l.g, err = vmlab.Boot(context.Background(), vmlab.Config{
		Namespace: l.ns,
		TAP:       labTAP,
		// xfrm_user and nfnetlink: warren link opens netlink sockets of
		// every family, and the guest has no modprobe to autoload them.
		Modules:    []string{"wireguard", "ipvlan", "dummy", "sch_netem", "tun", "xfrm_user", "nfnetlink"},
		Files:      map[string]string{"/bin/warren": l.warren},
		HostAddrs:  []netip.Prefix{host4, host6},
		GuestAddrs: []netip.Prefix{guest4, guest6},
	})
	if err != nil {
		l.close()
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "vmlab: guest %s booted in %v (%s)\n", l.g.Release, l.g.BootTime.Round(time.Millisecond), l.g.AccelUsed)
	return l, nil
}

func (l *lab) close() error {
	var errs []error
	if l.g != nil {
		errs = append(errs, l.g.Close())
	}
	if l.ns != nil {
		errs = append(errs, l.ns.Close())
	}
	os.RemoveAll(l.dir)
	return errors.Join(errs...)
}

func isCI() bool { return os.Getenv("CI") == "true" }

func TestMain(m *testing.M) {
	start := time.Now()
	code := m.Run()
	if shared.lab != nil {
		if code != 0 && shared.lab.g != nil {
			fmt.Fprintf(os.Stderr, "vmlab: guest console:\n%s\n", shared.lab.g.Console())
		}
		if err := shared.lab.close(); err != nil {
			fmt.Fprintf(os.Stderr, "vmlab: closing the guest lab: %v\n", err)
			code = 1
		}
		fmt.Fprintf(os.Stderr, "vmlab: guest suite took %v\n", time.Since(start).Round(time.Millisecond))
	}
	os.Exit(code)
}

// run runs a guest command and fails t if it fails.
func (l *lab) run(t testing.TB, ctx context.Context, args ...string) string {
	t.Helper()
	out, err := l.g.Run(ctx, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// warrenProc is a `warren up` process in the lab namespace.
type warrenProc struct {
	name string
	cmd  *exec.Cmd
	log  bytes.Buffer
	done chan error
}

// up writes conf to NAME.conf and runs `warren up` on it in the lab
// namespace until t ends; it waits for the link to be up.
func (l *lab) up(t testing.TB, name, conf string) *warrenProc {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &warrenProc{name: name, done: make(chan error, 1)}
	p.cmd = l.ns.Command(context.Background(), l.warren, "up", path)
	p.cmd.Stdout, p.cmd.Stderr = &p.log, &p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-p.done:
			if err != nil {
				t.Errorf("warren up %s exited with %v after SIGTERM", name, err)
			}
		case <-time.After(3 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
			t.Errorf("warren up %s did not exit within 3 s of SIGTERM", name)
		}
		if t.Failed() {
			t.Logf("warren up %s:\n%s", name, p.log.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if lk, err := l.ns.Handle().LinkByName(name); err == nil && lk.Attrs().Flags&net.FlagUp != 0 {
			return p
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("warren up %s exited: %v\n%s", name, err, p.log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not up after 10 s\n%s", name, p.log.String())
		}
	}
}

// showJSON is the part of `warren show --json` the tests read.
type showJSON struct {
	Interfaces []struct {
		Peers []struct {
			Endpoint        string     `json:"endpoint"`
			PresharedKey    bool       `json:"preshared_key"`
			LatestHandshake *time.Time `json:"latest_handshake"`
			RxBytes         uint64     `json:"rx_bytes"`
			TxBytes         uint64     `json:"tx_bytes"`
		} `json:"peers"`
		Drops map[string]uint64 `json:"drops"`
	} `json:"interfaces"`
}

// show returns `warren show --json NAME`.
func (l *lab) show(t testing.TB, name string) showJSON {
	t.Helper()
	out, err := l.ns.Command(context.Background(), l.warren, "show", "--json", name).Output()
	if err != nil {
		t.Fatalf("warren show %s: %v\n%s", name, err, out)
	}
	var s showJSON
	if err := json.Unmarshal(out, &s); err != nil || len(s.Interfaces) != 1 {
		t.Fatalf("warren show --json %s: %v\n%s", name, err, out)
	}
	return s
}

// guestPeer is what the guest's wg-show reports about a peer.
type guestPeer struct {
	PublicKey     string
	Endpoint      string
	LastHandshake time.Time
	RxBytes       int64
	TxBytes       int64
}

func (l *lab) guestShow(t testing.TB, ctx context.Context, dev string) guestPeer {
	t.Helper()
	out := l.run(t, ctx, "wg-show", dev)
	var peers []guestPeer
	if err := json.Unmarshal([]byte(out), &peers); err != nil || len(peers) != 1 {
		t.Fatalf("wg-show %s: %v\n%s", dev, err, out)
	}
	return peers[0]
}

// ping sends count echo requests from the lab namespace to dst and returns
// how many were answered. The first may wait 12 s: for a handshake and,
// on a loaded machine where the emulated guest crawls, one retry of it.
func (l *lab) ping(t testing.TB, dst netip.Addr, count int) int {
	t.Helper()
	return l.pingWait(t, dst, count, 12*time.Second)
}

// pingWait is ping with the first request's wait given; the others wait 2 s.
func (l *lab) pingWait(t testing.TB, dst netip.Addr, count int, first time.Duration) int {
	t.Helper()
	network, proto := "ip4:icmp", 1
	var reqType, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if dst.Is6() {
		network, proto = "ip6:ipv6-icmp", 58
		reqType, replyType = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	var c *icmp.PacketConn
	if err := l.ns.Do(func() (err error) {
		c, err = icmp.ListenPacket(network, "")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var id [2]byte
	rand.Read(id[:])
	answered := 0
	buf := make([]byte, 1500)
	for seq := 1; seq <= count; seq++ {
		msg := icmp.Message{Type: reqType, Body: &icmp.Echo{ID: int(id[0])<<8 | int(id[1]), Seq: seq, Data: []byte("vmlab host")}}
		b, _ := msg.Marshal(nil)
		sent := time.Now()
		if _, err := c.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			t.Fatalf("ping %v: %v", dst, err)
		}
		wait := 2 * time.Second
		if seq == 1 {
			wait = first
		}
		c.SetReadDeadline(sent.Add(wait))
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				t.Logf("ping %v: no answer to request %d within %v", dst, seq, wait)
				break
			}
			m, err := icmp.ParseMessage(proto, buf[:n])
			if err != nil || m.Type != replyType {
				continue
			}
			if ip, ok := from.(*net.IPAddr); !ok || !ip.IP.Equal(dst.AsSlice()) {
				continue
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.Seq == seq && e.ID == int(id[0])<<8|int(id[1]) {
				answered++
				break
			}
		}
	}
	return answered
}

// sendToGuest sends size random bytes over TCP from the lab namespace to a
// receiver in the guest at dst and checks the SHA-256 the guest computed.
func (l *lab) sendToGuest(t testing.TB, ctx context.Context, dst netip.AddrPort, size int) {
	t.Helper()
	type result struct {
		out string
		err error
	}
	res := make(chan result, 1)
	go func() {
		out, err := l.g.Run(ctx, "tcp-recv", dst.String())
		res <- result{out, err}
	}()
	var c net.Conn
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := l.ns.Do(func() (err error) {
			c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", dst.String())
			return err
		})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial %v: %v", dst, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	data := make([]byte, size)
	rand.Read(data)
	sum := sha256.Sum256(data)
	if _, err := c.Write(data); err != nil {
		c.Close()
		t.Fatalf("send to %v: %v", dst, err)
	}
	c.Close()
	r := <-res
	if r.err != nil {
		t.Fatalf("guest receiving on %v: %v", dst, r.err)
	}
	if want := fmt.Sprintf("%x %d", sum, size); r.out != want {
		t.Errorf("guest received %q, want %q", r.out, want)
	}
}

// receiveFromGuest listens in the lab namespace on listen, has the guest send
// size random bytes to it over TCP and checks their SHA-256.
func (l *lab) receiveFromGuest(t testing.TB, ctx context.Context, listen netip.AddrPort, size int) {
	t.Helper()
	var ln net.Listener
	if err := l.ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", listen.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		sum string
		n   int64
		err error
	}
	res := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			res <- result{err: err}
			return
		}
		defer c.Close()
		h := sha256.New()
		n, err := io.Copy(h, c)
		res <- result{hex.EncodeToString(h.Sum(nil)), n, err}
	}()
	out, err := l.g.Run(ctx, "tcp-send", listen.String(), fmt.Sprint(size))
	if err != nil {
		ln.Close()
		t.Fatalf("guest sending to %v: %v", listen, err)
	}
	r := <-res
	if r.err != nil {
		t.Fatalf("receiving from the guest on %v: %v", listen, r.err)
	}
	if got, want := fmt.Sprintf("%s %d", r.sum, r.n), strings.TrimSpace(out); got != want {
		t.Errorf("received %q from the guest, which sent %q", got, want)
	}
}
