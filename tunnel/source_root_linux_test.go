package tunnel

import (
	"crypto/rand"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/device/tun/tuntest"
	"github.com/warrenvpn/warren/internal/netlab"
	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
	"github.com/warrenvpn/warren/transport"
	"github.com/warrenvpn/warren/uapi"
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

// echoLab is a client and a server engine on real sockets in the two
// namespaces of a lab, with memory adapters: the client's host pings the
// server's through the tunnel every 20 ms, counting up, and the server's
// host echoes every UDP packet. The client's transport counts the senders
// of what it receives.
type echoLab struct {
	t                        *testing.T
	lab                      *netlab.Lab
	family                   string
	clientAddr, serverAddr   netip.Addr // on the lab's link
	clientInner, serverInner netip.Addr
	client, server           *Engine
	serverPort               uint16
	rec                      *sourceRecorder

	mu           sync.Mutex // guards sent and echoed
	sent, echoed int
}

// newEchoLab makes the lab; setup runs before the engines start, and the
// client's peer has the endpoint serverEndpoint returns given the server's
// port.
func newEchoLab(t *testing.T, family string, setup func(l *echoLab), serverEndpoint func(l *echoLab) netip.Addr) *echoLab {
	l := &echoLab{t: t, family: family, lab: netlabtest.NewLab(t, 0), echoed: -1}
	l.clientAddr, l.serverAddr = l.lab.AddrA.Addr(), l.lab.AddrB.Addr()
	l.clientInner, l.serverInner = netip.MustParseAddr("198.19.0.1"), netip.MustParseAddr("198.19.0.2")
	if family == "ipv6" {
		l.clientAddr, l.serverAddr = l.lab.Addr6A.Addr(), l.lab.Addr6B.Addr()
		l.clientInner, l.serverInner = netip.MustParseAddr("fd00:7761:1::1"), netip.MustParseAddr("fd00:7761:1::2")
	}
	if setup != nil {
		setup(l)
	}
	mk := func(do func(func() error) error, record bool) (*Engine, *tuntest.Memory, crypto.PrivateKey, uint16) {
		var udp *transport.UDP
		if err := do(func() (err error) {
			udp, err = transport.Listen(transport.Options{})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		mem := tuntest.NewMemory(tuntest.MemoryOptions{})
		key, _ := crypto.NewPrivateKey(rand.Reader)
		var tr Transport = udp
		if record {
			l.rec = &sourceRecorder{UDP: udp, from: make(map[netip.AddrPort]int)}
			tr = l.rec
		}
		e := New(mem, tr, Options{})
		t.Cleanup(func() {
			if err := e.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return e, mem, key, udp.Port()
	}
	server, serverMem, serverKey, serverPort := mk(l.lab.B.Do, false)
	client, clientMem, clientKey, _ := mk(l.lab.A.Do, true)
	l.server, l.client, l.serverPort = server, client, serverPort
	if err := server.SetConfig(Config{PrivateKey: serverKey, Peers: []PeerConfig{{
		PublicKey:           clientKey.PublicKey(),
		AllowedIPs:          []netip.Prefix{netip.PrefixFrom(l.clientInner, l.clientInner.BitLen())},
		PersistentKeepalive: time.Second,
	}}}); err != nil {
		t.Fatal(err)
	}
	if err := client.SetConfig(Config{PrivateKey: clientKey, Peers: []PeerConfig{{
		PublicKey:  serverKey.PublicKey(),
		Endpoint:   netip.AddrPortFrom(serverEndpoint(l), serverPort),
		AllowedIPs: []netip.Prefix{netip.PrefixFrom(l.serverInner, l.serverInner.BitLen())},
	}}}); err != nil {
		t.Fatal(err)
	}
	for _, e := range []*Engine{server, client} {
		if err := e.Up(); err != nil {
			t.Fatal(err)
		}
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(func() { close(stop) })
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case pkt, ok := <-serverMem.Written():
				if !ok {
					return
				}
				if src, dst, payload, ok := tuntest.ParseUDP(pkt); ok {
					serverMem.Inject(tuntest.UDPPacket(dst, src, payload))
				}
			}
		}
	})
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case pkt, ok := <-clientMem.Written():
				if !ok {
					return
				}
				if _, _, payload, ok := tuntest.ParseUDP(pkt); ok {
					if n, err := strconv.Atoi(strings.TrimPrefix(string(payload), "ping ")); err == nil {
						l.mu.Lock()
						l.echoed = max(l.echoed, n)
						l.mu.Unlock()
					}
				}
			case <-tick.C:
				l.mu.Lock()
				n := l.sent
				l.sent++
				l.mu.Unlock()
				clientMem.Inject(tuntest.UDPPacket(netip.AddrPortFrom(l.clientInner, 1000),
					netip.AddrPortFrom(l.serverInner, 2000), fmt.Appendf(nil, "ping %d", n)))
			}
		}
	})
	return l
}

