package tunnel

import (
	"crypto/rand"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/device/tun/tuntest"
	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
	"github.com/warrenvpn/warren/transport"
)

// sourceRecorder is a transport that counts the senders of the datagrams
// it receives: what the client's socket sees with recvmmsg.
type sourceRecorder struct {
	*transport.UDP
	mu   sync.Mutex // guards from
	from map[netip.AddrPort]int
}

func (r *sourceRecorder) Receive(bufs [][]byte, sizes []int, eps []netip.AddrPort, locals []netip.Addr) (int, error) {
	n, err := r.UDP.Receive(bufs, sizes, eps, locals)
	r.mu.Lock()
	for _, ep := range eps[:n] {
		r.from[ep]++
	}
	r.mu.Unlock()
	return n, err
}

// take returns the counts since the last call.
func (r *sourceRecorder) take() map[netip.AddrPort]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.from
	r.from = make(map[netip.AddrPort]int)
	return m
}

// TestRO5RO6SourceAddressRoot covers RO6 and RO5 on real sockets (root): the
// server's namespace has two addresses on its underlay link, and the
// kernel's choice toward the client is the first (the second is an IPv4
// secondary address, or a deprecated IPv6 one). The client knows the server only by the second. Pings through the
// tunnel are echoed by the server's host, and every datagram the client's
// socket receives from the server, handshake response, echoes and
// keepalives, comes from the second address (RO6). Then the second address
// is removed under traffic: the server's next send from it fails, goes from
// the first instead, the client authenticates it and moves its endpoint
// there (RO1), and the echoes resume, within the server's 1 s persistent
// keepalive (RO5). IPv4 and IPv6.
func TestRO5RO6SourceAddressRoot(t *testing.T) {
	for _, family := range []string{"ipv4", "ipv6"} {
		t.Run(family, func(t *testing.T) { testSourceAddressRoot(t, family) })
	}
}

