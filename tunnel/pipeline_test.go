package tunnel

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/device/tun/tuntest"
	"github.com/warrenvpn/warren/uapi"
)

// The pipelines under the race detector (issue 10): two engines with k
// pipelines each, running their real goroutines on in-memory queues and
// sockets, move many flows both ways at once over the shared peer state.
//
//	go test -race ./tunnel -run Pipelines

// groupNet is an in-memory network of SO_REUSEPORT groups: several
// transports share one address, and a datagram goes to the member with the
// sending transport's index (modulo the group's size), so that what one
// pipeline sends in order arrives in order on one pipeline, as one outer
// flow does through the kernel's hash.
type groupNet struct {
	mu     sync.Mutex // guards groups, hook
	groups map[netip.AddrPort][]*groupTransport
	hook   func(from *groupTransport, dst netip.AddrPort, data []byte)
}

func newGroupNet() *groupNet {
	return &groupNet{groups: make(map[netip.AddrPort][]*groupTransport)}
}

// listen adds n transports at addr.
func (g *groupNet) listen(addr netip.AddrPort, n int) []*groupTransport {
	g.mu.Lock()
	defer g.mu.Unlock()
	var trs []*groupTransport
	for i := range n {
		t := &groupTransport{net: g, addr: addr, index: i, in: make(chan datagram, 1<<14), closed: make(chan struct{})}
		trs = append(trs, t)
	}
	g.groups[addr] = trs
	return trs
}

type groupTransport struct {
	net    *groupNet
	addr   netip.AddrPort
	index  int
	in     chan datagram
	closed chan struct{}
	once   sync.Once
}

func (t *groupTransport) Receive(bufs [][]byte, sizes []int, eps []netip.AddrPort, locals []netip.Addr) (int, error) {
	var d datagram
	select {
	case <-t.closed:
		return 0, net.ErrClosed
	case d = <-t.in:
	}
	n := 0
	for {
		sizes[n] = copy(bufs[n], d.data)
		eps[n] = d.src
		locals[n] = netip.Addr{}
		n++
		if n == len(bufs) {
			return n, nil
		}
		select {
		case d = <-t.in:
		default:
			return n, nil
		}
	}
}

func (t *groupTransport) Send(bufs [][]byte, ep netip.AddrPort, local netip.Addr) (int, error) {
	select {
	case <-t.closed:
		return 0, net.ErrClosed
	default:
	}
	t.net.mu.Lock()
	group := t.net.groups[ep]
	hook := t.net.hook
	t.net.mu.Unlock()
	for _, b := range bufs {
		if hook != nil {
			hook(t, ep, b)
		}
		if len(group) == 0 {
			continue
		}
		dst := group[t.index%len(group)]
		select {
		case dst.in <- datagram{t.addr, ep, append([]byte(nil), b...)}:
		case <-dst.closed:
		}
	}
	return len(bufs), nil
}

func (t *groupTransport) BatchSize() int { return 16 }
func (t *groupTransport) Port() uint16   { return t.addr.Port() }
func (t *groupTransport) Close() error {
	t.once.Do(func() { close(t.closed) })
	return nil
}

func (t *groupTransport) isClosed() bool {
	select {
	case <-t.closed:
		return true
	default:
		return false
	}
}

// queueAdapter is one queue of an in-memory multi-queue adapter: Read
// blocks for injected packets, Write appends to the sink all queues share.
type queueAdapter struct {
	in     chan []byte
	sink   *packetSink
	closed chan struct{}
	once   sync.Once
}

type packetSink struct {
	mu   sync.Mutex // guards pkts
	pkts [][]byte
}

func (s *packetSink) take() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pkts
	s.pkts = nil
	return p
}

func (s *packetSink) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pkts)
}

func (a *queueAdapter) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	var p []byte
	select {
	case <-a.closed:
		return 0, net.ErrClosed
	case p = <-a.in:
	}
	n := 0
	for {
		sizes[n] = copy(bufs[n][offset:], p)
		n++
		if n == len(bufs) {
			return n, nil
		}
		select {
		case p = <-a.in:
		default:
			return n, nil
		}
	}
}

func (a *queueAdapter) Write(bufs [][]byte, offset int) (int, error) {
	a.sink.mu.Lock()
	defer a.sink.mu.Unlock()
	for _, b := range bufs {
		a.sink.pkts = append(a.sink.pkts, append([]byte(nil), b[offset:]...))
	}
	return len(bufs), nil
}

func (a *queueAdapter) BatchSize() int { return 16 }
func (a *queueAdapter) MTU() int       { return 1420 }
func (a *queueAdapter) Name() string   { return "mq0" }
func (a *queueAdapter) Close() error {
	a.once.Do(func() { close(a.closed) })
	return nil
}

// mqNode is one engine with k pipelines.
type mqNode struct {
	e      *Engine
	queues []*queueAdapter
	sink   *packetSink
	addr   netip.AddrPort
	key    crypto.PrivateKey
}

