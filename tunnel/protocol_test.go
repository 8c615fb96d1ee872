package tunnel

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/crypto/blake2s"

	"github.com/warrenvpn/warren/crypto"
)

// TestKeyConfirmation covers P9: the responder sends nothing under the new
// keys until the initiator's first packet arrives; the initiator without
// data sends a keepalive right after the response.
func TestKeyConfirmation(t *testing.T) {
	t.Run("responder waits", func(t *testing.T) {
		p := newPair(t, pairOptions{})
		p.net.takeLog()
		p.a.ad.inject(ping(innerA, innerB, "a1"))
		p.a.step() // initiation to b
		p.b.step() // b answers: its session is "next"
		p.b.ad.inject(ping(innerB, innerA, "b1"))
		p.b.step() // b's data must wait
		log := p.net.takeLog()
		if n := countFrom(log, outerB, crypto.MessageData); n != 0 {
			t.Fatalf("responder sent %d data messages before confirmation", n)
		}
		if n := countFrom(log, outerB, crypto.MessageInitiation); n != 0 {
			t.Fatalf("responder sent %d initiations while awaiting confirmation", n)
		}
		p.run()
		log = p.net.takeLog()
		if got := payloads(p.b.ad.written()); got != "a1" {
			t.Fatalf("b got %q, want a1", got)
		}
		if got := payloads(p.a.ad.written()); got != "b1" {
			t.Fatalf("a got %q, want b1 after confirmation", got)
		}
		// a's data came first, b's after it.
		if len(log) < 2 || log[0].src != outerA || crypto.MessageType(log[0].data[0]) != crypto.MessageData {
			t.Fatalf("first message after the response is not a's data: %v", describe(log))
		}
	})
	t.Run("initiator keepalive", func(t *testing.T) {
		p := newPair(t, pairOptions{})
		p.net.takeLog()
		p.a.peer().sendInitiation(false)
		p.run()
		log := p.net.takeLog()
		if got, want := describe(log), "a:initiation b:response a:data/32"; got != want {
			t.Fatalf("messages %q, want %q", got, want)
		}
		if cur, _, next := p.b.keypairs(); cur == nil || next != nil {
			t.Fatalf("responder session not confirmed: current %v next %v", cur, next)
		}
	})
}

// describe renders datagrams as "a:initiation b:response a:data/32".
func describe(log []datagram) string {
	s := ""
	for i, d := range log {
		if i > 0 {
			s += " "
		}
		who := "?"
		switch d.src {
		case outerA:
			who = "a"
		case outerB:
			who = "b"
		}
		name := crypto.MessageType(d.data[0]).String()
		if crypto.MessageType(d.data[0]) == crypto.MessageData {
			name = fmt.Sprintf("data/%d", len(d.data))
		}
		s += who + ":" + name
	}
	return s
}

// TestCookieReply covers P8: under load the responder answers with a
// cookie; the initiator does not resend at once, and its retry on the 5 s
// timer carries a valid mac2 and completes.
func TestCookieReply(t *testing.T) {
	p := newPair(t, pairOptions{})
	underLoad := func() { p.b.e.load.until.Store(int64(p.clock.Now() + time.Hour)) }
	underLoad()
	p.net.takeLog()
	p.a.ad.inject(ping(innerA, innerB, "x"))
	p.run()
	if got, want := describe(p.net.takeLog()), "a:initiation b:cookie reply"; got != want {
		t.Fatalf("messages %q, want %q", got, want)
	}
	p.tick(time.Second)
	if log := p.net.takeLog(); len(log) != 0 {
		t.Fatalf("sent %q within 1 s of the cookie, want nothing", describe(log))
	}
	p.tick(4*time.Second + RekeyTimeoutJitter)
	if got, want := describe(p.net.takeLog()), "a:initiation b:response a:data/64"; got != want {
		t.Fatalf("after the retry: %q, want %q (a %v b %v)", got, want, p.a.e.DropCounts(), p.b.e.DropCounts())
	}
	if got := payloads(p.b.ad.written()); got != "x" {
		t.Fatalf("b got %q, want x", got)
	}
}

