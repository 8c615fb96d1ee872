//go:build linux

package tunnel

import (
	"flag"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/transport"
)

// sourceAdapter is an endless source of one packet for the engine's send
// loop and a counting sink for its receive loop; Read blocks once closed
// is set, until Close.
type sourceAdapter struct {
	pkt     []byte
	written atomic.Int64
	want    atomic.Int64  // 0: none
	reached chan struct{} // signalled when written reaches want
	done    chan struct{}
	closeMu sync.Once
}

func newSourceAdapter(pkt []byte) *sourceAdapter {
	return &sourceAdapter{pkt: pkt, reached: make(chan struct{}, 1), done: make(chan struct{})}
}

// waitFor waits until n packets more than now were written, or d passed.
func (s *sourceAdapter) waitFor(n int64, d time.Duration) bool {
	select {
	case <-s.reached:
	default:
	}
	s.want.Store(s.written.Load() + n)
	select {
	case <-s.reached:
		return true
	case <-time.After(d):
		return false
	}
}

func (s *sourceAdapter) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if s.pkt == nil {
		<-s.done
		return 0, net.ErrClosed
	}
	select {
	case <-s.done:
		return 0, net.ErrClosed
	default:
	}
	for i := range bufs {
		sizes[i] = copy(bufs[i][offset:], s.pkt)
	}
	return len(bufs), nil
}

func (s *sourceAdapter) Write(bufs [][]byte, offset int) (int, error) {
	if w := s.want.Load(); w > 0 && s.written.Add(int64(len(bufs))) >= w {
		s.want.Store(0)
		select {
		case s.reached <- struct{}{}:
		default:
		}
	} else if w == 0 {
		s.written.Add(int64(len(bufs)))
	}
	return len(bufs), nil
}

func (s *sourceAdapter) BatchSize() int { return 64 }
func (s *sourceAdapter) MTU() int       { return 1420 }
func (s *sourceAdapter) Name() string   { return "src0" }
func (s *sourceAdapter) Close() error {
	s.closeMu.Do(func() { close(s.done) })
	return nil
}

// floodSender sends datagrams from many local ports to one address as fast
// as one goroutine can, until stop.
type floodSender struct {
	conns []*net.UDPConn
	msgs  [][]byte
	sent  atomic.Int64
	stop  chan struct{}
	wg    sync.WaitGroup
}

func startFlood(tb testing.TB, dst netip.AddrPort, msgs [][]byte) *floodSender {
	tb.Helper()
	f := &floodSender{msgs: msgs, stop: make(chan struct{})}
	for range 64 {
		// Another address than the tunnel's: another machine.
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
		if err != nil {
			tb.Fatal(err)
		}
		f.conns = append(f.conns, c)
	}
	f.wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-f.stop:
				return
			default:
			}
			f.conns[i%len(f.conns)].WriteToUDPAddrPort(f.msgs[i%len(f.msgs)], dst)
			f.sent.Add(1)
		}
	})
	tb.Cleanup(f.close)
	return f
}

// randomDatagrams returns n datagrams of 1 to 1500 random bytes.
func randomDatagrams(n int) [][]byte {
	r := rand.New(rand.NewPCG(3, 4))
	out := make([][]byte, n)
	for i := range out {
		b := make([]byte, 1+r.IntN(1500))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		out[i] = b
	}
	return out
}

func (f *floodSender) close() {
	select {
	case <-f.stop:
		return
	default:
	}
	close(f.stop)
	f.wg.Wait()
	for _, c := range f.conns {
		c.Close()
	}
}

// udpPair is two engines over loopback UDP with a session; a sends to b.
type udpPair struct {
	a, b     *Engine
	src, dst *sourceAdapter
	bAddr    netip.AddrPort
	bPub     crypto.PublicKey
}

// floodNoFilter opens BenchmarkFlood's sockets without the socket filter
// warren up attaches, to measure what the filter saves.
var floodNoFilter = flag.Bool("flood-nofilter", false, "BenchmarkFlood: sockets without the WireGuard socket filter")

