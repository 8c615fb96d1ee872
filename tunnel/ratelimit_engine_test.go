package tunnel

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/warrenvpn/warren/crypto"
)

// TestD2IPv6PrefixRateLimited (D2 at the engine, as D1): under load,
// initiations with a valid mac2 from 30 IPv6 addresses of one /64, each
// holding a cookie for its own address, share one bucket: the burst of 5
// reaches the mac2 queue and the rest are dropped as rate_limited before
// any X25519 work; one from another /64 is not held back.
func TestD2IPv6PrefixRateLimited(t *testing.T) {
	p := newPair(t, pairOptions{})
	p.b.e.load.until.Store(int64(p.clock.Now() + time.Hour))
	r := seededRand(9)
	k, _ := crypto.NewPrivateKey(r)
	h := crypto.NewHandshake(crypto.NewIdentity(k), p.b.pub, crypto.PresharedKey{})
	id := p.b.e.identity()
	msg := make([]byte, crypto.InitiationSize)
	index := uint32(1)
	// inject sends b an initiation from src with a valid mac2 for src.
	inject := func(src netip.AddrPort) {
		t.Helper()
		if err := h.CreateInitiation(msg, p.clock.Wall(), r, index); err != nil {
			t.Fatal(err)
		}
		var reply [crypto.CookieReplySize]byte
		if err := id.CreateCookieReply(reply[:], msg, src, cryptoTime(p.clock.Now()), r); err != nil {
			t.Fatal(err)
		}
		if err := h.ConsumeCookieReply(reply[:], p.clock.Wall()); err != nil {
			t.Fatal(err)
		}
		if err := h.CreateInitiation(msg, p.clock.Wall(), r, index+1); err != nil {
			t.Fatal(err)
		}
		index += 2
		if !id.CheckMAC2(msg, src, cryptoTime(p.clock.Now())) {
			t.Fatalf("mac2 from %v is not valid; the test proves nothing", src)
		}
		p.net.inject(src, outerB, msg)
	}
	const n = 30
	for i := range n {
		inject(netip.MustParseAddrPort(fmt.Sprintf("[fd00:7761:9::%x]:%d", i+1, 4000+i)))
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

	inject(netip.MustParseAddrPort("[fd00:7761:8::1]:4000"))
	p.b.receiveAll(p.net)
	if got, want := p.b.e.Drops(DropRateLimited), uint64(n-rateLimitBurst); got != want {
		t.Errorf("rate-limited drops %d after a source of another /64, want still %d", got, want)
	}
	if got := len(p.b.e.handshakesMAC2); got != rateLimitBurst+1 {
		t.Errorf("%d messages on the mac2 queue, want %d: another /64 was held back", got, rateLimitBurst+1)
	}
	p.b.e.drainHandshakes()
}
