package crypto

import (
	"bytes"
	"net/netip"
	"testing"
	"time"
)

var (
	srcA = netip.MustParseAddrPort("198.18.0.1:51820")
	srcB = netip.MustParseAddrPort("198.18.0.2:51820")     // other IP
	srcC = netip.MustParseAddrPort("198.18.0.1:51821")     // other port
	srcD = netip.MustParseAddrPort("[fd00:7761::1]:51820") // IPv6
	srcE = netip.MustParseAddrPort("[::ffff:198.18.0.1]:51820")
)

// cookieRound has a sends an initiation to b at now, b answers with a cookie
// reply for src, and a consumes it. It returns the initiation and the
// reply.
func cookieRound(t *testing.T, a, b testPeer, now time.Time, src netip.AddrPort) (init, reply []byte) {
	t.Helper()
	r := newTestRand(uint64(now.UnixNano()))
	init = make([]byte, InitiationSize)
	if err := a.hs.CreateInitiation(init, now, r, 7); err != nil {
		t.Fatal(err)
	}
	if !b.id.CheckMAC1(init) {
		t.Fatal("CheckMAC1 of a fresh initiation = false")
	}
	reply = make([]byte, CookieReplySize)
	if err := b.id.CreateCookieReply(reply, init, src, now, r); err != nil {
		t.Fatal(err)
	}
	if typ, err := Parse(reply); err != nil || typ != MessageCookieReply || ReceiverIndex(reply) != 7 {
		t.Fatalf("cookie reply: Parse = %v, %v; receiver %x", typ, err, ReceiverIndex(reply))
	}
	return init, reply
}