func newUDPPair(tb testing.TB) *udpPair {
	tb.Helper()
	open := func() *transport.UDP {
		// As warren up opens it: the socket filter drops what cannot be
		// WireGuard messages in the kernel.
		u, err := transport.Listen(transport.Options{WireGuardOnly: !*floodNoFilter})
		if err != nil {
			tb.Skipf("no UDP socket: %v", err)
		}
		return u
	}
	ta, tbr := open(), open()
	ka, _ := crypto.NewPrivateKey(seededRand(1))
	kb, _ := crypto.NewPrivateKey(seededRand(2))
	up := &udpPair{
		src:   newSourceAdapter(ping(innerA, innerB, string(make([]byte, 1372)))),
		dst:   newSourceAdapter(nil),
		bAddr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), tbr.Port()),
		bPub:  kb.PublicKey(),
	}
	aAddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ta.Port())
	up.a = New(up.src, ta, Options{})
	up.b = New(up.dst, tbr, Options{})
	tb.Cleanup(func() { up.a.Close(); up.b.Close() })
	if err := up.a.SetConfig(Config{PrivateKey: ka, Peers: []PeerConfig{{PublicKey: kb.PublicKey(), Endpoint: up.bAddr,
		AllowedIPs: []netip.Prefix{netip.PrefixFrom(innerB, 32)}}}}); err != nil {
		tb.Fatal(err)
	}
	if err := up.b.SetConfig(Config{PrivateKey: kb, Peers: []PeerConfig{{PublicKey: ka.PublicKey(), Endpoint: aAddr,
		AllowedIPs: []netip.Prefix{netip.PrefixFrom(innerA, 32)}}}}); err != nil {
		tb.Fatal(err)
	}
	up.b.Up()
	return up
}

// BenchmarkFlood measures the established tunnel's throughput (ns per
// packet delivered through two engines over loopback UDP) while one
// goroutine floods: nothing, a closed port (the CPU the flooder and the
// kernel take: the control), the responder's port with garbage (the
// audit's mix: random datagrams, initiation and data headers with random
// contents), with random datagrams alone (as a reflection flood of DNS or
// NTP answers), and with valid-mac1 initiations from 64 ports. Compare the
// attacks with the control of the same run: go test -run X -bench Flood
// -benchtime 200000x (-flood-nofilter: without the socket filter).
func BenchmarkFlood(b *testing.B) {
	for _, attack := range []string{"none", "closed-port", "garbage", "random", "initiations"} {
		b.Run("attack="+attack, func(b *testing.B) {
			up := newUDPPair(b)
			var flood *floodSender
			switch attack {
			case "closed-port":
				c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					b.Fatal(err)
				}
				closed := c.LocalAddr().(*net.UDPAddr).AddrPort()
				c.Close()
				flood = startFlood(b, closed, garbageMessages(4096))
			case "garbage":
				flood = startFlood(b, up.bAddr, garbageMessages(4096))
			case "random":
				flood = startFlood(b, up.bAddr, randomDatagrams(4096))
			case "initiations":
				f := newFlooder(b, up.bPub)
				msgs := make([][]byte, 4096)
				for i := range msgs {
					msgs[i] = f.initiation()
				}
				flood = startFlood(b, up.bAddr, msgs)
			}
			// Warm up: the handshake, and the flood under way.
			up.a.Up()
			if !up.dst.waitFor(1000, 20*time.Second) {
				b.Fatalf("no traffic through the tunnel (drops %v)", up.b.DropCounts())
			}
			start := up.dst.written.Load()
			var sent0 int64
			if flood != nil {
				sent0 = flood.sent.Load()
			}
			t0 := time.Now()
			b.ResetTimer()
			if !up.dst.waitFor(int64(b.N), time.Minute) {
				b.Fatalf("tunnel stalled (drops %v)", up.b.DropCounts())
			}
			b.StopTimer()
			el := time.Since(t0).Seconds()
			b.ReportMetric(float64(up.dst.written.Load()-start)/el, "pkts/s")
			if flood != nil {
				b.ReportMetric(float64(flood.sent.Load()-sent0)/el, "flood/s")
				flood.close()
			}
			b.ReportMetric(float64(up.b.Drops(DropCookieReply)), "cookies")
			up.a.Down()
		})
	}
}
