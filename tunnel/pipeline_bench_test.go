package tunnel

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/warrenvpn/warren/device/tun/tuntest"
)

// The engine benchmark of several pipelines (issue 10): in-memory adapters
// and transports, no system calls. Engine a runs its real readLoops, one per
// pipeline; each pipeline's generator adapter hands out batches of packets
// of its own flows, and its transport gives every sealed batch straight to
// engine b's processInbound on a scratch of the same pipeline, whose adapter
// counts what arrives. So one goroutine per pipeline does all the work of a
// packet (route, seal, open, replay check, source check, write) on the
// shared peer state, as the pipelines of two real gateways with one peer
// between them would; only the kernel's work is missing.
//
//	go test ./tunnel -run '^$' -bench Pipelines -count 5

// genAdapter is an adapter whose Read returns copies of its templates
// until the shared budget of batches runs out, then blocks until Close.
type genAdapter struct {
	stepAdapter
	templates [][]byte
	left      *atomic.Int64 // batches still to hand out, shared
	idle      *sync.WaitGroup
	waiting   bool
	closed    chan struct{}
	once      sync.Once
}

func (g *genAdapter) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if g.left.Add(-1) < 0 {
		if !g.waiting {
			g.waiting = true
			g.idle.Done()
		}
		<-g.closed
		return 0, net.ErrClosed
	}
	n := min(len(bufs), len(g.templates))
	for i := range n {
		sizes[i] = copy(bufs[i][offset:], g.templates[i])
	}
	return n, nil
}

func (g *genAdapter) BatchSize() int { return len(g.templates) }

func (g *genAdapter) Close() error {
	g.once.Do(func() { close(g.closed) })
	return nil
}

// directTransport hands each sent batch to engine to's processInbound on
// its own scratch, in the sending goroutine.
type directTransport struct {
	to *Engine
	in *inbound
}

func (d *directTransport) Send(bufs [][]byte, ep netip.AddrPort, local netip.Addr) (int, error) {
	n := 0
	for _, b := range bufs {
		if n == len(d.in.bufs) {
			d.to.processInbound(d.in, n)
			n = 0
		}
		d.in.sizes[n] = copy(d.in.bufs[n], b)
		d.in.eps[n] = outerA
		n++
	}
	if n > 0 {
		d.to.processInbound(d.in, n)
	}
	return len(bufs), nil
}

func (d *directTransport) Receive([][]byte, []int, []netip.AddrPort, []netip.Addr) (int, error) {
	return 0, net.ErrClosed
}
func (d *directTransport) BatchSize() int { return len(d.in.bufs) }
func (d *directTransport) Close() error   { return nil }

// pipelineBench is an established pair whose engine a sends to b through
// k pipelines.
type pipelineBench struct {
	p    *pair
	left atomic.Int64
	idle sync.WaitGroup
	gens []*genAdapter
	dsts []*countingAdapter
}

func newPipelineBench(tb testing.TB, k, batch, size int) *pipelineBench {
	return newFlowBench(tb, k, batch, size, true, 0)
}

// newFlowBench is newPipelineBench with one flow per pipeline unless
// manyFlows, and helpers crypto helpers in each engine (helpers.go).
func newFlowBench(tb testing.TB, k, batch, size int, manyFlows bool, helpers int) *pipelineBench {
	tb.Helper()
	pb := &pipelineBench{p: established(tb, pairOptions{})}
	a, b := pb.p.a.e, pb.p.b.e
	a.helpers, b.helpers = newHelperPool(helpers), newHelperPool(helpers)
	a.startHelpers()
	b.startHelpers()
	payload := make([]byte, size-28) // IPv4 + UDP headers
	for i := range k {
		g := &genAdapter{stepAdapter: stepAdapter{mtu: 1420}, left: &pb.left, idle: &pb.idle, closed: make(chan struct{})}
		for f := range batch {
			// Many flows: each packet of a batch its own source port.
			src := netip.AddrPortFrom(innerA, uint16(10000+i*batch))
			if manyFlows {
				src = netip.AddrPortFrom(innerA, uint16(10000+i*batch+f))
			}
			g.templates = append(g.templates, tuntest.UDPPacket(src, netip.AddrPortFrom(innerB, 2000), payload))
		}
		dst := &countingAdapter{stepAdapter: stepAdapter{mtu: 1420}}
		var bpipe *pipeline
		if i == 0 {
			b.adapter = dst
		} else {
			bpipe = &pipeline{index: i, adapter: dst}
			bpipe.tr.Store(newTransportBox(&directTransport{}))
			b.extra = append(b.extra, bpipe)
		}
		in := newInbound(batch)
		in.pipe = bpipe
		in.fork = b.newFork()
		tr := &directTransport{to: b, in: in}
		if i == 0 {
			a.adapter = g
			a.tr.Store(newTransportBox(tr))
		} else {
			ap := &pipeline{index: i, adapter: g}
			ap.tr.Store(newTransportBox(tr))
			a.extra = append(a.extra, ap)
		}
		pb.gens = append(pb.gens, g)
		pb.dsts = append(pb.dsts, dst)
	}
	a.maxLag = gateLag(a.maxBatch())
	return pb
}

// run hands out batches batches and waits until every pipeline is idle.
func (pb *pipelineBench) run(batches int) {
	a := pb.p.a.e
	pb.left.Store(int64(batches))
	pb.idle.Add(len(pb.gens))
	a.wg.Go(a.readLoop)
	for _, p := range a.extra {
		a.wg.Go(func() { a.readPipe(p) })
	}
	pb.idle.Wait()
}

func (pb *pipelineBench) delivered() int {
	n := 0
	for _, d := range pb.dsts {
		n += d.packets
	}
	return n
}

func BenchmarkPipelines(b *testing.B) {
	const batch = 64
	for _, size := range []int{64, 1420} {
		for _, k := range []int{1, 2} {
			b.Run(fmt.Sprintf("size=%d/pipelines=%d", size, k), func(b *testing.B) {
				pb := newPipelineBench(b, k, batch, size)
				b.SetBytes(int64(batch * size))
				b.ResetTimer()
				pb.run(b.N)
				b.StopTimer()
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "packets/s")
				b.ReportMetric(float64(pb.p.a.e.gateWaits.Load())/float64(b.N), "gatewaits/op")
				if got := pb.delivered(); got != b.N*batch {
					b.Fatalf("delivered %d of %d (drops %v / %v)", got, b.N*batch, pb.p.a.e.DropCounts(), pb.p.b.e.DropCounts())
				}
			})
		}
	}
}

// BenchmarkHelpers is one flow (one pipeline, one peer) with 0 and 1 crypto
// helpers per engine: with 1, engine a's helper seals part of each batch
// while the pipeline seals the rest, and engine b's helper opens part of
// it. On two cores the gain is what the second core adds to one flow.
//
//	go test ./tunnel -run '^$' -bench Helpers -count 6
func BenchmarkHelpers(b *testing.B) {
	const batch = 64
	for _, size := range []int{64, 1420} {
		for _, h := range []int{0, 1} {
			b.Run(fmt.Sprintf("size=%d/helpers=%d", size, h), func(b *testing.B) {
				pb := newFlowBench(b, 1, batch, size, false, h)
				b.SetBytes(int64(batch * size))
				b.ResetTimer()
				pb.run(b.N)
				b.StopTimer()
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "packets/s")
				if got := pb.delivered(); got != b.N*batch {
					b.Fatalf("delivered %d of %d (drops %v / %v)", got, b.N*batch, pb.p.a.e.DropCounts(), pb.p.b.e.DropCounts())
				}
			})
		}
	}
}
