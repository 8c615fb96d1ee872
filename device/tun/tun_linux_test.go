package tun_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/warrenvpn/warren/device/tun"
	"github.com/warrenvpn/warren/device/tun/tuntest"
	"github.com/warrenvpn/warren/internal/netlab"
	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
)

// Addresses of the TUN tests: the TUN carries local, the far end is peer.
var (
	tunLocal4 = netip.MustParsePrefix("198.18.1.1/24")
	tunPeer4  = netip.MustParseAddr("198.18.1.2")
	tunLocal6 = netip.MustParsePrefix("fd00:7761:1::1/64")
	tunPeer6  = netip.MustParseAddr("fd00:7761:1::2")
)

const testOffset = 16 // the engine's offset

// newTestTUN opens a TUN named wtun0 inside a fresh namespace, gives it
// tunLocal4 and tunLocal6 and brings it up.
func newTestTUN(t *testing.T, mtu int) (*netlab.Namespace, *tun.TUN) {
	t.Helper()
	ns := netlabtest.NewNamespace(t)
	var dev *tun.TUN
	err := ns.Do(func() (err error) {
		dev, err = tun.OpenTUN("wtun0", mtu)
		return err
	})
	if err != nil {
		t.Fatalf("OpenTUN: %v", err)
	}
	t.Cleanup(func() { dev.Close() })
	h := ns.Handle()
	link, err := h.LinkByName("wtun0")
	if err != nil {
		t.Fatalf("LinkByName: %v", err)
	}
	for _, p := range []netip.Prefix{tunLocal4, tunLocal6} {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}, Flags: unix.IFA_F_NODAD}
		if err := h.AddrAdd(link, a); err != nil {
			t.Fatalf("AddrAdd %s: %v", p, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		t.Fatalf("LinkSetUp: %v", err)
	}
	if err := ns.WaitLocal(tunLocal6.Addr()); err != nil {
		t.Fatal(err)
	}
	return ns, dev
}

// startReader reads dev in a goroutine and delivers copies of each batch,
// until Read fails; then it sends the error on errc and closes batches.
func startReader(t *testing.T, dev *tun.TUN) (batches <-chan [][]byte, errc <-chan error) {
	bc := make(chan [][]byte, 100)
	ec := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(bc)
		bufs := make([][]byte, dev.BatchSize())
		for i := range bufs {
			bufs[i] = make([]byte, testOffset+65535)
		}
		sizes := make([]int, len(bufs))
		for {
			n, err := dev.Read(bufs, sizes, testOffset)
			batch := make([][]byte, n)
			for i := range n {
				batch[i] = bytes.Clone(bufs[i][testOffset : testOffset+sizes[i]])
			}
			if n > 0 {
				bc <- batch
			}
			if err != nil {
				ec <- err
				return
			}
		}
	}()
	t.Cleanup(func() {
		dev.Close()
		<-done
	})
	return bc, ec
}

// inNamespace runs f inside ns and fails t on error.
func inNamespace(t *testing.T, ns *netlab.Namespace, f func() error) {
	t.Helper()
	if err := ns.Do(f); err != nil {
		t.Fatal(err)
	}
}

