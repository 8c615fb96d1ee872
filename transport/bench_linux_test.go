//go:build linux

package transport

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	benchSize  = 1400 // bytes per datagram
	benchBatch = 64   // datagrams per Send
)

// benchModes are the transports compared: with offloads, without, and a
// naive net.UDPConn loop with one datagram per system call.
var benchModes = []struct {
	name    string
	naive   bool
	offload bool
}{
	{"gso-gro", false, true},
	{"mmsg-only", false, false},
	{"naive", true, false},
}

// benchPeer is a sender or receiver under benchmark.
type benchPeer interface {
	send(bufs [][]byte, ep netip.AddrPort) error
	receive(bufs [][]byte, sizes []int, eps []netip.AddrPort, locals []netip.Addr) (int, error)
	port() uint16
	close()
}

type udpPeer struct{ *UDP }

func (p udpPeer) send(bufs [][]byte, ep netip.AddrPort) error {
	_, err := p.Send(bufs, ep, netip.Addr{})
	return err
}
func (p udpPeer) receive(bufs [][]byte, sizes []int, eps []netip.AddrPort, locals []netip.Addr) (int, error) {
	return p.Receive(bufs, sizes, eps, locals)
}
func (p udpPeer) port() uint16 { return p.Port() }
func (p udpPeer) close()       { p.Close() }

// naivePeer moves one datagram per system call.
type naivePeer struct{ *net.UDPConn }

func (p naivePeer) send(bufs [][]byte, ep netip.AddrPort) error {
	for _, b := range bufs {
		if _, err := p.WriteToUDPAddrPort(b, ep); err != nil {
			return err
		}
	}
	return nil
}
func (p naivePeer) receive(bufs [][]byte, sizes []int, eps []netip.AddrPort, _ []netip.Addr) (int, error) {
	n, ep, err := p.ReadFromUDPAddrPort(bufs[0])
	sizes[0], eps[0] = n, ep
	if err != nil {
		return 0, err
	}
	return 1, nil
}
func (p naivePeer) port() uint16 { return uint16(p.LocalAddr().(*net.UDPAddr).Port) }
func (p naivePeer) close()       { p.Close() }

func newBenchPeer(b *testing.B, naive, offload bool) benchPeer {
	b.Helper()
	var p benchPeer
	if naive {
		c, err := net.ListenUDP("udp", &net.UDPAddr{})
		if err != nil {
			b.Fatal(err)
		}
		c.SetReadBuffer(socketBufferSize)
		c.SetWriteBuffer(socketBufferSize)
		p = naivePeer{c}
	} else {
		u, err := Listen(Options{BatchSize: benchBatch, DisableOffload: !offload})
		if err != nil {
			b.Fatal(err)
		}
		p = udpPeer{u}
	}
	b.Cleanup(p.close)
	return p
}

func benchBatchBufs() [][]byte {
	bufs := make([][]byte, benchBatch)
	for i := range bufs {
		bufs[i] = datagram(i, benchSize)
	}
	return bufs
}

// BenchmarkSend measures the sending side alone: batches of 64 datagrams of
// 1400 bytes to a loopback port nobody reads (the kernel still builds,
// routes and queues or drops every datagram).
func BenchmarkSend(b *testing.B) {
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			a, sink := newBenchPeer(b, m.naive, m.offload), newBenchPeer(b, m.naive, m.offload)
			dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), sink.port())
			bufs := benchBatchBufs()
			if err := a.send(bufs, dst); err != nil { // allocate the scratch area
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(benchSize * benchBatch)
			start := time.Now()
			for b.Loop() {
				if err := a.send(bufs, dst); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b, b.N*benchBatch, time.Since(start))
		})
	}
}

// BenchmarkLoopback measures datagrams received per second over IPv4
// loopback while another goroutine floods batches of 64 x 1400 bytes; b.N
// counts received datagrams (datagrams the receiver was too slow for are
// lost, as on a real link).
func BenchmarkLoopback(b *testing.B) {
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			a, r := newBenchPeer(b, m.naive, m.offload), newBenchPeer(b, m.naive, m.offload)
			dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), r.port())
			var stop atomic.Bool
			var wg sync.WaitGroup
			wg.Go(func() {
				bufs := benchBatchBufs()
				for !stop.Load() {
					if err := a.send(bufs, dst); err != nil {
						return
					}
				}
			})
			rbufs := make([][]byte, benchBatch)
			for i := range rbufs {
				rbufs[i] = make([]byte, BufferSize)
			}
			sizes, eps, locals := make([]int, benchBatch), make([]netip.AddrPort, benchBatch), make([]netip.Addr, benchBatch)
			b.ReportAllocs()
			b.SetBytes(benchSize)
			b.ResetTimer()
			start := time.Now()
			for got := 0; got < b.N; {
				n, err := r.receive(rbufs, sizes, eps, locals)
				if err != nil {
					b.Fatal(err)
				}
				got += n
			}
			elapsed := time.Since(start)
			b.StopTimer()
			stop.Store(true)
			wg.Wait()
			reportRate(b, b.N, elapsed)
		})
	}
}

func reportRate(b *testing.B, datagrams int, d time.Duration) {
	s := d.Seconds()
	b.ReportMetric(float64(datagrams)/s, "dgrams/s")
	b.ReportMetric(float64(datagrams)*benchSize*8/s/1e9, "Gbit/s")
}
