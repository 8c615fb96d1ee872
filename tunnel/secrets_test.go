package tunnel

import (
	"testing"

	"github.com/warrenvpn/warren/crypto"
)

// TestP18SecretsWiped covers P18 at the engine: removing a peer zeroes its
// preshared key and its handshakes' secrets, so it cannot handshake again;
// Close does the same for every peer, zeroes our private key and wipes our
// cookie secret.
func TestP18SecretsWiped(t *testing.T) {
	psk, _ := crypto.NewPresharedKey(seededRand(9))
	p := established(t, pairOptions{psk: psk})
	removed := p.a.peer()
	if !p.a.e.RemovePeer(removed.publicKey) {
		t.Fatal("RemovePeer found no peer")
	}
	removed.mu.Lock()
	pskZero := removed.psk.IsZero()
	ini := removed.initiator
	removed.mu.Unlock()
	if !pskZero {
		t.Error("removed peer's preshared key not wiped")
	}
	msg := make([]byte, crypto.InitiationSize)
	if err := ini.CreateInitiation(msg, p.clock.Wall(), seededRand(1), 1); err != crypto.ErrInvalidPublicKey {
		t.Errorf("removed peer's initiator: CreateInitiation = %v, want %v (static-static secret wiped)", err, crypto.ErrInvalidPublicKey)
	}

	// A cookie b gave out before Close.
	id := p.b.e.identity()
	k, _ := crypto.NewPrivateKey(seededRand(3))
	h := crypto.NewHandshake(crypto.NewIdentity(k), p.b.pub, crypto.PresharedKey{})
	if err := h.CreateInitiation(msg, p.clock.Wall(), seededRand(4), 1); err != nil {
		t.Fatal(err)
	}
	var reply [crypto.CookieReplySize]byte
	if err := id.CreateCookieReply(reply[:], msg, outerA, cryptoTime(p.clock.Now()), seededRand(5)); err != nil {
		t.Fatal(err)
	}
	if err := h.ConsumeCookieReply(reply[:], p.clock.Wall()); err != nil {
		t.Fatal(err)
	}
	if err := h.CreateInitiation(msg, p.clock.Wall(), seededRand(6), 2); err != nil {
		t.Fatal(err)
	}
	if !id.CheckMAC2(msg, outerA, cryptoTime(p.clock.Now())) {
		t.Fatal("no valid mac2 before Close; the test proves nothing")
	}

	kept := p.b.peer()
	p.b.e.Close()
	kept.mu.Lock()
	pskZero = kept.psk.IsZero()
	res := kept.responder
	kept.mu.Unlock()
	if !pskZero {
		t.Error("after Close: peer's preshared key not wiped")
	}
	if err := res.CreateInitiation(msg, p.clock.Wall(), seededRand(1), 1); err != crypto.ErrInvalidPublicKey {
		t.Errorf("after Close: CreateInitiation = %v, want %v", err, crypto.ErrInvalidPublicKey)
	}
	if p.b.e.identity() != nil || !p.b.e.Config().PrivateKey.IsZero() {
		t.Error("after Close: private key kept")
	}
	if err := h.CreateInitiation(msg, p.clock.Wall(), seededRand(7), 3); err != nil {
		t.Fatal(err)
	}
	if id.CheckMAC2(msg, outerA, cryptoTime(p.clock.Now())) {
		t.Error("after Close: a cookie given out before still validates (cookie secret kept)")
	}
}
