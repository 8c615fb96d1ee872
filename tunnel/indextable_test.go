package tunnel

import (
	"math"
	"testing"

	"github.com/warrenvpn/warren/crypto"
)

// TestP13EngineIndices covers P13 on the engine's own path: the indices it
// draws with its production randomness (crypto/rand) for handshakes and
// keypairs are nonzero, never one in use, and uniform over 32 bits (bit
// balance and a chi-square of the top byte over 10^5 draws); an initiation
// carries the index registered for its peer.
func TestP13EngineIndices(t *testing.T) {
	e := newEngine(&stepAdapter{mtu: 1420}, newStepNet().transport(outerA), Options{TickInterval: -1})
	t.Cleanup(func() { e.Close() })
	const n = 100_000
	var ones [32]int
	var buckets [256]int
	for range n {
		x, err := e.indices.newIndex(indexEntry{}, e.readRand)
		if err != nil {
			t.Fatal(err)
		}
		if x == 0 {
			t.Fatal("index 0 handed out")
		}
		for b := range 32 {
			ones[b] += int(x >> b & 1)
		}
		buckets[x>>24]++
	}
	if got := e.indices.len(); got != n {
		t.Errorf("%d distinct indices in the table after %d draws, want %d", got, n, n)
	}
	for b, c := range ones {
		if math.Abs(float64(c)-n/2) > 6*math.Sqrt(n/4) {
			t.Errorf("bit %d set %d times in %d draws", b, c, n)
		}
	}
	var chi2 float64
	for _, c := range buckets {
		d := float64(c) - n/256.0
		chi2 += d * d / (n / 256.0)
	}
	if chi2 > 400 { // 255 degrees of freedom; p < 1e-7 past 400
		t.Errorf("top-byte chi-square %.1f: not uniform", chi2)
	}

	// An initiation's sender index is the one the engine registered.
	p := newPair(t, pairOptions{})
	p.net.takeLog()
	p.a.ad.inject(ping(innerA, innerB, "x"))
	p.a.step()
	for _, d := range p.net.takeLog() {
		if crypto.MessageType(d.data[0]) != crypto.MessageInitiation {
			continue
		}
		idx := crypto.SenderIndex(d.data)
		ent, ok := p.a.e.indices.lookup(idx)
		if !ok || ent.peer != p.a.peer() || ent.kp != nil {
			t.Errorf("initiation index %#x: entry %+v, %v; want a's pending handshake", idx, ent, ok)
		}
		return
	}
	t.Error("a sent no initiation")
}
