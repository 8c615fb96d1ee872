package tunnel

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/device/tun/tuntest"
)

// fakeClock is a Clock that moves only when told to.
type fakeClock struct {
	mu   sync.Mutex // guards now and wall
	now  time.Duration
	wall time.Time // Wall is wall + now
}

func newFakeClock() *fakeClock {
	// Start far from zero so that no deadline computes to zero.
	return &fakeClock{now: time.Hour, wall: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Wall() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wall.Add(c.now)
}

// stepWall steps the wall clock by d, as an administrator or NTP would;
// Now, the boot time, does not move.
func (c *fakeClock) stepWall(d time.Duration) {
	c.mu.Lock()
	c.wall = c.wall.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now += d
	c.mu.Unlock()
}

// seededRand returns a deterministic randomness source.
func seededRand(seed byte) *rand.ChaCha8 {
	var s [32]byte
	s[0] = seed
	return rand.NewChaCha8(s)
}

// stepNet is an in-memory network that never blocks: Receive returns 0
// when nothing is queued. Tests move packets by calling pair.run. It can
// drop or rewrite packets through hook and counts what it delivered.
type stepNet struct {
	mu     sync.Mutex // guards everything below
	queues map[netip.AddrPort][]datagram
	hook   func(d *datagram) bool // false drops the datagram
	sent   map[netip.AddrPort]int // datagrams sent to each destination
	log    []datagram             // every datagram delivered, when record is set
	record bool
}

type datagram struct {
	src, dst netip.AddrPort
	data     []byte
}

func newStepNet() *stepNet {
	return &stepNet{queues: make(map[netip.AddrPort][]datagram), sent: make(map[netip.AddrPort]int)}
}

func (n *stepNet) transport(addr netip.AddrPort) *stepTransport {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.queues[addr] = nil
	return &stepTransport{net: n, addr: addr}
}

// inject delivers data to dst as if sent from src, bypassing the hook.
func (n *stepNet) inject(src, dst netip.AddrPort, data []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.queues[dst] = append(n.queues[dst], datagram{src, dst, append([]byte(nil), data...)})
}

func (n *stepNet) sentTo(dst netip.AddrPort) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.sent[dst]
}

func (n *stepNet) pending(addr netip.AddrPort) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.queues[addr])
}

func (n *stepNet) setHook(h func(d *datagram) bool) {
	n.mu.Lock()
	n.hook = h
	n.mu.Unlock()
}

type stepTransport struct {
	net    *stepNet
	addr   netip.AddrPort
	extra  []netip.AddrPort // further addresses (addAddr), guarded by net.mu
	route  netip.Addr       // the system's source choice (setRoute); zero: addr's; guarded by net.mu
	closed bool
}

// setRoute makes a, one of t's addresses, the system's own source choice
// toward every destination, as a new preferred route would.
func (t *stepTransport) setRoute(a netip.Addr) {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	t.route = a
}

// RouteSource returns the system's source choice: setRoute's, or t's first
// address.
func (t *stepTransport) RouteSource(netip.AddrPort) (netip.Addr, error) {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	if t.route.IsValid() {
		return t.route, nil
	}
	return t.addr.Addr(), nil
}

// addAddr gives t a further address on its port, like a host's second
// uplink: datagrams to it arrive at t with it as their local address.
func (t *stepTransport) addAddr(a netip.Addr) netip.AddrPort {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	ap := netip.AddrPortFrom(a, t.addr.Port())
	t.extra = append(t.extra, ap)
	t.net.queues[ap] = nil
	return ap
}

// removeAddr takes an address addAddr gave away again: datagrams to it are
// lost, and a Send from it fails with EINVAL, as the kernel's does.
func (t *stepTransport) removeAddr(a netip.Addr) {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	ap := netip.AddrPortFrom(a, t.addr.Port())
	t.extra = slices.DeleteFunc(t.extra, func(x netip.AddrPort) bool { return x == ap })
	delete(t.net.queues, ap)
}

func (t *stepTransport) Receive(bufs [][]byte, sizes []int, eps []netip.AddrPort, locals []netip.Addr) (int, error) {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	if t.closed {
		return 0, net.ErrClosed
	}
	n := 0
	for i := -1; i < len(t.extra); i++ {
		addr := t.addr
		if i >= 0 {
			addr = t.extra[i]
		}
		q := t.net.queues[addr]
		k := 0
		for n < len(bufs) && k < len(q) {
			sizes[n] = copy(bufs[n], q[k].data)
			eps[n], locals[n] = q[k].src, q[k].dst.Addr()
			n++
			k++
		}
		t.net.queues[addr] = q[k:]
	}
	return n, nil
}

