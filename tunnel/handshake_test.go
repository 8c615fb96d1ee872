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
// flowing while a peer's handshake is stuck in its crypto (a's randomness
// source blocks): a answers an initiation from b, or a initiates to b
// because a packet for b found no session. Meanwhile a batch with a packet
// for b first and one for c is read, and c's packet (and b's, on its
// session) leaves at once. Before handshakes moved off peer.mu and out of
// the send loop, the loop waited for b's lock or ran b's initiation itself,
// and sent nothing.
func TestHandshakeDoesNotStallSending(t *testing.T) {
	tests := []struct {
		name     string
		initiate bool               // a initiates (b's session wiped) instead of answering b
		wantB    bool               // a's packet to b leaves during the stall (on the session)
		wantMsg  crypto.MessageType // what a sends b once the crypto goes on
	}{
		{"answering", false, true, crypto.MessageResponse},
		{"initiating", true, false, crypto.MessageInitiation},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			leakcheck.Check(t)
			testHandshakeStall(t, tc.initiate, tc.wantB, tc.wantMsg)
		})
	}
}

func testHandshakeStall(t *testing.T, initiate, wantB bool, wantMsg crypto.MessageType) {
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

	var initiation []byte
	if initiate {
		// a forgets its session with b, and may initiate again.
		pb := p.a.e.peerByKey(p.b.pub)
		pb.handshake.Lock()
		pb.mu.Lock()
		pb.wipeLocked()
		pb.mu.Unlock()
		pb.handshake.Unlock()
		p.clock.advance(RekeyTimeout)
	} else {
		// b starts a handshake with a; a gets the initiation by hand.
		p.b.peer().sendInitiation(false)
		in := newInbound(16)
		n, _ := p.a.tr.Receive(in.bufs, in.sizes, in.eps, in.locals)
		if n != 1 || crypto.MessageType(in.bufs[0][0]) != crypto.MessageInitiation {
			t.Fatalf("a received %d datagrams, want b's initiation", n)
		}
		initiation = in.bufs[0][:in.sizes[0]]
	}

	sentTo := map[netip.AddrPort]chan struct{}{outerB: make(chan struct{}, 16), outerC: make(chan struct{}, 16)}
	handshake := make(chan struct{}, 1)
	p.net.setHook(func(d *datagram) bool {
		switch {
		case d.src != outerA:
		case crypto.MessageType(d.data[0]) == wantMsg:
			handshake <- struct{}{}
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
	if !initiate {
		p.a.e.admitHandshake(initiation, outerB, outerA.Addr(), p.clock.Now())
		waitFor(t, gate.entered, "a's handshake with b to reach its crypto")
	}
	if err := mem.Inject(ping(innerA, innerB, "to b"), ping(innerA, innerC, "to c")); err != nil {
		t.Fatal(err)
	}
	if initiate {
		waitFor(t, gate.entered, "a's initiation to b to reach its crypto")
	}
	waitFor(t, sentTo[outerC], "a's packet to c while b's handshake is stalled")
	if wantB {
		waitFor(t, sentTo[outerB], "a's packet to b while b's handshake is stalled")
	}

	gate.open()
	waitFor(t, handshake, "a's handshake message to b once its crypto goes on")
}
