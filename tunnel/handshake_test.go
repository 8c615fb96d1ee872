package tunnel

import (
	"io"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/device/tun/tuntest"
	"github.com/warrenvpn/warren/internal/leakcheck"
)

// gateRand passes reads through to r, except that once armed the next read
// reports itself on entered and waits for release: a handshake stalled in
// its crypto for as long as the test likes.
type gateRand struct {
	r       io.Reader
	mu      sync.Mutex // guards armed
	armed   bool
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func newGateRand(r io.Reader) *gateRand {
	return &gateRand{r: r, entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gateRand) arm() {
	g.mu.Lock()
	g.armed = true
	g.mu.Unlock()
}

func (g *gateRand) open() { g.once.Do(func() { close(g.release) }) }

func (g *gateRand) Read(b []byte) (int, error) {
	g.mu.Lock()
	armed := g.armed
	g.armed = false
	g.mu.Unlock()
	if armed {
		close(g.entered)
		<-g.release
	}
	return g.r.Read(b)
}

// waitFor fails t unless c is ready within a generous bound; the bound only
// turns a hang into a failure, the test does not depend on timing.
func waitFor(t testing.TB, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// TestHandshakeDoesNotStallSending checks that outbound traffic keeps
// flowing while a peer's handshake is stuck in its crypto: a answers an
// initiation from b and stalls while creating the response (its randomness
// source blocks); meanwhile a batch with a packet for b first and one for c
// is read, and both leave at once on their sessions. Before the handshake
// moved off peer.mu the send loop waited for b's lock and sent nothing.
func TestHandshakeDoesNotStallSending(t *testing.T) {
	leakcheck.Check(t)
	p := established(t, pairOptions{})
	outerC := netip.MustParseAddrPort("198.18.0.3:51822")
	innerC := netip.MustParseAddr("198.19.0.3")
	c := newNode(t, p.clock, p.net, 3, outerC)
	if err := c.e.SetConfig(Config{PrivateKey: c.key, Peers: []PeerConfig{{PublicKey: p.a.pub, Endpoint: outerA,
		AllowedIPs: []netip.Prefix{netip.PrefixFrom(innerA, 32)}}}}); err != nil {
		t.Fatal(err)
	}
	if err := c.e.Up(); err != nil {
		t.Fatal(err)
	}
	if err := p.a.e.AddPeer(PeerConfig{PublicKey: c.pub, Endpoint: outerC,
		AllowedIPs: []netip.Prefix{netip.PrefixFrom(innerC, 32)}}); err != nil {
		t.Fatal(err)
	}
	p.a.ad.inject(ping(innerA, innerC, "setup"))
	for moved := true; moved; {
		moved = p.a.step()
		moved = c.step() || moved
	}
	if got := payloads(c.ad.written()); got != "setup" {
		t.Fatalf("a to c delivered %q, want setup", got)
	}

	// b starts a handshake with a; a gets the initiation by hand.
	p.b.peer().sendInitiation(false)
	in := newInbound(16)
	n, _ := p.a.tr.Receive(in.bufs, in.sizes, in.eps)
	if n != 1 || crypto.MessageType(in.bufs[0][0]) != crypto.MessageInitiation {
		t.Fatalf("a received %d datagrams, want b's initiation", n)
	}
	initiation := in.bufs[0][:in.sizes[0]]

	sentTo := map[netip.AddrPort]chan struct{}{outerB: make(chan struct{}, 16), outerC: make(chan struct{}, 16)}
	responded := make(chan struct{}, 1)
	p.net.setHook(func(d *datagram) bool {
		switch {
		case d.src != outerA:
		case crypto.MessageType(d.data[0]) == crypto.MessageResponse:
			responded <- struct{}{}
		case crypto.MessageType(d.data[0]) == crypto.MessageData:
			sentTo[d.dst] <- struct{}{}
		}
		return true
	})

	// a runs its send loop and handshake worker for real from here on.
	gate := newGateRand(p.a.e.rand.r)
	p.a.e.rand.r = gate
	t.Cleanup(gate.open) // runs before the engines close
	mem := tuntest.NewMemory(tuntest.MemoryOptions{})
	p.a.e.adapter = mem
	p.a.e.wg.Go(p.a.e.readLoop)
	p.a.e.wg.Go(p.a.e.handshakeWorker)

	gate.arm()
	p.a.e.queueHandshake(initiation, outerB)
	waitFor(t, gate.entered, "a's handshake with b to reach its crypto")
	if err := mem.Inject(ping(innerA, innerB, "to b"), ping(innerA, innerC, "to c")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, sentTo[outerC], "a's packet to c while b's handshake is stalled")
	waitFor(t, sentTo[outerB], "a's packet to b while b's handshake is stalled")

	gate.open()
	waitFor(t, responded, "a's response to b once its crypto goes on")
}
