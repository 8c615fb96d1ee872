package crypto

import (
	"errors"
	"testing"
	"time"
)

// snapshot returns the chaining key and hash of h.
func snapshot(h *Handshake) (ck, hash [hashSize]byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.chainKey, h.hash
}

// TestHandshakeAgree is P3: two instances of our handshake, each in both
// roles, with and without a PSK, agree on the chaining key and hash after
// every message, and the derived keys seal and open both ways at nonce 0.
func TestHandshakeAgree(t *testing.T) {
	for _, tc := range []struct {
		name string
		psk  bool
		swap bool
	}{
		{"a initiates", false, false},
		{"b initiates", false, true},
		{"a initiates psk", true, false},
		{"b initiates psk", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var psk PresharedKey
			if tc.psk {
				psk, _ = NewPresharedKey(newTestRand(9))
			}
			ini, resp := testPair(t, 3, psk)
			if tc.swap {
				ini, resp = resp, ini
			}
			r := newTestRand(4)
			var m1 [InitiationSize]byte
			var m2 [ResponseSize]byte
			if err := ini.hs.CreateInitiation(m1[:], t0, r, 0x01020304); err != nil {
				t.Fatal(err)
			}
			if _, err := resp.id.ConsumeInitiation(m1[:], t0, lookup(resp.hs)); err != nil {
				t.Fatal(err)
			}
			ck1, h1 := snapshot(ini.hs)
			ck2, h2 := snapshot(resp.hs)
			if ck1 != ck2 || h1 != h2 {
				t.Fatalf("after initiation: chaining key or hash differ")
			}
			if err := resp.hs.CreateResponse(m2[:], t0, r, 0x0a0b0c0d); err != nil {
				t.Fatal(err)
			}
			if err := ini.hs.ConsumeResponse(m2[:]); err != nil {
				t.Fatal(err)
			}
			ck1, h1 = snapshot(ini.hs)
			ck2, h2 = snapshot(resp.hs)
			if ck1 != ck2 || h1 != h2 {
				t.Fatalf("after response: chaining key or hash differ")
			}
			ki, err := ini.hs.BeginSession(t0)
			if err != nil {
				t.Fatal(err)
			}
			kr, err := resp.hs.BeginSession(t0.Add(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if !ki.IsInitiator || kr.IsInitiator {
				t.Errorf("IsInitiator = %v, %v, want true, false", ki.IsInitiator, kr.IsInitiator)
			}
			if ki.LocalIndex != 0x01020304 || ki.RemoteIndex != 0x0a0b0c0d || kr.LocalIndex != 0x0a0b0c0d || kr.RemoteIndex != 0x01020304 {
				t.Errorf("indices: initiator %x/%x, responder %x/%x", ki.LocalIndex, ki.RemoteIndex, kr.LocalIndex, kr.RemoteIndex)
			}
			if !kr.Created.Equal(t0.Add(time.Second)) {
				t.Errorf("Created = %v", kr.Created)
			}
			checkTransport(t, ki, kr, 0)
			checkTransport(t, kr, ki, 0)
			if ck, h := snapshot(ini.hs); ck != ([hashSize]byte{}) || h != ([hashSize]byte{}) {
				t.Errorf("BeginSession left handshake state behind")
			}
		})
	}
}

// checkTransport seals a message with from and opens it with to, expecting
// counter want.
func checkTransport(t testing.TB, from, to *Keypair, want uint64) {
	t.Helper()
	buf := make([]byte, 128)
	payload := []byte("hello, warren")
	copy(buf[DataHeaderSize:], payload)
	n, err := from.Seal(buf, len(payload), 1420)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	pt, counter, err := to.Open(buf[:n])
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if counter != want || string(pt[:len(payload)]) != string(payload) {
		t.Fatalf("Open = %q, %d, want %q, %d", pt, counter, payload, want)
	}
	if !to.AcceptCounter(counter) {
		t.Fatalf("AcceptCounter(%d) = false", counter)
	}
}

func TestHandshakeWrongPSK(t *testing.T) {
	psk, _ := NewPresharedKey(newTestRand(9))
	a, b := testPair(t, 3, psk)
	b.hs.SetPresharedKey(PresharedKey{})
	r := newTestRand(5)
	var m1 [InitiationSize]byte
	var m2 [ResponseSize]byte
	if err := a.hs.CreateInitiation(m1[:], t0, r, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := b.id.ConsumeInitiation(m1[:], t0, lookup(b.hs)); err != nil {
		t.Fatal(err)
	}
	if err := b.hs.CreateResponse(m2[:], t0, r, 2); err != nil {
		t.Fatal(err)
	}
	if err := a.hs.ConsumeResponse(m2[:]); err != ErrDecrypt {
		t.Fatalf("ConsumeResponse with mismatched PSK = %v, want ErrDecrypt", err)
	}
	if _, err := a.hs.BeginSession(t0); err != ErrState {
		t.Fatalf("BeginSession after failed response = %v, want ErrState", err)
	}
}

// TestLowOrderPeer checks that a low-order peer key is accepted by
// NewHandshake but never completes a handshake, in either role (P11's
// crypto half).
func TestLowOrderPeer(t *testing.T) {
	r := newTestRand(7)
	k, _ := NewPrivateKey(r)
	id := NewIdentity(k)
	for _, p := range lowOrderPoints(t) {
		h := NewHandshake(id, p, PresharedKey{})
		var m [InitiationSize]byte
		if err := h.CreateInitiation(m[:], t0, r, 1); !errors.Is(err, ErrInvalidPublicKey) {
			t.Errorf("CreateInitiation to %v = %v, want ErrInvalidPublicKey", p, err)
		}
	}
	// A valid initiation whose ephemeral we replace with a low-order point
	// (and re-MAC) is refused before any state changes.
	a, b := testPair(t, 8, PresharedKey{})
	var m [InitiationSize]byte
	if err := a.hs.CreateInitiation(m[:], t0, r, 1); err != nil {
		t.Fatal(err)
	}
	copy(m[8:40], lowOrderPoints(t)[2][:])
	a.hs.mu.Lock()
	a.hs.addMACsLocked(m[:], t0)
	a.hs.mu.Unlock()
	if _, err := b.id.ConsumeInitiation(m[:], t0, lookup(b.hs)); err != ErrInvalidPublicKey {
		t.Errorf("ConsumeInitiation with low-order ephemeral = %v, want ErrInvalidPublicKey", err)
	}
}