// TestStaleHandshakeMessages covers P10 and R8: a response with an unknown
// index, a response consumed twice, a response after give-up and a
// replayed initiation change nothing.
func TestStaleHandshakeMessages(t *testing.T) {
	p := newPair(t, pairOptions{})
	p.net.takeLog()
	p.a.ad.inject(ping(innerA, innerB, "x"))
	p.run()
	log := p.net.takeLog()
	var init, resp datagram
	for _, d := range log {
		switch crypto.MessageType(d.data[0]) {
		case crypto.MessageInitiation:
			init = d
		case crypto.MessageResponse:
			resp = d
		}
	}
	curA, _, _ := p.a.keypairs()
	curB, _, _ := p.b.keypairs()

	// A response consumed twice.
	before := p.a.e.Drops(DropHandshakeInvalid)
	p.net.inject(resp.src, resp.dst, resp.data)
	p.run()
	if got := p.a.e.Drops(DropHandshakeInvalid) - before; got != 1 {
		t.Errorf("replayed response: %d drops, want 1", got)
	}
	// A response with an unknown receiver index.
	bad := append([]byte(nil), resp.data...)
	bad[8] ^= 0xff
	remac1(bad, p.a.pub)
	p.net.inject(resp.src, resp.dst, bad)
	p.run()
	if got := p.a.e.Drops(DropHandshakeInvalid) - before; got != 2 {
		t.Errorf("unknown index: %d drops, want 2", got)
	}
	// R8: a captured initiation replayed later.
	p.clock.advance(time.Second)
	beforeB := p.b.e.Drops(DropHandshakeInvalid)
	p.net.inject(init.src, init.dst, init.data)
	p.run()
	if got := p.b.e.Drops(DropHandshakeInvalid) - beforeB; got != 1 {
		t.Errorf("replayed initiation: %d drops, want 1", got)
	}
	if log := p.net.takeLog(); len(log) != 0 {
		t.Errorf("answered a stale message: %s", describe(log))
	}
	if a, _, _ := p.a.keypairs(); a != curA {
		t.Error("a's session changed")
	}
	if b, _, _ := p.b.keypairs(); b != curB {
		t.Error("b's session changed")
	}

	// A response after give-up: hold b's answers, let a give up, deliver.
	q := newPair(t, pairOptions{})
	var held []datagram
	q.net.setHook(func(d *datagram) bool {
		if d.src == outerB {
			held = append(held, *d)
			return false
		}
		return true
	})
	q.a.ad.inject(ping(innerA, innerB, "x"))
	q.run()
	for range 25 {
		q.tick(RekeyTimeout + RekeyTimeoutJitter)
	}
	q.net.setHook(nil)
	beforeA := q.a.e.Drops(DropHandshakeInvalid)
	for _, d := range held {
		q.net.inject(d.src, d.dst, d.data)
	}
	q.run()
	if got := q.a.e.Drops(DropHandshakeInvalid) - beforeA; got != uint64(len(held)) || len(held) == 0 {
		t.Errorf("responses after give-up: %d dropped of %d", got, len(held))
	}
	if cur, _, _ := q.a.keypairs(); cur != nil {
		t.Error("a response after give-up made a session")
	}
}

// remac1 recomputes the mac1 of the handshake message msg for the receiver
// with public key pub, as anyone who knows that key can.
func remac1(msg []byte, pub crypto.PublicKey) {
	key := blake2s.Sum256(append([]byte("mac1----"), pub[:]...))
	h, _ := blake2s.New128(key[:])
	off := len(msg) - 32
	h.Write(msg[:off])
	copy(msg[off:], h.Sum(nil))
}

// TestSimultaneousInitiation covers P17: both sides initiate at once; both
// end with a working session and traffic flows without a retry.
func TestSimultaneousInitiation(t *testing.T) {
	p := newPair(t, pairOptions{})
	p.a.peer().sendInitiation(false)
	p.b.peer().sendInitiation(false)
	p.run()
	for i := range 3 {
		p.a.ad.inject(ping(innerA, innerB, fmt.Sprint("a", i)))
		p.b.ad.inject(ping(innerB, innerA, fmt.Sprint("b", i)))
		p.run()
	}
	if got, want := payloads(p.b.ad.written()), "a0,a1,a2"; got != want {
		t.Errorf("b got %q, want %q", got, want)
	}
	if got, want := payloads(p.a.ad.written()), "b0,b1,b2"; got != want {
		t.Errorf("a got %q, want %q", got, want)
	}
	for _, n := range []*node{p.a, p.b} {
		if cur, _, _ := n.keypairs(); cur == nil {
			t.Errorf("%v: no current session", n.addr)
		}
	}
}