// echoAfter waits until a ping sent from now on is echoed and returns how
// long that took.
func (l *echoLab) echoAfter(what string, limit time.Duration) time.Duration {
	l.t.Helper()
	l.mu.Lock()
	from := l.sent
	l.mu.Unlock()
	start := time.Now()
	for time.Since(start) < limit {
		l.mu.Lock()
		ok := l.echoed >= from
		l.mu.Unlock()
		if ok {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	l.t.Fatalf("%s: no echo within %v (client drops %v, server drops %v)", what, limit, l.client.DropCounts(), l.server.DropCounts())
	return 0
}

// addAddr adds p to ns's link (without duplicate address detection;
// deprecated, so that the kernel never picks it by itself).
func (l *echoLab) addAddr(ns *netlab.Namespace, linkName string, p netip.Prefix, deprecated bool) (*netlink.Addr, netlink.Link) {
	l.t.Helper()
	h := ns.Handle()
	link, err := h.LinkByName(linkName)
	if err != nil {
		l.t.Fatal(err)
	}
	a := &netlink.Addr{IPNet: prefixNet(p), Flags: unix.IFA_F_NODAD}
	if deprecated {
		a.PreferedLft, a.ValidLft = 0, math.MaxInt32 // valid for 68 years (int is 32 bits on 386)
	}
	if err := h.AddrAdd(link, a); err != nil {
		l.t.Fatal(err)
	}
	if err := ns.WaitLocal(p.Addr()); err != nil {
		l.t.Fatal(err)
	}
	return a, link
}

// kernelSource returns the kernel's own source address in ns toward dst.
func kernelSource(t *testing.T, ns *netlab.Namespace, dst netip.Addr) netip.Addr {
	t.Helper()
	var chosen netip.Addr
	if err := ns.Do(func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 9)))
		if err != nil {
			return err
		}
		defer c.Close()
		chosen = c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return chosen
}

// localOf returns p's source address.
func localOf(p *peer) netip.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.local
}