func newMQNode(t *testing.T, g *groupNet, k int, seed byte, addr netip.AddrPort) *mqNode {
	t.Helper()
	r := seededRand(seed)
	key, err := crypto.NewPrivateKey(r)
	if err != nil {
		t.Fatal(err)
	}
	n := &mqNode{sink: &packetSink{}, addr: addr, key: key}
	trs := g.listen(addr, k)
	var extra []Pipeline
	for i := range k {
		q := &queueAdapter{in: make(chan []byte, 1<<14), sink: n.sink, closed: make(chan struct{})}
		n.queues = append(n.queues, q)
		if i > 0 {
			extra = append(extra, Pipeline{Adapter: q, Transport: trs[i]})
		}
	}
	n.e = New(n.queues[0], trs[0], Options{
		Rand:      r,
		Pipelines: extra,
		Rebind: func(port uint16, mark uint32) (Transport, error) {
			return nil, errors.New("use RebindPipelines")
		},
		RebindPipelines: func(port uint16, mark uint32, n int) ([]Transport, error) {
			var out []Transport
			for _, tr := range g.listen(netip.AddrPortFrom(addr.Addr(), port), n) {
				out = append(out, tr)
			}
			return out, nil
		},
	})
	t.Cleanup(func() { n.e.Close() })
	return n
}

// connect configures a and b as each other's peer and brings them up.
func connect(t *testing.T, a, b *mqNode, innerA, innerB netip.Addr) {
	t.Helper()
	for _, c := range []struct {
		n, peer *mqNode
		allowed netip.Addr
	}{{a, b, innerB}, {b, a, innerA}} {
		cfg := Config{PrivateKey: c.n.key, ListenPort: c.n.addr.Port(), Peers: []PeerConfig{{
			PublicKey:  c.peer.key.PublicKey(),
			Endpoint:   c.peer.addr,
			AllowedIPs: []netip.Prefix{netip.PrefixFrom(c.allowed, 32)},
		}}}
		if err := c.n.e.SetConfig(cfg); err != nil {
			t.Fatal(err)
		}
		if err := c.n.e.Up(); err != nil {
			t.Fatal(err)
		}
	}
}

// waitUntil polls cond for up to 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// flowPacket is packet seq of flow f from src to dst: the flow is the
// source port, the sequence number the payload.
func flowPacket(src, dst netip.Addr, f, seq int) []byte {
	var payload [8]byte
	binary.BigEndian.PutUint64(payload[:], uint64(seq))
	return tuntest.UDPPacket(netip.AddrPortFrom(src, uint16(20000+f)), netip.AddrPortFrom(dst, 2000), payload[:])
}

// checkFlows checks that pkts hold every sequence number of every flow
// once, each flow in order.
func checkFlows(t *testing.T, dir string, pkts [][]byte, flows, each int) {
	t.Helper()
	next := make([]int, flows)
	for _, p := range pkts {
		f := int(binary.BigEndian.Uint16(p[20:22])) - 20000
		seq := int(binary.BigEndian.Uint64(p[28:36]))
		if f < 0 || f >= flows {
			t.Fatalf("%s: packet of unknown flow %d", dir, f)
		}
		if seq != next[f] {
			t.Fatalf("%s: flow %d: packet %d after %d: reordered, lost or repeated", dir, f, seq, next[f]-1)
		}
		next[f]++
	}
	for f, n := range next {
		if n != each {
			t.Errorf("%s: flow %d delivered %d of %d", dir, f, n, each)
		}
	}
}

func TestPipelines(t *testing.T) {
	for _, k := range []int{2, 4} {
		t.Run(fmt.Sprint("pipelines=", k), func(t *testing.T) { testPipelines(t, k) })
	}
}

