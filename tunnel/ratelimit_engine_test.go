package tunnel

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/warrenvpn/warren/crypto"
)

// mac2Sender sends b of a pair initiations that carry a valid mac2 for
// whichever source they come from, as an initiator holding a cookie for
// each of its addresses would.
type mac2Sender struct {
	t     *testing.T
	p     *pair
	h     *crypto.Handshake
	r     *rand.ChaCha8
	msg   []byte
	index uint32
}

func newMAC2Sender(t *testing.T, p *pair, seed byte) *mac2Sender {
	r := seededRand(seed)
	k, _ := crypto.NewPrivateKey(r)
	return &mac2Sender{t: t, p: p, r: r, msg: make([]byte, crypto.InitiationSize), index: 1,
		h: crypto.NewHandshake(crypto.NewIdentity(k), p.b.pub, crypto.PresharedKey{})}
}

// send injects an initiation to b from src, its mac2 made with a cookie
// b gave src.
func (s *mac2Sender) send(src netip.AddrPort) {
	t, p := s.t, s.p
	t.Helper()
	id := p.b.e.identity()
	if err := s.h.CreateInitiation(s.msg, p.clock.Wall(), s.r, s.index); err != nil {
		t.Fatal(err)
	}
	var reply [crypto.CookieReplySize]byte
	if err := id.CreateCookieReply(reply[:], s.msg, src, cryptoTime(p.clock.Now()), s.r); err != nil {
		t.Fatal(err)
	}
	if err := s.h.ConsumeCookieReply(reply[:], p.clock.Wall()); err != nil {
		t.Fatal(err)
	}
	if err := s.h.CreateInitiation(s.msg, p.clock.Wall(), s.r, s.index+1); err != nil {
		t.Fatal(err)
	}
	s.index += 2
	if !id.CheckMAC2(s.msg, src, cryptoTime(p.clock.Now())) {
		t.Fatalf("mac2 from %v is not valid; the test proves nothing", src)
	}
	p.net.inject(src, outerB, s.msg)
}

// TestD2IPv6PrefixRateLimited (D2 at the engine, as D1): under load,
// initiations with a valid mac2 from 30 IPv6 addresses of one /64, each
// holding a cookie for its own address, share one bucket: the burst of 5
// reaches the mac2 queue and the rest are dropped as rate_limited before
// any X25519 work; one from another /64 is not held back.
func TestD2IPv6PrefixRateLimited(t *testing.T) {
	p := newPair(t, pairOptions{})
	p.b.e.load.until.Store(int64(p.clock.Now() + time.Hour))
	s := newMAC2Sender(t, p, 9)
	const n = 30
	for i := range n {
		s.send(netip.MustParseAddrPort(fmt.Sprintf("[fd00:7761:9::%x]:%d", i+1, 4000+i)))
	}
	dh := crypto.X25519Operations()
	p.b.receiveAll(p.net)
	if got, want := p.b.e.Drops(DropRateLimited), uint64(n-rateLimitBurst); got != want {
		t.Errorf("rate-limited drops %d, want %d: the /64 is not one bucket", got, want)
	}
	if got := len(p.b.e.handshakesMAC2); got != rateLimitBurst {
		t.Errorf("%d messages on the mac2 queue, want %d", got, rateLimitBurst)
	}
	if got := crypto.X25519Operations() - dh; got != 0 {
		t.Errorf("%d X25519 operations before the worker ran, want 0", got)
	}

	s.send(netip.MustParseAddrPort("[fd00:7761:8::1]:4000"))
	p.b.receiveAll(p.net)
	if got, want := p.b.e.Drops(DropRateLimited), uint64(n-rateLimitBurst); got != want {
		t.Errorf("rate-limited drops %d after a source of another /64, want still %d", got, want)
	}
	if got := len(p.b.e.handshakesMAC2); got != rateLimitBurst+1 {
		t.Errorf("%d messages on the mac2 queue, want %d: another /64 was held back", got, rateLimitBurst+1)
	}
	p.b.e.drainHandshakes()
}

// TestD3LimiterFullAtEngine (D3 at the engine): under load, with the
// limiter holding 65,536 sources, a valid-mac2 initiation from one more is
// dropped as rate_limited and the table does not grow; the engine's tick
// collects the idle entries after 1 s, and the same source's next
// initiation reaches the queue.
func TestD3LimiterFullAtEngine(t *testing.T) {
	p := newPair(t, pairOptions{})
	p.b.e.load.until.Store(int64(p.clock.Now() + time.Hour))
	lim := &p.b.e.limiter
	for i := range rateLimitMaxKeys {
		if !lim.allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), p.clock.Now()) {
			t.Fatalf("source %d refused before the table was full", i)
		}
	}
	s := newMAC2Sender(t, p, 10)
	src := netip.MustParseAddrPort("198.18.9.9:4000")
	s.send(src)
	p.b.receiveAll(p.net)
	if got := p.b.e.Drops(DropRateLimited); got != 1 {
		t.Errorf("rate-limited drops %d with the table full, want 1", got)
	}
	if got := lim.len(); got != rateLimitMaxKeys {
		t.Errorf("the limiter holds %d sources, want %d", got, rateLimitMaxKeys)
	}
	if got := len(p.b.e.handshakesMAC2); got != 0 {
		t.Errorf("%d messages on the mac2 queue, want none", got)
	}

	p.clock.advance(rateLimitIdle)
	p.b.e.Tick()
	if got := lim.len(); got != 0 {
		t.Errorf("the limiter holds %d sources 1 s idle after a tick, want none", got)
	}
	s.send(src)
	p.b.receiveAll(p.net)
	if got := len(p.b.e.handshakesMAC2); got != 1 {
		t.Errorf("%d messages on the mac2 queue after the collection, want 1 (drops %v)", got, p.b.e.DropCounts())
	}
	p.b.e.drainHandshakes()
}