// TestRO5RO6SourceAddressRoot covers RO6 and RO5 on real sockets (root): the
// server's namespace has two addresses on its underlay link, and the
// kernel's choice toward the client is the first (the second is an IPv4
// secondary address, or a deprecated IPv6 one, as Linux would pick the
// newer of two in one /64). The client knows the server only by the
// second. Every datagram the client's socket receives from the server,
// handshake response, echoes and keepalives, comes from the second address
// (RO6). Then the second address is removed under traffic: the server's
// next send from it fails, goes from the first instead, the client
// authenticates it and moves its endpoint there (RO1), and the echoes
// resume, within the server's 1 s persistent keepalive (RO5). IPv4 and
// IPv6.
func TestRO5RO6SourceAddressRoot(t *testing.T) {
	for _, family := range []string{"ipv4", "ipv6"} {
		t.Run(family, func(t *testing.T) {
			second := netip.MustParsePrefix("198.18.0.12/24")
			if family == "ipv6" {
				second = netip.MustParsePrefix("fd00:7761::12/64")
			}
			var secondAddr *netlink.Addr
			var link netlink.Link
			l := newEchoLab(t, family, func(l *echoLab) {
				secondAddr, link = l.addAddr(l.lab.B, l.lab.LinkB, second, family == "ipv6")
				if got := kernelSource(t, l.lab.B, l.clientAddr); got != l.serverAddr {
					t.Fatalf("the kernel's source toward %v is %v, want %v", l.clientAddr, got, l.serverAddr)
				}
			}, func(*echoLab) netip.Addr { return second.Addr() })
			secondEP := netip.AddrPortFrom(second.Addr(), l.serverPort)
			firstEP := netip.AddrPortFrom(l.serverAddr, l.serverPort)

			l.echoAfter("first echo", 10*time.Second)
			time.Sleep(1200 * time.Millisecond) // more echoes, and a keepalive of the server's
			l.echoAfter("echo", 5*time.Second)
			from := l.rec.take()
			if len(from) != 1 || from[secondEP] == 0 {
				t.Fatalf("RO6: the client received from %v, want only %v", from, secondEP)
			}
			t.Logf("RO6: the client received %d datagrams, all from %v", from[secondEP], secondEP)
			sp := l.server.peerList()[0]
			if ep := sp.currentEndpoint(); ep.Addr().Unmap() != l.clientAddr {
				t.Fatalf("server's endpoint of the client is %v, want %v", ep, l.clientAddr)
			}
			// What warren show prints as the peer's local address.
			st, err := l.server.State()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(st.Peers[0].Extras, uapi.Extra{Key: "warren_local", Value: second.Addr().String()}) {
				t.Errorf("server's get=warren extras of the client = %v, want warren_local=%v", st.Peers[0].Extras, second.Addr())
			}

			// RO5: the second address goes under traffic.
			if err := l.lab.B.Handle().AddrDel(link, secondAddr); err != nil {
				t.Fatal(err)
			}
			took := l.echoAfter("RO5: after the second address went", 10*time.Second)
			t.Logf("RO5: echoes resumed %v after the second address went", took)
			l.echoAfter("echo", 5*time.Second)
			from = l.rec.take()
			if from[firstEP] == 0 {
				t.Errorf("RO5: the client received from %v, want from %v", from, firstEP)
			}
			if ep := l.client.peerList()[0].currentEndpoint(); ep != firstEP {
				t.Errorf("RO5: the client's endpoint of the server is %v, want %v", ep, firstEP)
			}
			if local := localOf(sp); local != l.serverAddr {
				t.Errorf("RO5: the server sends from %v, want %v (learnt again)", local, l.serverAddr)
			}
			if took > 3*time.Second {
				t.Errorf("RO5: recovery took %v, want within the 1 s keepalive and a few pings", took)
			}
		})
	}
}