func TestTUNWrite(t *testing.T) {
	netlabtest.RequireRoot(t)
	ns, dev := newTestTUN(t, 1420)
	if got := dev.BatchSize(); got != 128 {
		t.Errorf("BatchSize() = %d, want 128 (offloads on)", got)
	}
	tests := []struct {
		name   string
		local  netip.Addr
		peer   netip.Addr
		count  int
		offset int
	}{
		{"ipv4", tunLocal4.Addr(), tunPeer4, 1, testOffset},
		{"ipv4 batch", tunLocal4.Addr(), tunPeer4, 20, testOffset},
		{"ipv6 batch", tunLocal6.Addr(), tunPeer6, 20, testOffset},
		{"minimum headroom", tunLocal4.Addr(), tunPeer4, 3, tun.TUNHeadroom},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var conn *net.UDPConn
			inNamespace(t, ns, func() (err error) {
				conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(tc.local, 0)))
				return err
			})
			defer conn.Close()
			dst := conn.LocalAddr().(*net.UDPAddr).AddrPort()
			src := netip.AddrPortFrom(tc.peer, 5000)
			bufs := make([][]byte, tc.count)
			for i := range bufs {
				pkt := tuntest.UDPPacket(src, dst, fmt.Appendf(nil, "packet %d", i))
				bufs[i] = append(make([]byte, tc.offset), pkt...)
			}
			n, err := dev.Write(bufs, tc.offset)
			if n != tc.count || err != nil {
				t.Fatalf("Write() = %d, %v; want %d, nil", n, err, tc.count)
			}
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 2000)
			for i := range tc.count {
				n, err := conn.Read(buf)
				if err != nil {
					t.Fatalf("receive packet %d: %v", i, err)
				}
				if got, want := string(buf[:n]), fmt.Sprintf("packet %d", i); got != want {
					t.Errorf("received %q, want %q", got, want)
				}
			}
		})
	}
	if _, err := dev.Write([][]byte{make([]byte, 100)}, tun.TUNHeadroom-1); err == nil {
		t.Errorf("Write with offset %d succeeded, want error", tun.TUNHeadroom-1)
	}
}

func TestTUNRead(t *testing.T) {
	netlabtest.RequireRoot(t)
	ns, dev := newTestTUN(t, 1420)
	batches, _ := startReader(t, dev)
	tests := []struct {
		name     string
		peer     netip.Addr
		segments int // UDP GSO segments in one send; 0 for a plain send
	}{
		{"ipv4", tunPeer4, 0},
		{"ipv6", tunPeer6, 0},
		{"ipv4 segments", tunPeer4, 8},
		{"ipv6 segments", tunPeer6, 8},
	}
	const segment = 1000 // bytes
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := netip.AddrPortFrom(tc.peer, uint16(6000+i))
			payload := bytes.Repeat([]byte{byte(i)}, segment*max(tc.segments, 1))
			inNamespace(t, ns, func() error {
				conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
				if err != nil {
					return err
				}
				defer conn.Close()
				if tc.segments > 0 {
					raw, err := conn.SyscallConn()
					if err != nil {
						return err
					}
					var serr error
					raw.Control(func(fd uintptr) {
						serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, segment)
					})
					if serr != nil {
						return fmt.Errorf("UDP_SEGMENT: %w", serr)
					}
				}
				_, err = conn.Write(payload)
				return err
			})
			want := max(tc.segments, 1)
			var got [][]byte
			reads := 0
			timeout := time.After(5 * time.Second)
			for len(got) < want {
				select {
				case batch := <-batches:
					for _, pkt := range batch {
						// Skip the host's own chatter (IPv6 router solicitations, MLD).
						if _, d, p, ok := tuntest.ParseUDP(pkt); ok && d == dst {
							got = append(got, p)
						}
					}
					reads++
				case <-timeout:
					t.Fatalf("received %d of %d packets to %v", len(got), want, dst)
				}
			}
			if !bytes.Equal(bytes.Join(got, nil), payload) {
				t.Errorf("payload differs")
			}
			t.Logf("%d packets in %d reads", len(got), reads)
		})
	}
}

// TestTUNClose covers L7: Close wakes a blocked Read, later calls return
// net.ErrClosed, Close twice is fine, and the interface is gone.
func TestTUNClose(t *testing.T) {
	netlabtest.RequireRoot(t)
	baseline := runtime.NumGoroutine()
	ns, dev := newTestTUN(t, 1420)
	_, errc := startReader(t, dev)
	if err := dev.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) || errors.Is(err, tun.ErrRemoved) {
			t.Errorf("blocked Read after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked after Close")
	}
	if _, err := dev.Write([][]byte{make([]byte, 100)}, testOffset); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close = %v, want net.ErrClosed", err)
	}
	if err := dev.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := ns.Handle().LinkByName("wtun0"); err == nil {
		t.Errorf("wtun0 still exists after Close")
	}
	// The reader is gone once errc delivered; wireguard-go's listeners
	// finish their deferred cleanup just after Close returns.
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > baseline && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > baseline {
		t.Errorf("%d goroutines after Close, %d before Open", n, baseline)
	}
}

