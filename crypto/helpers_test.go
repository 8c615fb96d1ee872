package crypto

import (
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

// testRand is a deterministic io.Reader for keys and nonces in tests.
type testRand struct{ r *rand.ChaCha8 }

func newTestRand(seed uint64) *testRand {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	return &testRand{rand.NewChaCha8(s)}
}

func (r *testRand) Read(p []byte) (int, error) { return r.r.Read(p) }

// t0 is the wall clock the tests start at.
var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// testPeer is one side of a handshake test: its identity and its
// Handshake for the other side.
type testPeer struct {
	id *Identity
	hs *Handshake
}

// testPair builds two peers that know each other, with psk (zero for
// none). It is shared by tests and benchmarks.
func testPair(tb testing.TB, seed uint64, psk PresharedKey) (a, b testPeer) {
	tb.Helper()
	r := newTestRand(seed)
	ka, err := NewPrivateKey(r)
	if err != nil {
		tb.Fatal(err)
	}
	kb, err := NewPrivateKey(r)
	if err != nil {
		tb.Fatal(err)
	}
	a.id, b.id = NewIdentity(ka), NewIdentity(kb)
	a.hs = NewHandshake(a.id, b.id.PublicKey(), psk)
	b.hs = NewHandshake(b.id, a.id.PublicKey(), psk)
	return a, b
}

// lookup returns the lookup function of ConsumeInitiation for a peer that
// knows exactly hs.
func lookup(hs *Handshake) func(PublicKey) *Handshake {
	return func(pk PublicKey) *Handshake {
		if pk.Equal(hs.RemoteStatic()) {
			return hs
		}
		return nil
	}
}

// handshake runs a complete handshake from ini to resp at now and returns
// both keypairs (initiator's first).
func handshake(tb testing.TB, ini, resp testPeer, now time.Time, r *testRand) (*Keypair, *Keypair) {
	tb.Helper()
	var m1 [InitiationSize]byte
	var m2 [ResponseSize]byte
	if err := ini.hs.CreateInitiation(m1[:], now, r, 11); err != nil {
		tb.Fatalf("CreateInitiation: %v", err)
	}
	hs, err := resp.id.ConsumeInitiation(m1[:], now, lookup(resp.hs))
	if err != nil {
		tb.Fatalf("ConsumeInitiation: %v", err)
	}
	if err := hs.CreateResponse(m2[:], now, r, 22); err != nil {
		tb.Fatalf("CreateResponse: %v", err)
	}
	if err := ini.hs.ConsumeResponse(m2[:]); err != nil {
		tb.Fatalf("ConsumeResponse: %v", err)
	}
	kr, err := resp.hs.BeginSession(now)
	if err != nil {
		tb.Fatalf("responder BeginSession: %v", err)
	}
	ki, err := ini.hs.BeginSession(now)
	if err != nil {
		tb.Fatalf("initiator BeginSession: %v", err)
	}
	return ki, kr
}

// newTestRandN returns a reader that yields n bytes and then io.EOF.
func newTestRandN(n int) io.Reader { return io.LimitReader(newTestRand(1), int64(n)) }