// TestRO8RouteChangeRoot covers RO8 on real sockets (root): mid-session a
// preferred route toward the server with a new source address appears in
// the client's namespace (a third address, and a host route to the server
// naming it as the source). The client's learnt source was the kernel's
// own choice, so it sends without one and its next packet leaves from the
// new address; the server authenticates that and moves its view of the
// client's endpoint there (RO1), its echoes follow, and the client learns
// the new address as its source (and at its next look at the kernel's
// choice keeps it). Within 3 look intervals at most. IPv4 and IPv6.
func TestRO8RouteChangeRoot(t *testing.T) {
	for _, family := range []string{"ipv4", "ipv6"} {
		t.Run(family, func(t *testing.T) {
			l := newEchoLab(t, family, nil, func(l *echoLab) netip.Addr { return l.serverAddr })
			l.echoAfter("first echo", 10*time.Second)
			cp, sp := l.client.peerList()[0], l.server.peerList()[0]
			if local := localOf(cp); local != l.clientAddr {
				t.Fatalf("the client sends from %v, want %v", local, l.clientAddr)
			}

			moved := netip.MustParsePrefix("198.18.0.21/24")
			if family == "ipv6" {
				moved = netip.MustParsePrefix("fd00:7761::21/64")
			}
			_, link := l.addAddr(l.lab.A, l.lab.LinkA, moved, true)
			route := &netlink.Route{
				LinkIndex: link.Attrs().Index,
				Dst:       prefixNet(netip.PrefixFrom(l.serverAddr, l.serverAddr.BitLen())),
				Src:       moved.Addr().AsSlice(),
				Scope:     netlink.SCOPE_LINK,
			}
			if err := l.lab.A.Handle().RouteAdd(route); err != nil {
				t.Fatalf("add route %v: %v", route, err)
			}
			if got := kernelSource(t, l.lab.A, l.serverAddr); got != moved.Addr() {
				t.Fatalf("the kernel's source toward %v is %v, want %v", l.serverAddr, got, moved.Addr())
			}
			start := time.Now()
			want := netip.AddrPortFrom(moved.Addr(), cp.e.transport().(*sourceRecorder).Port())
			for sp.currentEndpoint() != want {
				if time.Since(start) > 3*sourceCheckInterval {
					t.Fatalf("RO8: the server's endpoint of the client is still %v after %v, want %v",
						sp.currentEndpoint(), time.Since(start), want)
				}
				time.Sleep(10 * time.Millisecond)
			}
			t.Logf("RO8: the server saw the client at %v %v after the route appeared", want, time.Since(start))
			l.echoAfter("RO8: echo after the move", 5*time.Second)
			if local := localOf(cp); local != moved.Addr() {
				t.Errorf("RO8: the client sends from %v, want %v", local, moved.Addr())
			}
		})
	}
}