// TestTUNRemoved covers the adapter side of L4: the interface deleted from
// outside ends Read with ErrRemoved.
func TestTUNRemoved(t *testing.T) {
	netlabtest.RequireRoot(t)
	ns, dev := newTestTUN(t, 1420)
	_, errc := startReader(t, dev)
	link, err := ns.Handle().LinkByName("wtun0")
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Handle().LinkDel(link); err != nil {
		t.Fatalf("LinkDel: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, tun.ErrRemoved) || !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read after deletion = %v, want ErrRemoved and net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked after the interface was deleted")
	}
}

// TestTUNMTU covers L10 for the adapter: MTU follows the host.
func TestTUNMTU(t *testing.T) {
	netlabtest.RequireRoot(t)
	ns, dev := newTestTUN(t, 1420)
	if got := dev.MTU(); got != 1420 {
		t.Errorf("MTU() = %d, want 1420", got)
	}
	for _, mtu := range []int{1280, 9000} {
		link, err := ns.Handle().LinkByName("wtun0")
		if err != nil {
			t.Fatal(err)
		}
		if err := ns.Handle().LinkSetMTU(link, mtu); err != nil {
			t.Fatalf("LinkSetMTU(%d): %v", mtu, err)
		}
		// The change arrives as a netlink event: wait for it, bounded.
		deadline := time.Now().Add(5 * time.Second)
		for dev.MTU() != mtu && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if got := dev.MTU(); got != mtu {
			t.Errorf("MTU() after set to %d = %d", mtu, got)
		}
	}
}

// TestTUNQueues writes through each queue of a multi-queue TUN and reads
// flows from all of them.
func TestTUNQueues(t *testing.T) {
	netlabtest.RequireRoot(t)
	ns := netlabtest.NewNamespace(t)
	const queues = 4
	var qs []*tun.TUN
	if err := ns.Do(func() (err error) { qs, err = tun.OpenTUNQueues("wtunq", 1420, queues); return err }); err != nil {
		t.Fatalf("OpenTUNQueues: %v", err)
	}
	if len(qs) != queues {
		t.Fatalf("OpenTUNQueues gave %d queues, want %d", len(qs), queues)
	}
	h := ns.Handle()
	link, err := h.LinkByName("wtunq")
	if err != nil {
		t.Fatal(err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: tunLocal4.Addr().AsSlice(), Mask: net.CIDRMask(24, 32)}}
	if err := h.AddrAdd(link, a); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	all := make(chan [][]byte, 100)
	for _, q := range qs {
		batches, _ := startReader(t, q)
		go func() {
			for b := range batches {
				all <- b
			}
		}()
	}

	var conn *net.UDPConn
	inNamespace(t, ns, func() (err error) {
		conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(tunLocal4.Addr(), 0)))
		return err
	})
	defer conn.Close()
	dst := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	for i, q := range qs {
		pkt := tuntest.UDPPacket(netip.AddrPortFrom(tunPeer4, 5000), dst, fmt.Appendf(nil, "queue %d", i))
		if n, err := q.Write([][]byte{append(make([]byte, testOffset), pkt...)}, testOffset); n != 1 || err != nil {
			t.Fatalf("queue %d Write() = %d, %v", i, n, err)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 100)
		n, err := conn.Read(buf)
		if err != nil || string(buf[:n]) != fmt.Sprintf("queue %d", i) {
			t.Fatalf("receive from queue %d = %q, %v", i, buf[:n], err)
		}
	}

	const flows = 16
	inNamespace(t, ns, func() error {
		for i := range flows {
			c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(tunPeer4, uint16(7000+i))))
			if err != nil {
				return err
			}
			c.Write([]byte("flow"))
			c.Close()
		}
		return nil
	})
	seen := make(map[netip.AddrPort]bool)
	timeout := time.After(5 * time.Second)
	for len(seen) < flows {
		select {
		case batch := <-all:
			for _, pkt := range batch {
				if _, d, _, ok := tuntest.ParseUDP(pkt); ok && d.Addr() == tunPeer4 {
					seen[d] = true
				}
			}
		case <-timeout:
			t.Fatalf("read %d of %d flows", len(seen), flows)
		}
	}
}

