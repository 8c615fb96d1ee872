package crypto

import (
	"bytes"
	"crypto/ecdh"
	"encoding/binary"
	"errors"
	"sync"
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

// hsState is a comparable copy of a Handshake's mutable state.
type hsState struct {
	state                        handshakeState
	hash, chainKey               [hashSize]byte
	localEph                     *ecdh.PrivateKey
	remoteEph                    PublicKey
	localIndex, remoteIndex      uint32
	lastTimestamp                Timestamp
	lastInitiation               time.Time
	cookie, lastMAC1             [macSize]byte
	hasCookie, hasLastMAC1, hasL bool
}

func stateOf(h *Handshake) hsState {
	h.mu.Lock()
	defer h.mu.Unlock()
	return hsState{h.state, h.hash, h.chainKey, h.localEphemeral, h.remoteEphemeral, h.localIndex, h.remoteIndex,
		h.lastTimestamp, h.lastInitiation, h.cookie, h.lastMAC1, h.hasCookie, h.hasLastMAC1, h.hasLastInitiation}
}

// TestInitiationReplayAndFlood covers R8 and D7: a captured initiation
// replayed later is rejected (timestamp not newer) without touching the
// handshake; a fresh initiation 10 ms after the last accepted one is
// rejected as a flood, one 20 ms after is accepted.
func TestInitiationReplayAndFlood(t *testing.T) {
	a, b := testPair(t, 41, PresharedKey{})
	r := newTestRand(42)
	mk := func(wall time.Time) []byte {
		m := make([]byte, InitiationSize)
		if err := a.hs.CreateInitiation(m, wall, r, 1); err != nil {
			t.Fatal(err)
		}
		return m
	}
	now := time.Unix(5000, 0) // the responder's clock, unrelated to wall
	m1 := mk(t0)
	if _, err := b.id.ConsumeInitiation(m1, now, lookup(b.hs)); err != nil {
		t.Fatal(err)
	}
	before := stateOf(b.hs)
	// R8: replayed much later.
	if _, err := b.id.ConsumeInitiation(m1, now.Add(time.Hour), lookup(b.hs)); err != ErrReplayedTimestamp {
		t.Errorf("replayed initiation = %v, want ErrReplayedTimestamp", err)
	}
	// An older timestamp is refused too.
	if _, err := b.id.ConsumeInitiation(mk(t0.Add(-time.Minute)), now.Add(time.Hour), lookup(b.hs)); err != ErrReplayedTimestamp {
		t.Errorf("older initiation = %v, want ErrReplayedTimestamp", err)
	}
	// D7: 10 ms after the last accepted one, with a newer timestamp.
	if _, err := b.id.ConsumeInitiation(mk(t0.Add(time.Second)), now.Add(10*time.Millisecond), lookup(b.hs)); err != ErrFlood {
		t.Errorf("initiation 10 ms later = %v, want ErrFlood", err)
	}
	if after := stateOf(b.hs); after != before {
		t.Errorf("rejected initiations changed the handshake state")
	}
	if _, err := b.id.ConsumeInitiation(mk(t0.Add(2*time.Second)), now.Add(20*time.Millisecond), lookup(b.hs)); err != nil {
		t.Errorf("initiation 20 ms later = %v, want success", err)
	}
	// A whitened stamp only 10 ms newer is "not after" (P15 through the
	// handshake).
	base := t0.Add(time.Hour) // whole seconds: on a 2^24 ns boundary
	if _, err := b.id.ConsumeInitiation(mk(base), now.Add(time.Second), lookup(b.hs)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.id.ConsumeInitiation(mk(base.Add(10*time.Millisecond)), now.Add(2*time.Second), lookup(b.hs)); err != ErrReplayedTimestamp {
		t.Errorf("initiation stamped 10 ms later = %v, want ErrReplayedTimestamp", err)
	}
}

// TestConcurrentInitiations is R9: two valid initiations from one peer
// consumed concurrently leave the newer timestamp stored.
func TestConcurrentInitiations(t *testing.T) {
	for range 20 {
		a, b := testPair(t, 43, PresharedKey{})
		r := newTestRand(44)
		m1, m2 := make([]byte, InitiationSize), make([]byte, InitiationSize)
		if err := a.hs.CreateInitiation(m1, t0, r, 1); err != nil {
			t.Fatal(err)
		}
		if err := a.hs.CreateInitiation(m2, t0.Add(time.Second), r, 2); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		now := time.Unix(1000, 0)
		wg.Go(func() { b.id.ConsumeInitiation(m2, now, lookup(b.hs)) })
		wg.Go(func() { b.id.ConsumeInitiation(m1, now.Add(time.Second), lookup(b.hs)) })
		wg.Wait()
		if got := stateOf(b.hs).lastTimestamp; got != TAI64N(t0.Add(time.Second)) {
			t.Fatalf("stored timestamp %v, want the newer %v", got.Time(), t0.Add(time.Second))
		}
	}
}

// TestHandshakeBadInput is P10 plus M2/M3/M6 for handshake messages: a
// response with an unknown index, in the wrong state, or corrupted; an
// initiation consumed twice, corrupted or from an unknown peer → an error,
// and no state change on either side.
func TestHandshakeBadInput(t *testing.T) {
	a, b := testPair(t, 45, PresharedKey{})
	r := newTestRand(46)
	m1 := make([]byte, InitiationSize)
	m2 := make([]byte, ResponseSize)
	// Response before any initiation: wrong state.
	if err := a.hs.CreateInitiation(m1, t0, r, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.hs.CreateResponse(m2, t0, r, 2); err != ErrState {
		t.Errorf("CreateResponse before ConsumeInitiation = %v, want ErrState", err)
	}
	if _, err := b.hs.BeginSession(t0); err != ErrState {
		t.Errorf("BeginSession on a fresh handshake = %v, want ErrState", err)
	}
	snapB := stateOf(b.hs)
	// Corrupted initiations.
	for i := range InitiationSize - macSize { // mac2 is not checked here
		c := bytes.Clone(m1)
		c[i] ^= 0x10
		if _, err := b.id.ConsumeInitiation(c, t0, lookup(b.hs)); err == nil {
			t.Fatalf("initiation corrupted at byte %d consumed", i)
		}
	}
	for _, n := range []int{0, 3, 4, 147, 149} {
		c := make([]byte, n)
		copy(c, m1)
		if _, err := b.id.ConsumeInitiation(c, t0, lookup(b.hs)); err == nil {
			t.Fatalf("initiation of %d bytes consumed", n)
		}
	}
	// Unknown peer.
	if _, err := b.id.ConsumeInitiation(m1, t0, func(PublicKey) *Handshake { return nil }); err != ErrUnknownPeer {
		t.Errorf("initiation from unknown peer = %v, want ErrUnknownPeer", err)
	}
	// A Handshake belonging to another identity.
	c, _ := testPair(t, 47, PresharedKey{})
	if _, err := b.id.ConsumeInitiation(m1, t0, func(PublicKey) *Handshake { return c.hs }); err != ErrUnknownPeer {
		t.Errorf("initiation mapped to a foreign handshake = %v, want ErrUnknownPeer", err)
	}
	if stateOf(b.hs) != snapB {
		t.Fatalf("bad initiations changed the responder")
	}
	// The real one; then the same again (consumed twice).
	if _, err := b.id.ConsumeInitiation(m1, t0, lookup(b.hs)); err != nil {
		t.Fatal(err)
	}
	snapB = stateOf(b.hs)
	if _, err := b.id.ConsumeInitiation(m1, t0.Add(time.Second), lookup(b.hs)); err != ErrReplayedTimestamp {
		t.Errorf("initiation consumed twice = %v", err)
	}
	if stateOf(b.hs) != snapB {
		t.Fatalf("second consumption changed the responder")
	}
	if err := b.hs.CreateResponse(m2, t0, r, 2); err != nil {
		t.Fatal(err)
	}
	snapA := stateOf(a.hs)
	// Corrupted responses, unknown index.
	for i := range ResponseSize - macSize {
		c := bytes.Clone(m2)
		c[i] ^= 0x10
		if err := a.hs.ConsumeResponse(c); err == nil {
			t.Fatalf("response corrupted at byte %d consumed", i)
		}
	}
	c2 := bytes.Clone(m2)
	binary.LittleEndian.PutUint32(c2[8:], 99)
	b.hs.mu.Lock()
	b.hs.addMACsLocked(c2, t0)
	b.hs.mu.Unlock()
	if err := a.hs.ConsumeResponse(c2); err != ErrIndex {
		t.Errorf("response with unknown receiver index = %v, want ErrIndex", err)
	}
	if err := a.hs.ConsumeResponse(m2[:91]); err != ErrSize {
		t.Errorf("short response = %v, want ErrSize", err)
	}
	if err := a.hs.ConsumeResponse(m1); err != ErrType {
		t.Errorf("initiation as response = %v, want ErrType", err)
	}
	if stateOf(a.hs) != snapA {
		t.Fatalf("bad responses changed the initiator")
	}
	if err := a.hs.ConsumeResponse(m2); err != nil {
		t.Fatal(err)
	}
	// The same response again: wrong state.
	if err := a.hs.ConsumeResponse(m2); err != ErrState {
		t.Errorf("response consumed twice = %v, want ErrState", err)
	}
	if _, err := a.hs.BeginSession(t0); err != nil {
		t.Fatal(err)
	}
	// After the session began, the response is refused too.
	if err := a.hs.ConsumeResponse(m2); err != ErrState {
		t.Errorf("response after BeginSession = %v, want ErrState", err)
	}
	// Buffers too small.
	if err := a.hs.CreateInitiation(m1[:100], t0, r, 1); err != ErrBufferTooSmall {
		t.Errorf("CreateInitiation into 100 bytes = %v", err)
	}
	if err := a.hs.CreateResponse(m2[:50], t0, r, 1); err != ErrBufferTooSmall {
		t.Errorf("CreateResponse into 50 bytes = %v", err)
	}
	if err := a.hs.CreateInitiation(m1, t0, newTestRandN(5), 1); err == nil {
		t.Errorf("CreateInitiation with failing rand: no error")
	}
}

// TestSetIdentityAndClear checks a private key change: the old in-flight
// handshake is abandoned, and handshakes under the new key work.
func TestSetIdentityAndClear(t *testing.T) {
	a, b := testPair(t, 48, PresharedKey{})
	r := newTestRand(49)
	m1 := make([]byte, InitiationSize)
	if err := a.hs.CreateInitiation(m1, t0, r, 1); err != nil {
		t.Fatal(err)
	}
	a.hs.Clear()
	if st := stateOf(a.hs); st.state != stateZeroed || st.localEph != nil {
		t.Errorf("Clear left state %v", st.state)
	}
	k, _ := NewPrivateKey(r)
	newA := NewIdentity(k)
	a.hs.SetIdentity(newA)
	b.hs = NewHandshake(b.id, newA.PublicKey(), PresharedKey{})
	a.id = newA
	ki, kr := handshake(t, a, b, t0.Add(time.Second), r)
	checkTransport(t, ki, kr, 0)
}