// TestRO7SecondUplinkRoot covers RO7 on real sockets (root): the server
// has a second link to the client's namespace (a second uplink), while
// its default route, and its connected route to the client's address, go
// over the first; its policy routing sends what leaves from the second
// link's address over the second link, as an operator of two uplinks sets
// it up. The client reaches the server at the second link's address, from
// its first link's address. Every datagram the client receives from the
// server comes from the second link's address, and over the second link:
// the kernel's own choice would have been the first link's address over
// the first link. IPv4 and IPv6.
func TestRO7SecondUplinkRoot(t *testing.T) {
	for _, family := range []string{"ipv4", "ipv6"} {
		t.Run(family, func(t *testing.T) {
			clientUp2, serverUp2 := netip.MustParsePrefix("198.18.4.1/24"), netip.MustParsePrefix("198.18.4.2/24")
			if family == "ipv6" {
				clientUp2, serverUp2 = netip.MustParsePrefix("fd00:7761:4::1/64"), netip.MustParsePrefix("fd00:7761:4::2/64")
			}
			const linkA2, linkB2 = "veth-a2", "veth-b2"
			l := newEchoLab(t, family, func(l *echoLab) {
				ns, err := os.Open(filepath.Join("/run/netns", l.lab.B.Name()))
				if err != nil {
					t.Fatal(err)
				}
				defer ns.Close()
				if err := l.lab.A.Handle().LinkAdd(&netlink.Veth{
					LinkAttrs:     netlink.LinkAttrs{Name: linkA2},
					PeerName:      linkB2,
					PeerNamespace: netlink.NsFd(ns.Fd()),
				}); err != nil {
					t.Fatalf("add veth pair %s/%s: %v", linkA2, linkB2, err)
				}
				a2 := l.up(l.lab.A, linkA2, clientUp2)
				b2 := l.up(l.lab.B, linkB2, serverUp2)
				b1, err := l.lab.B.Handle().LinkByName(l.lab.LinkB)
				if err != nil {
					t.Fatal(err)
				}
				host := func(a netip.Addr) *net.IPNet { return prefixNet(netip.PrefixFrom(a, a.BitLen())) }
				for _, c := range []struct {
					ns *netlab.Namespace
					r  *netlink.Route
				}{
					// The client reaches the server's second address over
					// its second link, from its first link's address.
					{l.lab.A, &netlink.Route{LinkIndex: a2.Attrs().Index, Dst: host(serverUp2.Addr()), Src: l.clientAddr.AsSlice(), Scope: netlink.SCOPE_LINK}},
					// The server's default route is its first link.
					{l.lab.B, &netlink.Route{LinkIndex: b1.Attrs().Index, Gw: l.clientAddr.AsSlice()}},
					// Its table 100 goes over the second link.
					{l.lab.B, &netlink.Route{LinkIndex: b2.Attrs().Index, Dst: host(l.clientAddr), Gw: clientUp2.Addr().AsSlice(), Table: 100}},
				} {
					if err := c.ns.Handle().RouteAdd(c.r); err != nil {
						t.Fatalf("add route %v: %v", c.r, err)
					}
				}
				rule := netlink.NewRule()
				rule.Src, rule.Table, rule.Priority = host(serverUp2.Addr()), 100, 100
				rule.Family = unix.AF_INET
				if family == "ipv6" {
					rule.Family = unix.AF_INET6
				}
				if err := l.lab.B.Handle().RuleAdd(rule); err != nil {
					t.Fatalf("add rule %v: %v", rule, err)
				}
				if got := kernelSource(t, l.lab.B, l.clientAddr); got != l.serverAddr {
					t.Fatalf("the kernel's source toward %v is %v, want %v", l.clientAddr, got, l.serverAddr)
				}
			}, func(*echoLab) netip.Addr { return serverUp2.Addr() })
			l.echoAfter("first echo", 10*time.Second)
			rxA1, rxA2 := l.rxPackets(l.lab.LinkA), l.rxPackets(linkA2)
			l.rec.take()
			time.Sleep(time.Second)
			l.echoAfter("echo", 5*time.Second)
			from := l.rec.take()
			want := netip.AddrPortFrom(serverUp2.Addr(), l.serverPort)
			if len(from) != 1 || from[want] == 0 {
				t.Fatalf("RO7: the client received from %v, want only %v", from, want)
			}
			d1, d2 := l.rxPackets(l.lab.LinkA)-rxA1, l.rxPackets(linkA2)-rxA2
			// Packets, not datagrams: a GSO run crosses the veth as one.
			if d2 == 0 || d1 > 5 {
				t.Errorf("RO7: %d datagrams arrived; the first link received %d packets, the second %d; want them all over the second", from[want], d1, d2)
			}
			t.Logf("RO7: the client received %d datagrams, all from %v and over the second link (%d packets there, %d on the first)", from[want], want, d2, d1)
		})
	}
}

// up puts p on ns's link name and brings it up.
func (l *echoLab) up(ns *netlab.Namespace, name string, p netip.Prefix) netlink.Link {
	l.t.Helper()
	h := ns.Handle()
	link, err := h.LinkByName(name)
	if err != nil {
		l.t.Fatal(err)
	}
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: prefixNet(p), Flags: unix.IFA_F_NODAD}); err != nil {
		l.t.Fatal(err)
	}
	if err := h.LinkSetUp(link); err != nil {
		l.t.Fatal(err)
	}
	if err := ns.WaitLocal(p.Addr()); err != nil {
		l.t.Fatal(err)
	}
	return link
}

// rxPackets returns how many packets the client's link name received.
func (l *echoLab) rxPackets(name string) uint64 {
	l.t.Helper()
	link, err := l.lab.A.Handle().LinkByName(name)
	if err != nil {
		l.t.Fatal(err)
	}
	return link.Attrs().Statistics.RxPackets
}