func testPipelines(t *testing.T, k int) {
	g := newGroupNet()
	a := newMQNode(t, g, k, 1, outerA)
	b := newMQNode(t, g, k, 2, outerB)
	connect(t, a, b, innerA, innerB)
	if a.e.Pipelines() != k {
		t.Fatalf("Pipelines() = %d, want %d", a.e.Pipelines(), k)
	}

	// A session first (staged packets are bounded), then many flows both
	// ways at once, flow f on queue f mod k of its sender.
	a.queues[0].in <- flowPacket(innerA, innerB, 0, 0)
	waitUntil(t, "the handshake", func() bool { return b.sink.len() == 1 })
	b.sink.take()
	const flows, each = 32, 100
	var wg sync.WaitGroup
	for _, d := range []struct {
		from     *mqNode
		src, dst netip.Addr
	}{{a, innerA, innerB}, {b, innerB, innerA}} {
		for q := range k {
			wg.Go(func() {
				for seq := range each {
					for f := q; f < flows; f += k {
						d.from.queues[q].in <- flowPacket(d.src, d.dst, f, seq)
					}
				}
			})
		}
	}
	wg.Wait()
	waitUntil(t, "every packet", func() bool { return a.sink.len() == flows*each && b.sink.len() == flows*each })
	checkFlows(t, "a to b", b.sink.take(), flows, each)
	checkFlows(t, "b to a", a.sink.take(), flows, each)
	if d := a.e.DropCounts(); len(d) != 0 {
		t.Errorf("a dropped %v", d)
	}
	if d := b.e.DropCounts(); len(d) != 0 {
		t.Errorf("b dropped %v", d)
	}

	// A replayed data message is dropped whichever pipeline receives it.
	var (
		mu      sync.Mutex
		capture []byte
	)
	g.mu.Lock()
	g.hook = func(from *groupTransport, dst netip.AddrPort, data []byte) {
		mu.Lock()
		if dst == outerB && crypto.MessageType(data[0]) == crypto.MessageData && len(data) > crypto.DataOverhead {
			capture = append([]byte(nil), data...)
		}
		mu.Unlock()
	}
	g.mu.Unlock()
	a.queues[0].in <- flowPacket(innerA, innerB, 0, 0)
	waitUntil(t, "the packet to replay", func() bool { return b.sink.len() == 1 })
	b.sink.take()
	mu.Lock()
	replay := capture
	mu.Unlock()
	g.mu.Lock()
	bq := g.groups[outerB]
	g.mu.Unlock()
	for i, tr := range bq {
		before := b.e.Drops(DropReplay)
		tr.in <- datagram{outerA, outerB, replay}
		waitUntil(t, fmt.Sprint("the replay on pipeline ", i), func() bool { return b.e.Drops(DropReplay) == before+1 })
	}
	if n := b.sink.len(); n != 0 {
		t.Errorf("%d replayed packets written", n)
	}

	// A new listen port moves every pipeline's socket; traffic goes on.
	old := bq
	port := uint16(40000 + k)
	if err := b.e.Apply(&uapi.Change{ListenPort: &port}); err != nil {
		t.Fatal(err)
	}
	for i, tr := range old {
		if !tr.isClosed() {
			t.Errorf("pipeline %d's old socket still open", i)
		}
	}
	g.mu.Lock()
	nq := g.groups[netip.AddrPortFrom(outerB.Addr(), port)]
	g.mu.Unlock()
	for i, tr := range nq {
		if got := b.e.transportOf(b.e.pipeOf(i)); got != Transport(tr) {
			t.Errorf("pipeline %d's transport is %v, want the new socket", i, got)
		}
	}
	for q := range k {
		b.queues[q].in <- flowPacket(innerB, innerA, q, 0)
	}
	waitUntil(t, "packets from the new port", func() bool { return a.sink.len() == k })
	a.sink.take()
	for q := range k {
		a.queues[q].in <- flowPacket(innerA, innerB, q, 0)
	}
	waitUntil(t, "packets to the new port", func() bool { return b.sink.len() == k })

	// A lost queue stops the whole engine.
	a.queues[k-1].Close()
	select {
	case <-a.e.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the engine runs on without one of its queues")
	}
	if err := a.e.Err(); !errors.Is(err, errQueueLost) {
		t.Errorf("Err() = %v, want a lost queue", err)
	}
	if err := a.e.Close(); !errors.Is(err, errQueueLost) {
		t.Errorf("Close() = %v, want a lost queue", err)
	}
}

// harnessPipelines runs the step-driven protocol tests (harness_test.go)
// with several pipelines: each node's engine gets that many, sharing its
// adapter and transport, and each step moves its batches through the next
// pipeline in turn. Tests that replace pipeline 0's transport or adapter
// (e.tr.Store, e.adapter =) see only a share of the batches through it.
//
//	go test ./tunnel -pipelines 4
var harnessPipelines = flag.Int("pipelines", 1, "pipelines of each engine in the step-driven tests")

// pipeTurns is a node's scratch per pipeline and whose turn it is.
type pipeTurns struct {
	outs []*outbound
	ins  []*inbound
	turn int
}

// addPipelines gives n's engine the pipelines -pipelines asks for.
func (n *node) addPipelines() {
	n.pipe = pipeTurns{outs: []*outbound{n.out}, ins: []*inbound{n.in}}
	for i := 1; i < *harnessPipelines; i++ {
		p := &pipeline{index: i, adapter: n.ad}
		p.tr.Store(newTransportBox(n.tr)) // one socket, as Transport allows
		n.e.extra = append(n.e.extra, p)
		o, in := newOutbound(len(n.out.bufs)), newInbound(len(n.in.bufs))
		o.pipe, in.pipe = p, p
		n.pipe.outs = append(n.pipe.outs, o)
		n.pipe.ins = append(n.pipe.ins, in)
	}
	n.e.maxLag = gateLag(n.e.maxBatch())
}

// nextPipeline makes the next pipeline's scratch n's.
func (n *node) nextPipeline() {
	if len(n.pipe.outs) < 2 {
		return
	}
	n.pipe.turn = (n.pipe.turn + 1) % len(n.pipe.outs)
	n.out, n.in = n.pipe.outs[n.pipe.turn], n.pipe.ins[n.pipe.turn]
}