func (t *stepTransport) Send(bufs [][]byte, ep netip.AddrPort, local netip.Addr) (int, error) {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	if t.closed {
		return 0, net.ErrClosed
	}
	src := t.addr
	if t.route.IsValid() {
		src = netip.AddrPortFrom(t.route, t.addr.Port())
	}
	if local.IsValid() {
		src = netip.AddrPortFrom(local, t.addr.Port())
		if src != t.addr && !slices.Contains(t.extra, src) {
			return 0, fmt.Errorf("send from %v: %w", local, syscall.EINVAL)
		}
	}
	for _, b := range bufs {
		d := datagram{src, ep, append([]byte(nil), b...)}
		t.net.sent[ep]++
		if t.net.hook != nil && !t.net.hook(&d) {
			continue
		}
		if _, ok := t.net.queues[d.dst]; !ok {
			continue
		}
		t.net.queues[d.dst] = append(t.net.queues[d.dst], d)
		if t.net.record {
			t.net.log = append(t.net.log, d)
		}
	}
	return len(bufs), nil // the hook's drops are losses in the network
}

func (t *stepTransport) BatchSize() int { return 16 }

func (t *stepTransport) Close() error {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	t.closed = true
	return nil
}

// stepAdapter is an adapter that never blocks: Read returns 0 when nothing
// was injected; written packets are kept.
type stepAdapter struct {
	mu      sync.Mutex // guards in, out
	in      [][]byte
	out     [][]byte
	mtu     int
	discard bool // do not keep written packets (benchmarks)
}

func (a *stepAdapter) inject(pkts ...[]byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range pkts {
		a.in = append(a.in, append([]byte(nil), p...))
	}
}

func (a *stepAdapter) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for n < len(bufs) && n < len(a.in) {
		sizes[n] = copy(bufs[n][offset:], a.in[n])
		n++
	}
	a.in = a.in[n:]
	return n, nil
}

func (a *stepAdapter) Write(bufs [][]byte, offset int) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.discard {
		for _, b := range bufs {
			a.out = append(a.out, append([]byte(nil), b[offset:]...))
		}
	}
	return len(bufs), nil
}

// written returns and forgets the packets written so far.
func (a *stepAdapter) written() [][]byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.out
	a.out = nil
	return out
}

func (a *stepAdapter) pendingIn() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.in)
}

func (a *stepAdapter) BatchSize() int { return 16 }
func (a *stepAdapter) MTU() int       { return a.mtu }
func (a *stepAdapter) Name() string   { return "step0" }
func (a *stepAdapter) Close() error   { return nil }

// node is one engine of a test, driven step by step.
type node struct {
	e    *Engine
	ad   *stepAdapter
	tr   *stepTransport
	key  crypto.PrivateKey
	pub  crypto.PublicKey
	addr netip.AddrPort // outer address
	out  *outbound
	in   *inbound
	pipe pipeTurns // with -pipelines N, the scratch of each pipeline (pipeline_test.go)
}

// step moves what is pending on n once and reports whether anything moved.
func (n *node) step() bool {
	n.nextPipeline()
	moved := false
	if k, _ := n.ad.Read(n.out.bufs, n.out.sizes, Offset); k > 0 {
		n.e.processOutbound(n.out, k)
		moved = true
	}
	if k, _ := n.tr.Receive(n.in.bufs, n.in.sizes, n.in.eps, n.in.locals); k > 0 {
		n.e.processInbound(n.in, k)
		moved = true
	}
	if len(n.e.handshakes) > 0 || len(n.e.handshakesMAC2) > 0 || len(n.e.initiations) > 0 {
		n.e.drainHandshakes()
		moved = true
	}
	return moved
}

// pair is two engines a and b that know each other, on one stepNet, with
// one fake clock.
type pair struct {
	t     testing.TB
	clock *fakeClock
	net   *stepNet
	a, b  *node
}

// Test addresses (198.18.0.0/15, fd00:7761::/32).
var (
	outerA  = netip.MustParseAddrPort("198.18.0.1:51820")
	outerB  = netip.MustParseAddrPort("198.18.0.2:51821")
	innerA  = netip.MustParseAddr("198.19.0.1")
	innerB  = netip.MustParseAddr("198.19.0.2")
	inner6A = netip.MustParseAddr("fd00:7761:1::1")
	inner6B = netip.MustParseAddr("fd00:7761:1::2")
)

type pairOptions struct {
	psk         crypto.PresharedKey
	keepalive   time.Duration
	noEndpointB bool // a does not know b's endpoint: b must initiate
}

func newNode(t testing.TB, clock *fakeClock, net *stepNet, seed byte, addr netip.AddrPort) *node {
	t.Helper()
	r := seededRand(seed)
	key, err := crypto.NewPrivateKey(r)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{
		ad:   &stepAdapter{mtu: 1420},
		tr:   net.transport(addr),
		key:  key,
		pub:  key.PublicKey(),
		addr: addr,
	}
	n.e = newEngine(n.ad, n.tr, Options{Clock: clock, Rand: r, TickInterval: -1})
	n.out = newOutbound(16)
	n.in = newInbound(16)
	n.addPipelines()
	t.Cleanup(func() { n.e.Close() })
	return n
}

