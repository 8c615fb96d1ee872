package tunnel

import (
	"net/netip"
	"testing"
	"time"
)

// BenchmarkDropCost measures what a datagram the engine drops costs in CPU,
// receive path and handshake worker together, in ns per datagram, on one
// goroutine and without system calls, also as CPU time ("cpu-ns/op"),
// which a busy machine does not inflate (BenchmarkFlood measures the same
// floods over real sockets against a closed-port control):
//
//   - garbage: the audit's mix of random datagrams, initiation-like ones
//     with bad MACs and data with unknown indices;
//   - initiations: valid-mac1 initiations without mac2, under load, from
//     one address with many ports (the flood of one machine);
//   - spoofed: the same from ever new addresses, each its first time.
//
// The cookie replies they draw are sent into a network that loses them.
func BenchmarkDropCost(b *testing.B) {
	for _, tc := range []struct {
		name string
		src  func(i int) netip.AddrPort
		msgs func(p *pair) [][]byte
	}{
		{"garbage", attackerPort, func(*pair) [][]byte { return garbageMessages(4096) }},
		{"initiations", attackerPort, floodMessages},
		{"spoofed", spoofed17, floodMessages},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p := established(b, pairOptions{})
			p.net.setHook(func(*datagram) bool { return false })
			msgs := tc.msgs(p)
			e := p.b.e
			forceUnderLoad(e, p.clock.Now()+time.Hour)
			in := newInbound(64)
			b.ReportAllocs()
			cpu := processCPU()
			b.ResetTimer()
			for i := 0; i < b.N; {
				k := min(64, b.N-i)
				for j := range k {
					m := msgs[(i+j)%len(msgs)]
					in.sizes[j] = copy(in.bufs[j], m)
					in.eps[j] = tc.src(i + j)
				}
				e.processInbound(in, k)
				e.drainHandshakes()
				i += k
			}
			if c := processCPU(); c > 0 {
				b.ReportMetric(float64(c-cpu)/float64(b.N), "cpu-ns/op")
			}
		})
	}
}

func floodMessages(p *pair) [][]byte {
	f := newFlooder(p.t, p.b.pub)
	msgs := make([][]byte, 4096)
	for i := range msgs {
		msgs[i] = f.initiation()
	}
	return msgs
}

// spoofed17 is a new source address for each of 2^17 messages, from
// 198.18.0.0/15.
func spoofed17(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18 | byte(i>>16)&1, byte(i >> 8), byte(i)}), 1024)
}

// TestD11DropAllocs covers D11's allocation clause: dropping garbage, and
// refusing valid-mac1 initiations without mac2 from a source over its
// cookie limit under load, allocate nothing per datagram.
func TestD11DropAllocs(t *testing.T) {
	for _, tc := range []struct {
		name string
		msgs func(p *pair) [][]byte
	}{
		{"garbage", func(*pair) [][]byte { return garbageMessages(64) }},
		{"initiations", floodMessages},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := established(t, pairOptions{})
			p.net.setHook(func(*datagram) bool { return false })
			e := p.b.e
			forceUnderLoad(e, p.clock.Now()+time.Hour)
			msgs := tc.msgs(p)
			in := newInbound(64)
			fill := func() {
				for j := range 64 {
					in.sizes[j] = copy(in.bufs[j], msgs[j%len(msgs)])
					in.eps[j] = attackerPort(j)
				}
			}
			fill()
			e.processInbound(in, 64) // the source's burst of cookies
			e.drainHandshakes()
			if n := testing.AllocsPerRun(20, func() {
				fill()
				e.processInbound(in, 64)
				e.drainHandshakes()
			}); n != 0 {
				t.Errorf("%.1f allocations per batch of 64, want 0", n)
			}
		})
	}
}
