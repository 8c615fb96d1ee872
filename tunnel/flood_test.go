package tunnel

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/warrenvpn/warren/crypto"
)

// flooder makes valid-mac1 initiations to one responder from static keys
// it does not know, as anyone who knows the responder's public key can.
type flooder struct {
	templates [][]byte
	to        crypto.PublicKey
	next      uint32
}

func newFlooder(t testing.TB, to crypto.PublicKey) *flooder {
	t.Helper()
	f := &flooder{to: to}
	r := seededRand(99)
	for range 8 {
		k, err := crypto.NewPrivateKey(r)
		if err != nil {
			t.Fatal(err)
		}
		h := crypto.NewHandshake(crypto.NewIdentity(k), to, crypto.PresharedKey{})
		msg := make([]byte, crypto.InitiationSize)
		if err := h.CreateInitiation(msg, time.Now(), r, 1); err != nil {
			t.Fatal(err)
		}
		f.templates = append(f.templates, msg)
	}
	return f
}

// initiation returns the next initiation: a fresh sender index, a valid
// mac1 and no mac2.
func (f *flooder) initiation() []byte {
	f.next++
	msg := append([]byte(nil), f.templates[int(f.next)%len(f.templates)]...)
	binary.LittleEndian.PutUint32(msg[4:], f.next)
	remac1(msg, f.to)
	return msg
}

// floodFrom sends n initiations to dst from src(i).
func (f *flooder) floodFrom(net *stepNet, dst netip.AddrPort, n int, src func(i int) netip.AddrPort) {
	for i := range n {
		net.inject(src(i), dst, f.initiation())
	}
}

// attackerPort is one source address with many ports: a flood from one
// machine.
func attackerPort(i int) netip.AddrPort {
	return netip.AddrPortFrom(attacker, uint16(1024+i%256))
}

var attacker = netip.MustParseAddr("198.18.9.9")

// spoofed is a source address per message: a flood from many machines, or
// with forged sources.
func spoofed(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 128 | byte(i>>8)&127, byte(i)}), uint16(i))
}

// garbageMessages is the audit's garbage mix: a third random, a third
// starting as an initiation (half of those 148 bytes), a third data with a
// random receiver index.
func garbageMessages(n int) [][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	out := make([][]byte, n)
	for i := range out {
		size := 1 + r.IntN(1500)
		switch i % 3 {
		case 1:
			if i%2 == 0 {
				size = crypto.InitiationSize
			}
			size = max(size, 4)
		case 2:
			size = max(size, 32)
		}
		b := make([]byte, size)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		switch i % 3 {
		case 1:
			copy(b, []byte{1, 0, 0, 0})
		case 2:
			copy(b, []byte{4, 0, 0, 0})
		}
		out[i] = b
	}
	return out
}

// receiveAll runs n's receive path over everything waiting for it without
// running the handshake worker, as when the worker falls behind.
func (n *node) receiveAll(net *stepNet) {
	for net.pending(n.addr) > 0 {
		k, _ := n.tr.Receive(n.in.bufs, n.in.sizes, n.in.eps, n.in.locals)
		n.e.processInbound(n.in, k)
	}
}