func newPair(t testing.TB, opts pairOptions) *pair {
	t.Helper()
	p := &pair{t: t, clock: newFakeClock(), net: newStepNet()}
	p.a = newNode(t, p.clock, p.net, 1, outerA)
	p.b = newNode(t, p.clock, p.net, 2, outerB)
	cfgA := Config{PrivateKey: p.a.key, ListenPort: outerA.Port(), Peers: []PeerConfig{{
		PublicKey:           p.b.pub,
		PresharedKey:        opts.psk,
		Endpoint:            outerB,
		AllowedIPs:          []netip.Prefix{netip.PrefixFrom(innerB, 32), netip.PrefixFrom(inner6B, 128)},
		PersistentKeepalive: opts.keepalive,
	}}}
	if opts.noEndpointB {
		cfgA.Peers[0].Endpoint = netip.AddrPort{}
	}
	cfgB := Config{PrivateKey: p.b.key, ListenPort: outerB.Port(), Peers: []PeerConfig{{
		PublicKey:    p.a.pub,
		PresharedKey: opts.psk,
		Endpoint:     outerA,
		AllowedIPs:   []netip.Prefix{netip.PrefixFrom(innerA, 32), netip.PrefixFrom(inner6A, 128)},
	}}}
	for _, c := range []struct {
		n   *node
		cfg Config
	}{{p.a, cfgA}, {p.b, cfgB}} {
		if err := c.n.e.SetConfig(c.cfg); err != nil {
			t.Fatalf("SetConfig: %v", err)
		}
		if err := c.n.e.Up(); err != nil {
			t.Fatalf("Up: %v", err)
		}
	}
	return p
}

// run moves packets until nothing moves any more.
func (p *pair) run() {
	p.t.Helper()
	for range 10000 {
		a, b := p.a.step(), p.b.step()
		if !a && !b {
			return
		}
	}
	p.t.Fatal("network did not settle")
}

// tick advances the clock by d, runs both engines' timers, then the network.
func (p *pair) tick(d time.Duration) {
	p.clock.advance(d)
	p.a.e.Tick()
	p.b.e.Tick()
	p.run()
}

// peerOf returns n's only peer.
func (n *node) peer() *peer {
	ps := n.e.peerList()
	if len(ps) != 1 {
		panic("node has not exactly one peer")
	}
	return ps[0]
}

// ping builds an IPv4 or IPv6 UDP packet from src to dst with payload.
func ping(src, dst netip.Addr, payload string) []byte {
	return tuntest.UDPPacket(netip.AddrPortFrom(src, 1000), netip.AddrPortFrom(dst, 2000), []byte(payload))
}

// payloadOf returns the UDP payload of a packet built by ping.
func payloadOf(pkt []byte) string {
	if len(pkt) == 0 {
		return ""
	}
	if pkt[0]>>4 == 4 {
		return string(pkt[28:])
	}
	return string(pkt[48:])
}

func payloads(pkts [][]byte) string {
	var s []string
	for _, p := range pkts {
		s = append(s, payloadOf(p))
	}
	return strings.Join(s, ",")
}

var errNoPacket = errors.New("no packet")

// established returns a pair with a confirmed session both ways and no
// packets left anywhere.
func established(t testing.TB, opts pairOptions) *pair {
	t.Helper()
	p := newPair(t, opts)
	p.a.ad.inject(ping(innerA, innerB, "hello"))
	p.run()
	p.b.ad.inject(ping(innerB, innerA, "hello"))
	p.run()
	if got := len(p.a.ad.written()) + len(p.b.ad.written()); got != 2 {
		t.Fatalf("setup delivered %d packets, want 2 (drops %v / %v)", got, p.a.e.DropCounts(), p.b.e.DropCounts())
	}
	return p
}

// sentLog returns the datagrams delivered since the last call and starts
// recording if it was off.
func (n *stepNet) takeLog() []datagram {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := n.log
	n.log = nil
	n.record = true
	return l
}

// countFrom counts datagrams in log from src of message type typ (0: any).
func countFrom(log []datagram, src netip.AddrPort, typ crypto.MessageType) int {
	c := 0
	for _, d := range log {
		if d.src == src && (typ == 0 || crypto.MessageType(d.data[0]) == typ) {
			c++
		}
	}
	return c
}

// sealed returns a data message from n's peer session carrying payload,
// sealed with n's current keypair, as it would leave n.
func (n *node) sealed(t testing.TB, payload []byte) []byte {
	t.Helper()
	p := n.peer()
	p.mu.Lock()
	kp := p.keys.current
	p.mu.Unlock()
	if kp == nil {
		t.Fatal("no current keypair")
	}
	buf := make([]byte, bufferSize)
	copy(buf[Offset:], payload)
	m, err := kp.Seal(buf, len(payload), 0)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:m]
}

// keypairs returns n's peer's current, previous and next keypairs.
func (n *node) keypairs() (cur, prev, next *keypair) { return n.peer().keysSnapshot() }

// keysSnapshot returns p's current, previous and next keypairs.
func (p *peer) keysSnapshot() (cur, prev, next *keypair) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keys.current, p.keys.previous, p.keys.next
}
