package tunnel

import (
	"testing"

	"github.com/warrenvpn/warren/crypto"
)

// TestM11TruncatedThenReal: a handshake message cut short, at every length
// from nothing to one byte less than the real one, and then the real one:
// each cut is dropped without a state change and the real one completes
// the handshake (M11). Both directions: the initiation, then the response.
func TestM11TruncatedThenReal(t *testing.T) {
	for _, typ := range []crypto.MessageType{crypto.MessageInitiation, crypto.MessageResponse} {
		t.Run(typ.String(), func(t *testing.T) {
			p := newPair(t, pairOptions{})
			var held *datagram
			p.net.setHook(func(d *datagram) bool {
				if held == nil && len(d.data) > 0 && crypto.MessageType(d.data[0]) == typ {
					c := *d
					c.data = append([]byte(nil), d.data...)
					held = &c
					return false
				}
				return true
			})
			p.a.ad.inject(ping(innerA, innerB, "a1"))
			p.run()
			if held == nil {
				t.Fatalf("no %v was sent", typ)
			}
			p.net.setHook(nil)
			victim := p.b
			if held.dst == outerA {
				victim = p.a
			}
			before := victim.e.DropCounts()
			for n := range len(held.data) {
				p.net.inject(held.src, held.dst, held.data[:n])
				p.run()
			}
			after := victim.e.DropCounts()
			dropped := uint64(0)
			for k, v := range after {
				dropped += v - before[k]
			}
			if dropped != uint64(len(held.data)) {
				t.Errorf("%d cut messages dropped, want %d (%v)", dropped, len(held.data), after)
			}
			p.net.inject(held.src, held.dst, held.data)
			p.run()
			if got := payloads(p.b.ad.written()); got != "a1" {
				t.Fatalf("b got %q after the real %v, want a1", got, typ)
			}
		})
	}
}
