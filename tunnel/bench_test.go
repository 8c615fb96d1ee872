package tunnel

import (
	"fmt"
	"net/netip"
	"testing"
)

// pumpSink is a Transport whose Send copies datagrams straight into the
// receiving engine's inbound scratch, without allocating.
type pumpSink struct {
	in *inbound
	n  int
}

func (s *pumpSink) Send(bufs [][]byte, ep netip.AddrPort, _ netip.Addr) (int, error) {
	for _, b := range bufs {
		if s.n == len(s.in.bufs) {
			break
		}
		s.in.sizes[s.n] = copy(s.in.bufs[s.n], b)
		s.in.eps[s.n], s.in.locals[s.n] = outerA, outerB.Addr()
		s.n++
	}
	return len(bufs), nil // the rest are lost on the way, as on a network
}

func (s *pumpSink) Receive([][]byte, []int, []netip.AddrPort, []netip.Addr) (int, error) {
	return 0, nil
}
func (s *pumpSink) BatchSize() int { return len(s.in.bufs) }
func (s *pumpSink) Close() error   { return nil }

// countingAdapter counts written packets and bytes and keeps nothing.
type countingAdapter struct {
	stepAdapter
	packets, bytes int
}

func (c *countingAdapter) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		c.packets++
		c.bytes += len(b) - offset
	}
	return len(bufs), nil
}

// pump moves one batch from a's adapter side through both engines to b's
// adapter side, in one goroutine: route, seal, "send", open, check, write.
type pump struct {
	p         *pair
	out       *outbound
	in        *inbound
	sink      *pumpSink
	dst       *countingAdapter
	templates [][]byte
}

func newPump(tb testing.TB, batch, size int) *pump {
	tb.Helper()
	p := established(tb, pairOptions{})
	pu := &pump{p: p, out: newOutbound(batch), in: newInbound(batch), dst: &countingAdapter{stepAdapter: stepAdapter{mtu: 1420}}}
	pu.sink = &pumpSink{in: pu.in}
	p.a.e.tr.Store(newTransportBox(pu.sink))
	p.b.e.adapter = pu.dst
	payload := make([]byte, size-28) // IPv4 + UDP headers
	for range batch {
		pu.templates = append(pu.templates, ping(innerA, innerB, string(payload)))
	}
	return pu
}

func (pu *pump) run() {
	for i, t := range pu.templates {
		pu.out.sizes[i] = copy(pu.out.bufs[i][Offset:], t)
	}
	pu.sink.n = 0
	pu.p.a.e.processOutbound(pu.out, len(pu.templates))
	pu.p.b.e.processInbound(pu.in, pu.sink.n)
}

// TestPumpAllocs pins the steady-state path at zero allocations per batch
// (STYLE "Hot path").
func TestPumpAllocs(t *testing.T) {
	pu := newPump(t, 64, 1420)
	pu.run()
	allocs := testing.AllocsPerRun(100, pu.run)
	if allocs != 0 {
		t.Errorf("%v allocations per batch, want 0", allocs)
	}
	if want := 102 * 64; pu.dst.packets != want {
		t.Errorf("delivered %d packets, want %d (drops %v / %v)", pu.dst.packets, want, pu.p.a.e.DropCounts(), pu.p.b.e.DropCounts())
	}
}

// BenchmarkPump measures the whole in-memory path, both engines on one
// core: packets/s and bytes/s of inner packets.
func BenchmarkPump(b *testing.B) {
	for _, size := range []int{64, 1420} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			const batch = 64
			pu := newPump(b, batch, size)
			b.ReportAllocs()
			b.SetBytes(int64(batch * size))
			start := pu.dst.packets
			iters := 0
			for b.Loop() {
				pu.run()
				iters++
			}
			b.ReportMetric(float64(iters*batch)/b.Elapsed().Seconds(), "packets/s")
			if got := pu.dst.packets - start; got != iters*batch {
				b.Fatalf("delivered %d of %d", got, iters*batch)
			}
		})
	}
}