// BenchmarkTUNWrite writes batches of 64 packets of one UDP flow (which UDP
// GRO coalesces where the kernel has USO) into a TUN; the kernel drops them
// after the write (not local, forwarding off).
func BenchmarkTUNWrite(b *testing.B) {
	for _, size := range []int{64, 1400} {
		b.Run(fmt.Sprintf("udp%d", size), func(b *testing.B) {
			netlabtest.RequireRoot(b)
			ns := netlabtest.NewNamespace(b)
			var dev *tun.TUN
			if err := ns.Do(func() (err error) { dev, err = tun.OpenTUN("wtunb", 1420); return err }); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { dev.Close() })
			link, err := ns.Handle().LinkByName("wtunb")
			if err != nil {
				b.Fatal(err)
			}
			if err := ns.Handle().LinkSetUp(link); err != nil {
				b.Fatal(err)
			}
			const batch = 64
			src := netip.MustParseAddrPort("198.18.1.2:1000")
			dst := netip.MustParseAddrPort("198.18.2.2:2000")
			pkt := tuntest.UDPPacket(src, dst, make([]byte, size))
			bufs := make([][]byte, batch)
			for i := range bufs {
				bufs[i] = make([]byte, testOffset+len(pkt), testOffset+65536)
			}
			b.SetBytes(int64(batch * len(pkt)))
			b.ReportAllocs()
			for b.Loop() {
				for i := range bufs {
					bufs[i] = bufs[i][:testOffset+len(pkt)]
					copy(bufs[i][testOffset:], pkt)
				}
				if _, err := dev.Write(bufs, testOffset); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "packets/s")
		})
	}
}

// TestTUNReadGathers queues small packets before reading: one Read returns
// them together (up to half the batch), in order.
func TestTUNReadGathers(t *testing.T) {
	netlabtest.RequireRoot(t)
	ns, dev := newTestTUN(t, 1420)
	const count = 10
	dst := netip.AddrPortFrom(tunPeer4, 7000)
	inNamespace(t, ns, func() error {
		conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer conn.Close()
		for i := range count {
			if _, err := conn.Write([]byte{byte(i)}); err != nil {
				return err
			}
		}
		return nil
	})
	bufs := make([][]byte, dev.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, testOffset+65535)
	}
	sizes := make([]int, len(bufs))
	var got []byte
	reads := 0
	for len(got) < count && reads < 50 {
		n, err := dev.Read(bufs, sizes, testOffset)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		reads++
		for i := range n {
			if _, d, p, ok := tuntest.ParseUDP(bufs[i][testOffset : testOffset+sizes[i]]); ok && d == dst {
				got = append(got, p...)
			}
		}
	}
	if want := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}; !bytes.Equal(got, want) {
		t.Fatalf("payloads %v, want %v", got, want)
	}
	// The host may queue its own chatter (router solicitations) first.
	if reads > 3 {
		t.Errorf("%d packets took %d reads, want them gathered", count, reads)
	}

	// A Read of one small packet, the common case of request and
	// response traffic, allocates nothing (the virtio-net header once
	// moved to the heap on every read).
	var conn *net.UDPConn
	inNamespace(t, ns, func() (err error) {
		conn, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
		return err
	})
	defer conn.Close()
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := conn.Write([]byte{1}); err != nil {
			t.Fatalf("send: %v", err)
		}
		if _, err := dev.Read(bufs, sizes, testOffset); err != nil {
			t.Fatalf("Read: %v", err)
		}
	})
	if allocs != 0 && !raceEnabled {
		t.Errorf("%v allocations per Read of a small packet, want 0", allocs)
	}
}