// TestReplayedData covers R4 and R3: a valid data packet replayed N times
// is delivered once and refreshes no timer; a forged packet far ahead does
// not move the window.
func TestReplayedData(t *testing.T) {
	p := established(t, pairOptions{})
	msg := p.a.sealed(t, ping(innerA, innerB, "once"))
	forged := append([]byte(nil), p.a.sealed(t, ping(innerA, innerB, "forged"))...)
	forged[8+3] ^= 0x10 // counter far ahead
	forged[len(forged)-1] ^= 1
	p.net.inject(outerA, outerB, forged)
	p.run()
	if got := p.b.e.Drops(DropAuthFailed); got != 1 {
		t.Errorf("forged: auth drops %d, want 1", got)
	}
	p.net.inject(outerA, outerB, msg)
	p.run()
	pb := p.b.peer()
	pb.mu.Lock()
	timers := pb.timers
	pb.mu.Unlock()
	p.clock.advance(time.Second)
	for range 5 {
		p.net.inject(outerA, outerB, msg)
	}
	p.run()
	if got := payloads(p.b.ad.written()); got != "once" {
		t.Errorf("delivered %q, want once", got)
	}
	if got := p.b.e.Drops(DropReplay); got != 5 {
		t.Errorf("replay drops %d, want 5", got)
	}
	pb.mu.Lock()
	after := pb.timers
	pb.mu.Unlock()
	if after != timers {
		t.Errorf("replays changed timers: %+v, want %+v", after, timers)
	}
}

// TestExpiredKeypair covers R7: a keypair older than 180 s drops its
// inbound packets, and outbound data starts a handshake. It is also L11 on
// the engine's side: the clock jump is what a resume from a 181 s suspend
// looks like on CLOCK_BOOTTIME, and the first packet after it handshakes.
func TestExpiredKeypair(t *testing.T) {
	p := established(t, pairOptions{})
	msg := p.a.sealed(t, ping(innerA, innerB, "late"))
	p.clock.advance(RejectAfterTime + time.Second)
	p.net.inject(outerA, outerB, msg)
	p.run()
	if got := p.b.e.Drops(DropExpired); got != 1 {
		t.Errorf("expired drops %d, want 1", got)
	}
	if got := len(p.b.ad.written()); got != 0 {
		t.Errorf("delivered %d packets under an expired keypair", got)
	}
	p.net.takeLog()
	p.a.ad.inject(ping(innerA, innerB, "new"))
	p.run()
	if got := countFrom(p.net.takeLog(), outerA, crypto.MessageInitiation); got != 1 {
		t.Errorf("initiations after expiry %d, want 1", got)
	}
	if got := payloads(p.b.ad.written()); got != "new" {
		t.Errorf("b got %q, want new", got)
	}
}

// TestInitiationOrder covers R9: of two valid initiations from one peer 25 ms
// apart, the newer wins whatever order they arrive in; the older one is
// rejected once the newer was accepted.
func TestInitiationOrder(t *testing.T) {
	p := newPair(t, pairOptions{})
	var inits []datagram
	p.net.setHook(func(d *datagram) bool {
		if crypto.MessageType(d.data[0]) == crypto.MessageInitiation {
			inits = append(inits, *d)
		}
		return false
	})
	pa := p.a.peer()
	pa.sendInitiation(false)
	p.clock.advance(RekeyTimeout) // the rate limit of D8
	pa.sendInitiation(false)
	p.net.setHook(nil)
	if len(inits) != 2 {
		t.Fatalf("captured %d initiations, want 2", len(inits))
	}
	p.clock.advance(25 * time.Millisecond)
	p.net.inject(inits[1].src, inits[1].dst, inits[1].data)
	p.net.inject(inits[0].src, inits[0].dst, inits[0].data)
	p.b.step()
	if got := p.b.e.Drops(DropHandshakeInvalid); got != 1 {
		t.Errorf("older initiation after newer: %d drops, want 1", got)
	}
}

