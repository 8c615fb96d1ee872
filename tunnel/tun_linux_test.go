package tunnel

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/device/tun"
	"github.com/warrenvpn/warren/internal/leakcheck"
	"github.com/warrenvpn/warren/internal/netlab"
	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
	"github.com/warrenvpn/warren/transport"
)

// tunSide is one engine on a real TUN and a real UDP socket, in a
// namespace of a netlab.Lab.
type tunSide struct {
	ns    *netlab.Namespace
	e     *Engine
	key   crypto.PrivateKey
	port  uint16
	inner netip.Prefix
}

// newTUNPair runs two engines on TUN devices with offloads and batched UDP,
// one in each namespace of a lab, tunnelled over its veth (root).
func newTUNPair(tb testing.TB) (a, b *tunSide) {
	tb.Helper()
	_, a, b = newTUNLab(tb)
	return a, b
}

// newTUNLab is newTUNPair that also returns the lab.
func newTUNLab(tb testing.TB) (lab *netlab.Lab, a, b *tunSide) {
	tb.Helper()
	lab = netlabtest.NewLab(tb, 0)
	a = openTUNSide(tb, lab.A, "wt0", 1420, "198.19.0.1/24")
	b = openTUNSide(tb, lab.B, "wt0", 1420, "198.19.0.2/24")
	connectSides(tb, a, b, lab.AddrA.Addr(), lab.AddrB.Addr())
	return lab, a, b
}

// openTUNSide runs an engine in ns on a new TUN device dev of the given
// MTU, with offloads, and a batched UDP socket; the device carries inner
// and is up (root).
func openTUNSide(tb testing.TB, ns *netlab.Namespace, dev string, mtu int, inner string) *tunSide {
	tb.Helper()
	s := &tunSide{ns: ns, inner: netip.MustParsePrefix(inner)}
	s.key, _ = crypto.NewPrivateKey(rand.Reader)
	var ad *tun.TUN
	var udp *transport.UDP
	err := ns.Do(func() error {
		var err error
		if ad, err = tun.OpenTUN(dev, mtu); err != nil {
			return err
		}
		udp, err = transport.Listen(transport.Options{})
		return err
	})
	if err != nil {
		if ad != nil {
			ad.Close()
		}
		tb.Fatal(err)
	}
	s.port = udp.Port()
	s.e = New(ad, udp, Options{})
	tb.Cleanup(func() {
		if err := s.e.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	h := ns.Handle()
	link, err := h.LinkByName(dev)
	if err != nil {
		tb.Fatal(err)
	}
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: prefixNet(s.inner)}); err != nil {
		tb.Fatal(err)
	}
	if err := h.LinkSetUp(link); err != nil {
		tb.Fatal(err)
	}
	return s
}

// connectSides makes a and b each other's only peer, with the other's
// tunnel address as allowed IP, a reaching b at addrB and b reaching a at
// addrA, and brings both engines up.
func connectSides(tb testing.TB, a, b *tunSide, addrA, addrB netip.Addr) {
	tb.Helper()
	for _, c := range []struct {
		s, peer *tunSide
		addr    netip.Addr
	}{{a, b, addrB}, {b, a, addrA}} {
		err := c.s.e.SetConfig(Config{PrivateKey: c.s.key, Peers: []PeerConfig{{
			PublicKey:  c.peer.key.PublicKey(),
			Endpoint:   netip.AddrPortFrom(c.addr, c.peer.port),
			AllowedIPs: []netip.Prefix{netip.PrefixFrom(c.peer.inner.Addr(), 32)},
		}}})
		if err != nil {
			tb.Fatal(err)
		}
		if err := c.s.e.Up(); err != nil {
			tb.Fatal(err)
		}
	}
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// tcpPair returns a TCP connection from a to b through the tunnel.
func tcpPair(tb testing.TB, a, b *tunSide) (client, server net.Conn) {
	tb.Helper()
	var ln net.Listener
	if err := b.ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(b.inner.Addr(), 0).String())
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	if err := a.ns.Do(func() (err error) {
		d := net.Dialer{Timeout: 10 * time.Second}
		client, err = d.Dial("tcp", ln.Addr().String())
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		tb.Fatal("accept failed")
	}
	tb.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestTUNTransfer (root) sends 16 MiB over TCP through two engines on real
// TUN devices and UDP sockets, with offloads, and checks the SHA-256 on
// arrival; the engines' drop counters stay free of errors.
func TestTUNTransfer(t *testing.T) {
	leakcheck.Check(t)
	a, b := newTUNPair(t)
	client, server := tcpPair(t, a, b)
	const size = 16 << 20
	got := make(chan [32]byte, 1)
	go func() {
		h := sha256.New()
		io.Copy(h, io.LimitReader(server, size))
		var sum [32]byte
		h.Sum(sum[:0])
		got <- sum
	}()
	h := sha256.New()
	if _, err := io.Copy(client, io.TeeReader(io.LimitReader(rand.Reader, size), h)); err != nil {
		t.Fatal(err)
	}
	var want [32]byte
	h.Sum(want[:0])
	select {
	case sum := <-got:
		if sum != want {
			t.Error("checksum mismatch")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("transfer did not finish")
	}
	for _, s := range []*tunSide{a, b} {
		for _, r := range []DropReason{DropAuthFailed, DropReplay, DropLengthError, DropFrameError, DropSourceCheck, DropWriteError} {
			if n := s.e.Drops(r); n != 0 {
				t.Errorf("%v: %d drops", r, n)
			}
		}
	}
}

// BenchmarkTUNTCP (root) measures one TCP stream through two engines on
// real TUN devices and UDP sockets on this machine: bytes/s of payload.
func BenchmarkTUNTCP(b *testing.B) {
	sa, sb := newTUNPair(b)
	client, server := tcpPair(b, sa, sb)
	const chunk = 1 << 20
	buf := make([]byte, chunk)
	done := make(chan error, 1)
	total := int64(0)
	b.SetBytes(chunk)
	b.ResetTimer()
	go func() {
		n, err := io.Copy(io.Discard, server)
		total = n
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
		done <- err
	}()
	for b.Loop() {
		if _, err := client.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	client.Close()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if want := int64(b.N) * chunk; total != want {
		b.Fatal(fmt.Sprintf("received %d of %d bytes", total, want))
	}
}