func testSourceAddressRoot(t *testing.T, family string) {
	lab := netlabtest.NewLab(t, 0)
	clientAddr, first := lab.AddrA.Addr(), lab.AddrB.Addr()
	second := netip.MustParsePrefix("198.18.0.12/24")
	clientInner, serverInner := netip.MustParseAddr("198.19.0.1"), netip.MustParseAddr("198.19.0.2")
	if family == "ipv6" {
		clientAddr, first = lab.Addr6A.Addr(), lab.Addr6B.Addr()
		second = netip.MustParsePrefix("fd00:7761::12/64")
		clientInner, serverInner = netip.MustParseAddr("fd00:7761:1::1"), netip.MustParseAddr("fd00:7761:1::2")
	}
	h := lab.B.Handle()
	link, err := h.LinkByName(lab.LinkB)
	if err != nil {
		t.Fatal(err)
	}
	secondAddr := &netlink.Addr{IPNet: prefixNet(second), Flags: unix.IFA_F_NODAD}
	if family == "ipv6" {
		// Linux picks the newest of two addresses in one /64: deprecate
		// the second (preferred lifetime 0, valid for ever) so that the
		// kernel's choice is the first; it still takes and sends traffic.
		secondAddr.PreferedLft, secondAddr.ValidLft = 0, math.MaxUint32
	}
	if err := h.AddrAdd(link, secondAddr); err != nil {
		t.Fatal(err)
	}
	if err := lab.B.WaitLocal(second.Addr()); err != nil {
		t.Fatal(err)
	}

	// The kernel's own choice toward the client is the first address, so
	// only a source set per datagram makes the second one appear.
	var chosen netip.Addr
	if err := lab.B.Do(func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(clientAddr, 9)))
		if err != nil {
			return err
		}
		defer c.Close()
		chosen = c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if chosen != first {
		t.Fatalf("the kernel's source toward %v is %v, want %v", clientAddr, chosen, first)
	}

	type side struct {
		e   *Engine
		mem *tuntest.Memory
		key crypto.PrivateKey
	}
	var rec *sourceRecorder
	mk := func(do func(func() error) error, record bool) side {
		var udp *transport.UDP
		if err := do(func() (err error) {
			udp, err = transport.Listen(transport.Options{})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		s := side{mem: tuntest.NewMemory(tuntest.MemoryOptions{})}
		s.key, _ = crypto.NewPrivateKey(rand.Reader)
		var tr Transport = udp
		if record {
			rec = &sourceRecorder{UDP: udp, from: make(map[netip.AddrPort]int)}
			tr = rec
		}
		s.e = New(s.mem, tr, Options{})
		t.Cleanup(func() {
			if err := s.e.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	}
	server, client := mk(lab.B.Do, false), mk(lab.A.Do, true)
	serverPort := server.e.transport().(*transport.UDP).Port()
	if err := server.e.SetConfig(Config{PrivateKey: server.key, Peers: []PeerConfig{{
		PublicKey:           client.key.PublicKey(),
		AllowedIPs:          []netip.Prefix{netip.PrefixFrom(clientInner, clientInner.BitLen())},
		PersistentKeepalive: time.Second,
	}}}); err != nil {
		t.Fatal(err)
	}
	if err := client.e.SetConfig(Config{PrivateKey: client.key, Peers: []PeerConfig{{
		PublicKey:  server.key.PublicKey(),
		Endpoint:   netip.AddrPortFrom(second.Addr(), serverPort),
		AllowedIPs: []netip.Prefix{netip.PrefixFrom(serverInner, serverInner.BitLen())},
	}}}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []side{server, client} {
		if err := s.e.Up(); err != nil {
			t.Fatal(err)
		}
	}

	// The server's host echoes every UDP packet; the client's pings every
	// 20 ms, counting up, and notes the highest echo.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(func() { close(stop) })
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case pkt, ok := <-server.mem.Written():
				if !ok {
					return
				}
				if src, dst, payload, ok := tuntest.ParseUDP(pkt); ok {
					server.mem.Inject(tuntest.UDPPacket(dst, src, payload))
				}
			}
		}
	})
	var mu sync.Mutex // guards sent and echoed
	sent, echoed := 0, -1
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case pkt, ok := <-client.mem.Written():
				if !ok {
					return
				}
				if _, _, payload, ok := tuntest.ParseUDP(pkt); ok {
					if n, err := strconv.Atoi(strings.TrimPrefix(string(payload), "ping ")); err == nil {
						mu.Lock()
						echoed = max(echoed, n)
						mu.Unlock()
					}
				}
			case <-tick.C:
				mu.Lock()
				n := sent
				sent++
				mu.Unlock()
				client.mem.Inject(tuntest.UDPPacket(netip.AddrPortFrom(clientInner, 1000),
					netip.AddrPortFrom(serverInner, 2000), fmt.Appendf(nil, "ping %d", n)))
			}
		}
	})
	// echoAfter waits until a ping sent after now is echoed and returns how
	// long that took.
	echoAfter := func(what string, limit time.Duration) time.Duration {
		t.Helper()
		mu.Lock()
		from := sent
		mu.Unlock()
		start := time.Now()
		for time.Since(start) < limit {
			mu.Lock()
			ok := echoed >= from
			mu.Unlock()
			if ok {
				return time.Since(start)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("%s: no echo within %v (client drops %v, server drops %v)", what, limit, client.e.DropCounts(), server.e.DropCounts())
		return 0
	}

	secondEP, firstEP := netip.AddrPortFrom(second.Addr(), serverPort), netip.AddrPortFrom(first, serverPort)
	echoAfter("first echo", 10*time.Second)
	time.Sleep(1200 * time.Millisecond) // more echoes, and a keepalive of the server's
	echoAfter("echo", 5*time.Second)
	from := rec.take()
	if len(from) != 1 || from[secondEP] == 0 {
		t.Fatalf("RO6: the client received from %v, want only %v", from, secondEP)
	}
	t.Logf("RO6: the client received %d datagrams, all from %v", from[secondEP], secondEP)
	sp := server.e.peerList()[0]
	if ep := sp.currentEndpoint(); ep.Addr().Unmap() != clientAddr {
		t.Fatalf("server's endpoint of the client is %v, want %v", ep, clientAddr)
	}

	// RO5: the second address goes under traffic.
	if err := h.AddrDel(link, secondAddr); err != nil {
		t.Fatal(err)
	}
	took := echoAfter("RO5: after the second address went", 10*time.Second)
	t.Logf("RO5: echoes resumed %v after the second address went", took)
	echoAfter("echo", 5*time.Second)
	from = rec.take()
	if from[firstEP] == 0 {
		t.Errorf("RO5: the client received from %v, want from %v", from, firstEP)
	}
	if ep := client.e.peerList()[0].currentEndpoint(); ep != firstEP {
		t.Errorf("RO5: the client's endpoint of the server is %v, want %v", ep, firstEP)
	}
	sp.mu.Lock()
	local := sp.local
	sp.mu.Unlock()
	if local != first {
		t.Errorf("RO5: the server sends from %v, want %v (learnt again)", local, first)
	}
	if took > 3*time.Second {
		t.Errorf("RO5: recovery took %v, want within the 1 s keepalive and a few pings", took)
	}
}