// TestTUNWriteCounts writes batches in which the kernel refuses some
// packets (IP version 0: EINVAL): Write counts the others as written, they
// arrive, and the error says what failed.
func TestTUNWriteCounts(t *testing.T) {
	netlabtest.RequireRoot(t)
	ns, dev := newTestTUN(t, 1420)
	var conn *net.UDPConn
	inNamespace(t, ns, func() (err error) {
		conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(tunLocal4.Addr(), 0)))
		return err
	})
	defer conn.Close()
	dst := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	src := netip.AddrPortFrom(tunPeer4, 5000)
	tests := []struct {
		name string
		bad  []bool // which packets are refused
	}{
		{"middle", []bool{false, true, false}},
		{"first and last", []bool{true, false, false, false, true}},
		{"all", []bool{true, true}},
		{"run around a bad one", []bool{false, false, false, true, false, false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bufs := make([][]byte, len(tc.bad))
			var want []string
			for i, bad := range tc.bad {
				pkt := tuntest.UDPPacket(src, dst, fmt.Appendf(nil, "%s %d", tc.name, i))
				if bad {
					pkt[0] = 0x05
				} else {
					want = append(want, fmt.Sprintf("%s %d", tc.name, i))
				}
				bufs[i] = append(make([]byte, testOffset), pkt...)
			}
			n, err := dev.Write(bufs, testOffset)
			if n != len(want) || err == nil || errors.Is(err, net.ErrClosed) {
				t.Fatalf("Write() = %d, %v; want %d and an error", n, err, len(want))
			}
			if !errors.Is(err, unix.EINVAL) {
				t.Errorf("Write() error %v, want EINVAL", err)
			}
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 2000)
			for _, w := range want {
				n, err := conn.Read(buf)
				if err != nil || string(buf[:n]) != w {
					t.Fatalf("received %q, %v; want %q", buf[:n], err, w)
				}
			}
		})
	}
}

// TestTUNReadRest sends one UDP GSO datagram of 8 segments and reads it
// with 3 buffers: Read returns 3, 3 and 2 packets, without error and
// without waiting for the kernel, and no segment is lost. Small buffers make
// Read take the packet into its own buffer, large ones into bufs[0].
func TestTUNReadRest(t *testing.T) {
	netlabtest.RequireRoot(t)
	ns, dev := newTestTUN(t, 1420)
	const segment, segments = 1000, 8
	for i, bufSize := range []int{testOffset + 1500, testOffset + 65535} {
		t.Run(fmt.Sprintf("buffers of %d", bufSize), func(t *testing.T) {
			dst := netip.AddrPortFrom(tunPeer4, uint16(6100+i))
			payload := make([]byte, segment*segments)
			for k := range payload {
				payload[k] = byte(k / 7)
			}
			inNamespace(t, ns, func() error {
				conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
				if err != nil {
					return err
				}
				defer conn.Close()
				raw, err := conn.SyscallConn()
				if err != nil {
					return err
				}
				var serr error
				raw.Control(func(fd uintptr) {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, segment)
				})
				if serr != nil {
					return fmt.Errorf("UDP_SEGMENT: %w", serr)
				}
				_, err = conn.Write(payload)
				return err
			})
			bufs := make([][]byte, 3)
			for k := range bufs {
				bufs[k] = make([]byte, bufSize)
			}
			sizes := make([]int, len(bufs))
			var got []byte
			var counts []int
			// A lost segment would leave Read blocked: read in a
			// goroutine, which the Close in newTestTUN's cleanup ends.
			done := make(chan error, 1)
			go func() {
				for len(got) < len(payload) {
					n, err := dev.Read(bufs, sizes, testOffset)
					if err != nil {
						done <- fmt.Errorf("Read: %d, %w", n, err)
						return
					}
					ours := 0
					for k := range n {
						if _, d, p, ok := tuntest.ParseUDP(bufs[k][testOffset : testOffset+sizes[k]]); ok && d == dst {
							got = append(got, p...)
							ours++
						}
					}
					if ours > 0 { // not the host's own chatter
						counts = append(counts, ours)
					}
				}
				done <- nil
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("Read blocked: segments lost")
			}
			if !bytes.Equal(got, payload) {
				t.Fatalf("received %d of %d payload bytes, or out of order", len(got), len(payload))
			}
			if fmt.Sprint(counts) != "[3 3 2]" {
				t.Errorf("packets per Read %v, want [3 3 2] (one GSO packet split over three reads)", counts)
			}
		})
	}
}