// TestD5CookieUnderFlood covers D4, D5 and D6 at the engine with an X25519
// counter: under a flood of valid-mac1 initiations from many ports the
// handshake load is measured, the flood gets cookies and not one X25519
// operation, and a real peer that has no session completes its handshake
// on its first retry after the cookie, within 10 s, although the flood
// keeps the queue of messages without mac2 full.
func TestD5CookieUnderFlood(t *testing.T) {
	p := newPair(t, pairOptions{})
	f := newFlooder(t, p.b.pub)

	// The load is measured: up to underLoadPerSecond valid-mac1 messages
	// in a second are answered, one more turns cookies on (D6).
	f.floodFrom(p.net, outerB, underLoadPerSecond, spoofed)
	p.b.receiveAll(p.net)
	if p.b.e.load.isUnderLoad(p.clock.Now()) {
		t.Fatalf("under load after %d messages in a second", underLoadPerSecond)
	}
	p.b.e.drainHandshakes()
	f.floodFrom(p.net, outerB, 1, attackerPort)
	p.b.receiveAll(p.net)
	if !p.b.e.load.isUnderLoad(p.clock.Now()) {
		t.Fatalf("not under load after %d messages in a second", underLoadPerSecond+1)
	}
	p.b.e.drainHandshakes()

	// a has data for b and sends its initiation into the flood.
	p.net.takeLog()
	p.a.ad.inject(ping(innerA, innerB, "x"))
	p.a.step()
	start := p.clock.Now()
	f.floodFrom(p.net, outerB, 3000, spoofed)
	f.floodFrom(p.net, outerB, 3000, attackerPort)
	dh := crypto.X25519Operations()
	p.b.receiveAll(p.net)
	if got := len(p.b.e.handshakes); got > handshakeQueueSize {
		t.Fatalf("queue holds %d, more than %d", got, handshakeQueueSize)
	}
	if p.b.e.Drops(DropHandshakeQueueFull) == 0 {
		t.Fatal("the flood did not fill the queue; the test proves nothing")
	}
	p.b.e.drainHandshakes()
	if got := crypto.X25519Operations() - dh; got != 0 {
		t.Errorf("%d X25519 operations for initiations without mac2 under load, want 0", got)
	}
	if got := countFrom(p.net.takeLog(), outerB, crypto.MessageCookieReply); got == 0 {
		t.Fatal("no cookie reply from b")
	}
	// The attacker's one address gets its burst of cookies, no more (D1).
	if got := p.b.e.Drops(DropCookieRateLimited); got < 3000-rateLimitBurst {
		t.Errorf("cookie-limited drops %d, want at least %d", got, 3000-rateLimitBurst)
	}
	p.a.step() // a takes its cookie; nothing is resent now (P8)
	if log := p.net.takeLog(); len(log) != 0 {
		t.Fatalf("a sent %s on the cookie, want nothing", describe(log))
	}

	// The flood goes on at 15,000/s from spoofed sources, more than the
	// queue takes, and b's worker falls behind every 100 ms. a's retry
	// carries mac2 and gets through on its own queue.
	dh = crypto.X25519Operations()
	for p.clock.Now()-start < 10*time.Second && len(p.b.ad.written()) == 0 {
		p.clock.advance(100 * time.Millisecond)
		p.a.e.Tick()
		p.b.e.Tick()
		f.floodFrom(p.net, outerB, 1500, spoofed)
		p.a.step() // a's retry, if due, joins the flood
		f.floodFrom(p.net, outerB, 1500, spoofed)
		p.b.receiveAll(p.net)
		p.b.e.drainHandshakes()
		p.run()
		if got := p.b.e.Drops(DropRateLimited); got != 0 {
			t.Fatalf("%d valid-mac2 messages rate-limited, want 0", got)
		}
	}
	took := p.clock.Now() - start
	if got := p.b.peer().stats().RxBytes; got == 0 {
		t.Fatalf("a's handshake did not complete within %v of its first initiation (drops %v)", took, p.b.e.DropCounts())
	}
	if took > RekeyTimeout+RekeyTimeoutJitter+100*time.Millisecond {
		t.Errorf("a's handshake took %v, want its first retry (%v + jitter)", took, RekeyTimeout)
	}
	// 9: a's retry (2), b's answer (5: its static-static secret with a is
	// computed at a's first handshake), a's completion (2); none for the
	// 150,000 or so initiations of the flood.
	if got := crypto.X25519Operations() - dh; got > 9 {
		t.Errorf("%d X25519 operations during the flood, want at most the 9 of a's handshake", got)
	}
	if got := p.b.e.Drops(DropCookieReply); got == 0 {
		t.Error("no cookie replies counted")
	}
	t.Logf("handshake after %v; drops %v", took, p.b.e.DropCounts())
}

// TestD1ValidMAC2RateLimited covers D1 at the engine: under load, a source
// that holds a valid cookie (so owns its address) gets a burst of 5
// initiations through, and the rest are rate-limited and counted without
// any X25519; another source is unaffected (D1, D2).
func TestD1ValidMAC2RateLimited(t *testing.T) {
	p := newPair(t, pairOptions{})
	p.b.e.load.until.Store(int64(p.clock.Now() + time.Hour))
	src := netip.MustParseAddrPort("198.18.9.9:4000")

	// The attacker gets a cookie for its address as any initiator would.
	r := seededRand(7)
	k, _ := crypto.NewPrivateKey(r)
	h := crypto.NewHandshake(crypto.NewIdentity(k), p.b.pub, crypto.PresharedKey{})
	msg := make([]byte, crypto.InitiationSize)
	if err := h.CreateInitiation(msg, p.clock.Wall(), r, 1); err != nil {
		t.Fatal(err)
	}
	var reply [crypto.CookieReplySize]byte
	id := p.b.e.identity()
	if err := id.CreateCookieReply(reply[:], msg, src, cryptoTime(p.clock.Now()), r); err != nil {
		t.Fatal(err)
	}
	if err := h.ConsumeCookieReply(reply[:], p.clock.Wall()); err != nil {
		t.Fatal(err)
	}
	const n = 30
	for i := range n {
		if err := h.CreateInitiation(msg, p.clock.Wall(), r, uint32(i+2)); err != nil {
			t.Fatal(err)
		}
		if !id.CheckMAC2(msg, src, cryptoTime(p.clock.Now())) {
			t.Fatal("the attacker's mac2 is not valid; the test proves nothing")
		}
		p.net.inject(src, outerB, msg)
	}
	dh := crypto.X25519Operations()
	p.b.receiveAll(p.net)
	if got, want := p.b.e.Drops(DropRateLimited), uint64(n-rateLimitBurst); got != want {
		t.Errorf("rate-limited drops %d, want %d", got, want)
	}
	if got := len(p.b.e.handshakesMAC2); got != rateLimitBurst {
		t.Errorf("%d messages on the mac2 queue, want %d", got, rateLimitBurst)
	}
	if got := crypto.X25519Operations() - dh; got != 0 {
		t.Errorf("%d X25519 operations before the worker ran, want 0", got)
	}
	p.b.e.drainHandshakes()

	// a, from another address, still gets its cookie and then through.
	p.a.ad.inject(ping(innerA, innerB, "x"))
	p.run()
	p.tick(RekeyTimeout + RekeyTimeoutJitter)
	if got := payloads(p.b.ad.written()); got != "x" {
		t.Errorf("b got %q, want x (drops %v)", got, p.b.e.DropCounts())
	}
}