// TestHandshakeRateLimit covers D8: a flood of outbound data to a peer
// without a session sends at most one initiation per 5 s.
func TestHandshakeRateLimit(t *testing.T) {
	p := newPair(t, pairOptions{})
	p.net.setHook(func(d *datagram) bool { return false }) // b unreachable
	start := p.clock.Now()
	for i := range 200 { // 20 s in 100 ms steps, 10 packets each
		for range 10 {
			p.a.ad.inject(ping(innerA, innerB, fmt.Sprint(i)))
		}
		p.tick(100 * time.Millisecond)
	}
	elapsed := p.clock.Now() - start
	limit := int(elapsed/RekeyTimeout) + 1
	if got := p.net.sentTo(outerB); got > limit || got < 3 {
		t.Errorf("%d initiations in %v, want between 3 and %d", got, elapsed, limit)
	}
}

// TestStagedQueue covers D9: 10,000 packets to a peer without a session
// keep the newest 128, drop and count the others, and send the kept ones
// once the session is up.
func TestStagedQueue(t *testing.T) {
	p := newPair(t, pairOptions{})
	p.net.setHook(func(d *datagram) bool { return false })
	for i := range 10000 {
		p.a.ad.inject(ping(innerA, innerB, fmt.Sprint(i)))
	}
	p.run()
	if got, want := p.a.e.Drops(DropStagedOverflow), uint64(10000-maxStagedPackets); got != want {
		t.Errorf("overflow drops %d, want %d", got, want)
	}
	p.net.setHook(nil)
	p.tick(RekeyTimeout + RekeyTimeoutJitter) // retry
	got := p.b.ad.written()
	if len(got) != maxStagedPackets {
		t.Fatalf("delivered %d, want %d", len(got), maxStagedPackets)
	}
	for i, pkt := range got {
		if want := fmt.Sprint(10000 - maxStagedPackets + i); payloadOf(pkt) != want {
			t.Fatalf("packet %d is %q, want %q", i, payloadOf(pkt), want)
		}
	}
	if out := p.a.e.pool.out.Load(); out != 0 {
		t.Errorf("%d pooled buffers not returned", out)
	}
}

// TestLowOrderPeerKeys covers P11: each low-order point is accepted as a
// peer key (persistent keepalive 1 s), and no packet reaches its endpoint.
func TestLowOrderPeerKeys(t *testing.T) {
	// The points of the kernel's netns.sh.
	points := []string{
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"4Ot6fDtBuK4WVuP68Z/EatoJjeucMrH9hmIFFl9JuAA=",
		"X5yVvKNQjCSx0LFVnIPvWwREXMRYHI6G2CJO3dCfEVc=",
		"7P///////////////////////////////////////38=",
		"7f///////////////////////////////////////38=",
		"7v///////////////////////////////////////38=",
	}
	p := newPair(t, pairOptions{})
	ep := netip.MustParseAddrPort("198.18.9.9:1")
	p.net.transport(ep)
	accepted := 0
	for i, s := range points {
		pk, err := crypto.ParsePublicKey(s)
		if err != nil {
			t.Fatalf("point %d: %v", i, err)
		}
		err = p.a.e.AddPeer(PeerConfig{
			PublicKey:           pk,
			Endpoint:            ep,
			AllowedIPs:          []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("198.19.9.%d/32", i))},
			PersistentKeepalive: time.Second,
		})
		if err != nil {
			t.Errorf("AddPeer(point %d) = %v, want nil", i, err)
		}
		accepted++
		p.a.ad.inject(ping(innerA, netip.MustParseAddr(fmt.Sprintf("198.19.9.%d", i)), "x"))
	}
	for range 20 {
		p.tick(100 * time.Millisecond)
	}
	if got := p.net.sentTo(ep); got != 0 {
		t.Errorf("%d packets reached the low-order peers' endpoint, want 0", got)
	}
	if len(p.a.e.Stats()) != accepted+1 {
		t.Errorf("peers %d, want %d", len(p.a.e.Stats()), accepted+1)
	}
}