// TestMACs is P5: a fresh mac1 verifies; mac2 fails before any cookie and
// verifies after one is consumed; one flipped bit breaks both; another
// source IP or port breaks mac2.
func TestMACs(t *testing.T) {
	a, b := testPair(t, 31, PresharedKey{})
	init, reply := cookieRound(t, a, b, t0, srcA)
	if !isZero(init[InitiationSize-macSize:]) {
		t.Errorf("mac2 before any cookie is not zero")
	}
	if b.id.CheckMAC2(init, srcA, t0) {
		t.Errorf("CheckMAC2 before any cookie = true")
	}
	if err := a.hs.ConsumeCookieReply(reply, t0); err != nil {
		t.Fatalf("ConsumeCookieReply: %v", err)
	}
	for _, src := range []netip.AddrPort{srcA, srcD} {
		m := make([]byte, InitiationSize)
		if err := a.hs.CreateInitiation(m, t0.Add(time.Second), newTestRand(1), 8); err != nil {
			t.Fatal(err)
		}
		if src == srcD {
			// A cookie for the IPv6 source.
			rep := make([]byte, CookieReplySize)
			if err := b.id.CreateCookieReply(rep, m, srcD, t0.Add(time.Second), newTestRand(2)); err != nil {
				t.Fatal(err)
			}
			if err := a.hs.ConsumeCookieReply(rep, t0.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			if err := a.hs.CreateInitiation(m, t0.Add(2*time.Second), newTestRand(3), 9); err != nil {
				t.Fatal(err)
			}
		}
		if !b.id.CheckMAC1(m) || !b.id.CheckMAC2(m, src, t0.Add(2*time.Second)) {
			t.Fatalf("%v: mac1 %v, mac2 %v, want both valid", src, b.id.CheckMAC1(m), b.id.CheckMAC2(m, src, t0.Add(2*time.Second)))
		}
		for _, other := range []netip.AddrPort{srcA, srcB, srcC, srcD} {
			if other != src && b.id.CheckMAC2(m, other, t0.Add(2*time.Second)) {
				t.Errorf("cookie for %v validates mac2 from %v", src, other)
			}
		}
		// One flipped bit anywhere before mac1 breaks both MACs; in mac1,
		// breaks both; in mac2, breaks mac2 only.
		for i := range InitiationSize {
			c := bytes.Clone(m)
			c[i] ^= 1
			mac1, mac2 := b.id.CheckMAC1(c), b.id.CheckMAC2(c, src, t0.Add(2*time.Second))
			if mac2 || (mac1 && i < InitiationSize-macSize) {
				t.Fatalf("bit flipped at %d: mac1 %v, mac2 %v", i, mac1, mac2)
			}
		}
	}
	// IPv4-mapped IPv6 is the same source as IPv4.
	if b.id.CheckMAC2(init, srcE, t0) != b.id.CheckMAC2(init, srcA, t0) {
		t.Errorf("v4-mapped source differs from v4")
	}
	// Another identity does not accept our mac1.
	c, _ := testPair(t, 32, PresharedKey{})
	if c.id.CheckMAC1(init) {
		t.Errorf("mac1 valid for a different identity")
	}
	if b.id.CheckMAC1(init[:20]) || b.id.CheckMAC2(init[:20], srcA, t0) {
		t.Errorf("MACs of a short message valid")
	}
}

// TestCookieReplyRejected is P6: a cookie reply for a different mac1, with
// no message outstanding, or delivered a second time is rejected.
func TestCookieReplyRejected(t *testing.T) {
	a, b := testPair(t, 33, PresharedKey{})
	// No message outstanding.
	_, reply := cookieRound(t, a, b, t0, srcA)
	fresh := NewHandshake(a.id, b.id.PublicKey(), PresharedKey{})
	if err := fresh.ConsumeCookieReply(reply, t0); err != ErrNoCookieRequest {
		t.Errorf("cookie reply with nothing sent = %v, want ErrNoCookieRequest", err)
	}
	// For a different mac1: a's first initiation got a reply, but a has
	// sent a second one since.
	_, reply = cookieRound(t, a, b, t0, srcA)
	if err := a.hs.CreateInitiation(make([]byte, InitiationSize), t0.Add(time.Second), newTestRand(1), 8); err != nil {
		t.Fatal(err)
	}
	if err := a.hs.ConsumeCookieReply(reply, t0); err != ErrDecrypt {
		t.Errorf("cookie reply for an older mac1 = %v, want ErrDecrypt", err)
	}
	// Delivered twice.
	_, reply = cookieRound(t, a, b, t0.Add(2*time.Second), srcA)
	if err := a.hs.ConsumeCookieReply(reply, t0); err != nil {
		t.Fatal(err)
	}
	if err := a.hs.ConsumeCookieReply(reply, t0); err != ErrNoCookieRequest {
		t.Errorf("second delivery = %v, want ErrNoCookieRequest", err)
	}
	// Malformed.
	if err := a.hs.ConsumeCookieReply(reply[:63], t0); err != ErrSize {
		t.Errorf("short cookie reply = %v, want ErrSize", err)
	}
	if err := a.hs.ConsumeCookieReply(make([]byte, InitiationSize), t0); err != ErrType {
		t.Errorf("zero bytes as cookie reply = %v, want ErrType", err)
	}
	resp := make([]byte, ResponseSize)
	resp[0] = byte(MessageResponse)
	if err := a.hs.ConsumeCookieReply(resp, t0); err != ErrType {
		t.Errorf("response as cookie reply = %v, want ErrType", err)
	}
	if err := b.id.CreateCookieReply(make([]byte, 10), resp, srcA, t0, newTestRand(1)); err != ErrBufferTooSmall {
		t.Errorf("CreateCookieReply into short buffer = %v", err)
	}
	if err := b.id.CreateCookieReply(make([]byte, 64), resp[:20], srcA, t0, newTestRand(1)); err != ErrShort {
		t.Errorf("CreateCookieReply for short message = %v", err)
	}
}

// TestCookieAges is P7 with a fake clock: an initiator's cookie older than
// 115 s makes mac2 go out as zeros; the responder's secret rotates at
// 120 s and older cookies fail.
func TestCookieAges(t *testing.T) {
	a, b := testPair(t, 35, PresharedKey{})
	_, reply := cookieRound(t, a, b, t0, srcA)
	if err := a.hs.ConsumeCookieReply(reply, t0); err != nil {
		t.Fatal(err)
	}
	m := make([]byte, InitiationSize)
	for _, tc := range []struct {
		age        time.Duration
		mac2Zero   bool
		mac2Passes bool
	}{
		{0, false, true},
		{114 * time.Second, false, true},
		{115 * time.Second, true, false},
		{-time.Second, true, false}, // clock went back: do not trust the cookie
	} {
		now := t0.Add(tc.age)
		if err := a.hs.CreateInitiation(m, t0.Add(time.Duration(len(tc.age.String()))*time.Hour+tc.age), newTestRand(1), 1); err != nil {
			t.Fatal(err)
		}
		// Re-MAC at now (CreateInitiation's now also dates the cookie).
		a.hs.mu.Lock()
		a.hs.addMACsLocked(m, now)
		a.hs.mu.Unlock()
		if got := isZero(m[InitiationSize-macSize:]); got != tc.mac2Zero {
			t.Errorf("cookie age %v: mac2 zero = %v, want %v", tc.age, got, tc.mac2Zero)
		}
		if got := b.id.CheckMAC2(m, srcA, t0.Add(time.Second)); got != tc.mac2Passes {
			t.Errorf("cookie age %v: CheckMAC2 = %v, want %v", tc.age, got, tc.mac2Passes)
		}
	}
	// Responder: the secret made at t0 validates until t0+120 s, not after.
	if err := a.hs.CreateInitiation(m, t0.Add(time.Hour), newTestRand(1), 1); err != nil {
		t.Fatal(err)
	}
	a.hs.mu.Lock()
	a.hs.addMACsLocked(m, t0)
	a.hs.mu.Unlock()
	if !b.id.CheckMAC2(m, srcA, t0.Add(119*time.Second)) {
		t.Errorf("CheckMAC2 at 119 s = false")
	}
	if b.id.CheckMAC2(m, srcA, t0.Add(120*time.Second)) {
		t.Errorf("CheckMAC2 at 120 s = true, want false (secret expired)")
	}
	// A new reply rotates the secret; the old cookie stays invalid.
	rep := make([]byte, CookieReplySize)
	if err := b.id.CreateCookieReply(rep, m, srcA, t0.Add(121*time.Second), newTestRand(9)); err != nil {
		t.Fatal(err)
	}
	if b.id.CheckMAC2(m, srcA, t0.Add(121*time.Second)) {
		t.Errorf("old cookie valid after rotation")
	}
	if err := a.hs.ConsumeCookieReply(rep, t0.Add(121*time.Second)); err != nil {
		t.Fatal(err)
	}
	a.hs.mu.Lock()
	a.hs.addMACsLocked(m, t0.Add(122*time.Second))
	a.hs.mu.Unlock()
	if !b.id.CheckMAC2(m, srcA, t0.Add(122*time.Second)) {
		t.Errorf("new cookie invalid after rotation")
	}
	// A failing rand leaves the secret unset.
	_, c := testPair(t, 36, PresharedKey{})
	if err := c.id.CreateCookieReply(rep, m, srcA, t0, newTestRandN(0)); err == nil {
		t.Errorf("CreateCookieReply with failing rand: no error")
	}
}
