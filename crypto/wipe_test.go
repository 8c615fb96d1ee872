package crypto

import (
	"net/netip"
	"testing"
	"time"
)

// TestP18Wipe covers P18 in package crypto: Handshake.Wipe zeroes the
// static-static secret, the preshared key and the cookie, after which the
// handshake cannot complete; Identity.Wipe zeroes the cookie secret.
func TestP18Wipe(t *testing.T) {
	r := newTestRand(18)
	kA, _ := NewPrivateKey(r)
	kB, _ := NewPrivateKey(r)
	psk, _ := NewPresharedKey(r)
	idA, idB := NewIdentity(kA), NewIdentity(kB)
	h := NewHandshake(idA, kB.PublicKey(), psk)
	now := time.Unix(1e9, 0)
	msg := make([]byte, InitiationSize)
	if err := h.CreateInitiation(msg, now, r, 1); err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddrPort("198.18.0.1:1")
	var reply [CookieReplySize]byte
	if err := idB.CreateCookieReply(reply[:], msg, src, now, r); err != nil {
		t.Fatal(err)
	}
	if err := h.ConsumeCookieReply(reply[:], now); err != nil {
		t.Fatal(err)
	}
	if isZero(h.staticStatic[:]) || isZero(h.cookie[:]) || isZero(idB.secret[:]) {
		t.Fatal("no secrets to wipe; the test proves nothing")
	}

	h.Wipe()
	for name, b := range map[string][]byte{
		"static-static": h.staticStatic[:], "psk": h.psk[:], "cookie": h.cookie[:],
		"hash": h.hash[:], "chain key": h.chainKey[:],
	} {
		if !isZero(b) {
			t.Errorf("%s not wiped", name)
		}
	}
	if err := h.CreateInitiation(msg, now, r, 2); err != ErrInvalidPublicKey {
		t.Errorf("CreateInitiation after Wipe = %v, want %v", err, ErrInvalidPublicKey)
	}

	idB.Wipe()
	if !isZero(idB.secret[:]) || idB.hasSecret {
		t.Error("cookie secret not wiped")
	}
	if idB.CheckMAC2(msg, src, now) {
		t.Error("a cookie from before Wipe still validates")
	}
}
