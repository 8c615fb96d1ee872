package tunnel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/warrenvpn/warren/uapi"
)

// pmtuTransport wraps a test transport with a path MTU: a datagram whose
// outer IP packet would exceed mtu fails with an error carrying route, as
// the kernel fails it with EMSGSIZE (transport.PathMTUError); PathMTU
// reports route, as the kernel's route lookup does.
type pmtuTransport struct {
	Transport
	mtu     atomic.Int32 // outer path MTU, bytes; 0: none
	route   atomic.Int32 // what the kernel reports, bytes
	queries atomic.Int32 // PathMTU calls
}

type fakePathMTUError struct{ mtu int }

func (e fakePathMTUError) Error() string { return fmt.Sprintf("message too long (path MTU %d)", e.mtu) }
func (e fakePathMTUError) PathMTU() int  { return e.mtu }
func (e fakePathMTUError) Unwrap() error { return syscall.EMSGSIZE }

func (t *pmtuTransport) Send(bufs [][]byte, ep netip.AddrPort, local netip.Addr) (int, error) {
	mtu := int(t.mtu.Load())
	sent := 0
	var errs []error
	for _, b := range bufs {
		if mtu > 0 && len(b)+ipv4HeaderSize+udpHeaderSize > mtu {
			errs = append(errs, fakePathMTUError{int(t.route.Load())})
			continue
		}
		n, err := t.Transport.Send([][]byte{b}, ep, local)
		sent += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return sent, errors.Join(errs...)
}

func (t *pmtuTransport) PathMTU(ep netip.AddrPort) (int, error) {
	t.queries.Add(1)
	return int(t.route.Load()), nil
}

// narrow makes the path from n to its peer mtu bytes wide, and returns the
// transport that enforces it.
func (n *node) narrow(mtu int) *pmtuTransport {
	w := &pmtuTransport{Transport: n.tr}
	w.mtu.Store(int32(mtu))
	w.route.Store(int32(mtu))
	n.e.tr.Store(newTransportBox(w))
	return w
}

// testPacket returns an IPv4 (with or without DF) or IPv6 UDP packet of
// size bytes from src to dst.
func testPacket(src, dst netip.Addr, size int, df bool) []byte {
	if src.Is6() {
		return testIPv6(size, 17, src.String(), dst.String())
	}
	var flags uint16
	if df {
		flags = ipv4FlagDF
	}
	return testIPv4(size, ipv4HeaderSize, 17, flags, src.String(), dst.String())
}

// TestPathMTULowered (PM1, PM2) narrows the path from a to b to 1400
// bytes: the first large packet fails in the transport and lowers the
// peer's MTU to 1400-20-8-32 = 1340; then a packet over it is answered
// through a's adapter with ICMP fragmentation needed (IPv4, DF) or packet
// too big (IPv6) carrying 1340 and counted as path_mtu; one that fits
// arrives, its padding stopping at the limit; an IPv4 packet without DF
// arrives at b in fragments that make up the original.
func TestPathMTULowered(t *testing.T) {
	p := established(t, pairOptions{})
	w := p.a.narrow(1400)
	p.a.ad.inject(testPacket(innerA, innerB, 1420, true))
	p.run()
	if got, errs := p.a.e.Drops(DropPathMTU), p.a.e.Drops(DropSendError); got != 1 || errs != 0 {
		t.Fatalf("path_mtu = %d, send_error = %d, want 1 (the datagram that met the narrow path) and 0", got, errs)
	}
	pr := p.a.peer()
	if inner, outer := pr.pmtu.inner.Load(), pr.pmtu.outer.Load(); inner != 1340 || outer != 1400 {
		t.Fatalf("path MTU = %d inner / %d outer, want 1340 / 1400", inner, outer)
	}
	p.b.ad.written()

	for _, tc := range []struct {
		name string
		src  netip.Addr
		dst  netip.Addr
	}{
		{"IPv4", innerA, innerB},
		{"IPv6", inner6A, inner6B},
	} {
		t.Run(tc.name, func(t *testing.T) {
			drops := p.a.e.Drops(DropPathMTU)
			big := testPacket(tc.src, tc.dst, 1341, true)
			p.a.ad.inject(big)
			p.run()
			if got := p.a.e.Drops(DropPathMTU) - drops; got != 1 {
				t.Errorf("path_mtu drops = %d, want 1", got)
			}
			replies := p.a.ad.written()
			if len(replies) != 1 {
				t.Fatalf("a's adapter got %d packets, want 1 ICMP reply", len(replies))
			}
			checkTooBig(t, replies[0], big, 1340)
			if got := p.b.ad.written(); len(got) != 0 {
				t.Errorf("b got %d packets, want none", len(got))
			}

			fits := testPacket(tc.src, tc.dst, 1335, true) // padding would make it 1344
			p.a.ad.inject(fits)
			p.run()
			if got := p.b.ad.written(); len(got) != 1 || !bytes.Equal(got[0], fits) {
				t.Errorf("b got %d packets, want the 1335-byte one", len(got))
			}
		})
	}
	if got := p.a.e.Drops(DropSendError); got != 0 {
		t.Errorf("send_error = %d, want 0: nothing over the limit reached the transport", got)
	}

	t.Run("IPv4 without DF", func(t *testing.T) {
		pkt := testPacket(innerA, innerB, 3000, false)
		p.a.ad.inject(pkt)
		p.run()
		got := p.b.ad.written()
		if len(got) != 3 {
			t.Fatalf("b got %d packets, want 3 fragments", len(got))
		}
		if re := reassemble(t, got); !bytes.Equal(re, pkt[ipv4HeaderSize:]) {
			t.Errorf("fragments reassemble to %d bytes that differ from the packet's %d", len(re), len(pkt)-ipv4HeaderSize)
		}
		if n := len(p.a.ad.written()); n != 0 {
			t.Errorf("a's adapter got %d packets, want no ICMP reply", n)
		}
	})
	if w.queries.Load() != 0 {
		t.Errorf("PathMTU asked %d times before the probe interval", w.queries.Load())
	}
	st, err := p.a.e.State()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(st.Peers[0].Extras), "[{warren_path_mtu 1400 1340} {warren_local "+outerA.Addr().String()+"}]"; got != want {
		t.Errorf("get=warren extras of the peer = %s, want %s", got, want)
	}
	if st, _ := p.b.e.State(); slices.ContainsFunc(st.Peers[0].Extras, func(x uapi.Extra) bool { return x.Key == "warren_path_mtu" }) {
		t.Errorf("b, not lowered, reports %v", st.Peers[0].Extras)
	}
}

// reassemble checks that frags are IPv4 fragments of one packet, with
// valid header checksums, within their MTU, and returns its data.
func reassemble(t testing.TB, frags [][]byte) []byte {
	t.Helper()
	var data []byte
	for i, f := range frags {
		ihl := int(f[0]&0x0f) * 4
		if refChecksum(f[:ihl], 0) != 0xffff {
			t.Errorf("fragment %d: bad header checksum", i)
		}
		if int(binary.BigEndian.Uint16(f[2:4])) != len(f) {
			t.Errorf("fragment %d: total length %d, %d bytes", i, binary.BigEndian.Uint16(f[2:4]), len(f))
		}
		field := binary.BigEndian.Uint16(f[6:8])
		if off := int(field&ipv4FragOffsetMask) * 8; off != len(data) {
			t.Errorf("fragment %d: offset %d, want %d", i, off, len(data))
		}
		if mf := field&0x2000 != 0; mf != (i < len(frags)-1) {
			t.Errorf("fragment %d: MF %v", i, mf)
		}
		data = append(data, f[ihl:]...)
	}
	return data
}

// TestPathMTUProbe (PM4) lowers the path MTU, then lets the probe interval
// pass: while the kernel still reports the narrow path the limit stays and
// the next probe is an interval later; once it reports the full MTU the
// limit goes and a large packet passes.
func TestPathMTUProbe(t *testing.T) {
	p := established(t, pairOptions{})
	if p.a.e.pmtuProbe != DefaultPathMTUProbe {
		t.Errorf("probe interval = %v, want %v by default", p.a.e.pmtuProbe, DefaultPathMTUProbe)
	}
	p.a.e.pmtuProbe = time.Minute
	w := p.a.narrow(1400)
	p.a.ad.inject(testPacket(innerA, innerB, 1420, true))
	p.run()
	pr := p.a.peer()
	if pr.pmtu.inner.Load() != 1340 {
		t.Fatalf("path MTU not lowered: %d", pr.pmtu.inner.Load())
	}
	send := func() int {
		p.a.ad.inject(testPacket(innerA, innerB, 1420, true))
		p.run()
		p.a.ad.written()
		return len(p.b.ad.written())
	}
	p.clock.advance(59 * time.Second)
	if send() != 0 || w.queries.Load() != 0 {
		t.Fatalf("before the interval: a packet passed or the kernel was asked (%d)", w.queries.Load())
	}
	p.clock.advance(time.Second)
	if send() != 0 || w.queries.Load() != 1 || pr.pmtu.inner.Load() != 1340 {
		t.Fatalf("probe with the path still narrow: %d queries, MTU %d, want 1 and 1340", w.queries.Load(), pr.pmtu.inner.Load())
	}
	p.clock.advance(30 * time.Second)
	if send(); w.queries.Load() != 1 {
		t.Fatalf("probed again after 30 s: %d queries", w.queries.Load())
	}
	// The path widens: the kernel forgets the narrow MTU.
	w.mtu.Store(0)
	w.route.Store(1500)
	p.clock.advance(30 * time.Second)
	if got := send(); got != 1 || pr.pmtu.inner.Load() != 0 || pr.pmtu.outer.Load() != 0 {
		t.Fatalf("after the widening: b got %d packets, MTU %d/%d, want 1 and not lowered", got, pr.pmtu.inner.Load(), pr.pmtu.outer.Load())
	}

	// Narrow again, to 1380, and widen only to 1450: the probe raises the
	// limit to what the kernel reports.
	w.mtu.Store(1380)
	w.route.Store(1380)
	send()
	if pr.pmtu.inner.Load() != 1320 {
		t.Fatalf("path MTU = %d, want 1320", pr.pmtu.inner.Load())
	}
	w.mtu.Store(1450)
	w.route.Store(1450)
	p.clock.advance(time.Minute)
	send()
	if inner, outer := pr.pmtu.inner.Load(), pr.pmtu.outer.Load(); inner != 1390 || outer != 1450 {
		t.Errorf("after a partial widening MTU = %d/%d, want 1390/1450", inner, outer)
	}
}

// TestPathMTURefused (PM4) reports path MTUs below the protocols' minima:
// one that leaves less than IPv4's 68 bytes is not applied at all; one that
// leaves 1240, below IPv6's 1280, applies to IPv4 packets only: an IPv6
// packet over 1280 learns 1280, and one up to 1280 goes in a datagram the
// kernel may fragment where the transport can send one.
func TestPathMTURefused(t *testing.T) {
	p := established(t, pairOptions{})
	pr := p.a.peer()
	w := p.a.narrow(120)
	p.a.ad.inject(testPacket(innerA, innerB, 200, true))
	p.run()
	if got := pr.pmtu.inner.Load(); got != 0 {
		t.Fatalf("a path MTU of 120 was applied: inner %d", got)
	}

	w.mtu.Store(1300)
	w.route.Store(1300)
	p.a.ad.inject(testPacket(innerA, innerB, 1400, true))
	p.run()
	if got := pr.pmtu.inner.Load(); got != 1240 {
		t.Fatalf("inner MTU = %d, want 1240", got)
	}
	p.a.ad.written()
	v4 := testPacket(innerA, innerB, 1300, true)
	p.a.ad.inject(v4)
	p.run()
	if got := p.a.ad.written(); len(got) != 1 {
		t.Fatalf("IPv4 over 1240: %d replies, want 1", len(got))
	} else {
		checkTooBig(t, got[0], v4, 1240)
	}
	v6 := testPacket(inner6A, inner6B, 1300, true)
	p.a.ad.inject(v6)
	p.run()
	if got := p.a.ad.written(); len(got) != 1 {
		t.Fatalf("IPv6 over 1280: %d replies, want 1", len(got))
	} else {
		checkTooBig(t, got[0], v6, 1280) // never below IPv6's minimum
	}
	// Up to 1280 bytes IPv6 must pass (RFC 8200 5): a transport that
	// cannot let the kernel fragment gets the packet as it is, and
	// refuses it.
	drops := p.a.e.Drops(DropPathMTU)
	p.a.ad.inject(testPacket(inner6A, inner6B, 1270, true))
	p.run()
	if got := p.a.ad.written(); len(got) != 0 {
		t.Errorf("IPv6 of 1270 bytes over 1240: %d replies, want none", len(got))
	}
	if got := p.a.e.Drops(DropPathMTU) - drops; got != 1 {
		t.Errorf("IPv6 of 1270 bytes over 1240: path_mtu +%d, want +1 (the transport refuses it)", got)
	}

	// One that can (transport.UDP.SendFragmentable) sends it so.
	f := &fragTransport{pmtuTransport: w}
	p.a.e.tr.Store(newTransportBox(f))
	p.b.ad.written()
	pkt := testPacket(inner6A, inner6B, 1270, true)
	p.a.ad.inject(pkt)
	p.run()
	if got := p.b.ad.written(); len(got) != 1 || !bytes.Equal(got[0], pkt) || f.calls != 1 {
		t.Errorf("IPv6 of 1270 bytes over 1240: b got %d packets, %d fragmentable sends; want the packet, 1", len(got), f.calls)
	}
	if got := p.a.e.Drops(DropPathMTU) - drops; got != 1 {
		t.Errorf("path_mtu +%d, want still +1", got)
	}
	if out := p.a.e.pool.out.Load(); out != 0 {
		t.Errorf("%d pool buffers not returned", out)
	}
}

// fragTransport is a pmtuTransport whose SendFragmentable sends whatever
// the size, as the kernel does when it may fragment.
type fragTransport struct {
	*pmtuTransport
	calls int
}

func (t *fragTransport) SendFragmentable(bufs [][]byte, ep netip.AddrPort, local netip.Addr) (int, error) {
	t.calls++
	return t.pmtuTransport.Transport.Send(bufs, ep, local)
}

// TestPathMTUAllocs pins the handling of packets over the path MTU at zero
// allocations once its scratch is warm: ICMP replies and fragments.
func TestPathMTUAllocs(t *testing.T) {
	p := established(t, pairOptions{})
	p.a.ad.discard = true
	kp, _, _ := p.a.keypairs()
	e := p.a.e
	var s pmtuScratch
	df := testPacket(innerA, innerB, 1500, true)
	v6 := testPacket(inner6A, inner6B, 1500, true)
	noDF := testPacket(innerA, innerB, 4000, false)
	group := make([][]byte, 0, 16)
	run := func() {
		for _, pkt := range [][]byte{df, v6, noDF} {
			if !e.overPathMTU(&s, pkt, 1340) {
				t.Fatal("overPathMTU did not handle the packet")
			}
		}
		group, _ = e.sealFragments(&s, kp, 1340, group[:0])
		e.finishPathMTU(&s, p.a.ad)
	}
	run()
	// Under the race detector sync.Pool drops buffers at random.
	if a := testing.AllocsPerRun(100, run); a != 0 && !raceEnabled {
		t.Errorf("%v allocations per run, want 0", a)
	}
	if out := e.pool.out.Load(); out != 0 {
		t.Errorf("%d pool buffers not returned", out)
	}
}

func TestFragmentIPv4(t *testing.T) {
	withOpts := testIPv4(1000, 32, 17, 0, "198.18.0.1", "198.19.0.2")
	// Options: NOP, a copied one (type 0x83, 7 bytes), one not copied
	// (type 0x07, 3 bytes), NOP.
	copy(withOpts[20:32], []byte{1, 0x83, 7, 1, 2, 3, 4, 5, 0x07, 3, 9, 1})
	binary.BigEndian.PutUint16(withOpts[10:], 0)
	binary.BigEndian.PutUint16(withOpts[10:], ^foldChecksum(sumChecksum(withOpts[:32], 0)))
	fragOfFrag := testIPv4(1000, 20, 17, 0x2000|100, "198.18.0.1", "198.19.0.2") // MF, offset 800
	tests := []struct {
		name  string
		pkt   []byte
		mtu   int
		sizes []int // fragment lengths; nil: not fragmented
	}{
		{"plain", testIPv4(3000, 20, 17, 0, "198.18.0.1", "198.19.0.2"), 1340, []int{1340, 1340, 360}},
		{"exact multiple", testIPv4(20+2*1320, 20, 17, 0, "198.18.0.1", "198.19.0.2"), 1340, []int{1340, 1340}},
		{"options", withOpts, 500, []int{32 + 464, 28 + 472, 28 + 32}},
		{"fragment of a fragment", fragOfFrag, 500, []int{500, 20 + 480, 20 + 20}},
		{"mtu too small", testIPv4(100, 20, 17, 0, "198.18.0.1", "198.19.0.2"), 27, nil},
		{"truncated", testIPv4(1000, 20, 17, 0, "198.18.0.1", "198.19.0.2")[:900], 500, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var frags [][]byte
			for off := 0; ; {
				dst := make([]byte, 1500)
				n, next := fragmentIPv4(dst, tc.pkt, tc.mtu, off)
				if n == 0 {
					break
				}
				if n > tc.mtu {
					t.Errorf("fragment of %d bytes over the MTU %d", n, tc.mtu)
				}
				frags = append(frags, dst[:n])
				if next == 0 {
					break
				}
				off = next
			}
			var sizes []int
			for _, f := range frags {
				sizes = append(sizes, len(f))
			}
			if fmt.Sprint(sizes) != fmt.Sprint(tc.sizes) {
				t.Fatalf("fragment sizes %v, want %v", sizes, tc.sizes)
			}
			if tc.sizes == nil {
				return
			}
			origField := binary.BigEndian.Uint16(tc.pkt[6:8])
			ihl := int(tc.pkt[0]&0x0f) * 4
			var data []byte
			for i, f := range frags {
				fihl := int(f[0]&0x0f) * 4
				if refChecksum(f[:fihl], 0) != 0xffff {
					t.Errorf("fragment %d: bad header checksum", i)
				}
				if !bytes.Equal(f[12:20], tc.pkt[12:20]) || f[9] != tc.pkt[9] || !bytes.Equal(f[4:6], tc.pkt[4:6]) {
					t.Errorf("fragment %d: addresses, protocol or ID differ", i)
				}
				field := binary.BigEndian.Uint16(f[6:8])
				wantOff := int(origField&ipv4FragOffsetMask)*8 + len(data)
				if off := int(field&ipv4FragOffsetMask) * 8; off != wantOff {
					t.Errorf("fragment %d: offset %d, want %d", i, off, wantOff)
				}
				wantMF := i < len(frags)-1 || origField&0x2000 != 0
				if mf := field&0x2000 != 0; mf != wantMF {
					t.Errorf("fragment %d: MF %v, want %v", i, mf, wantMF)
				}
				if i == 0 && !bytes.Equal(f[20:fihl], tc.pkt[20:ihl]) {
					t.Errorf("first fragment's options differ")
				}
				if i > 0 && fihl > 20 && !bytes.Equal(f[20:27], []byte{0x83, 7, 1, 2, 3, 4, 5}) {
					t.Errorf("fragment %d: options % x, want the copied one", i, f[20:fihl])
				}
				data = append(data, f[fihl:]...)
			}
			if !bytes.Equal(data, tc.pkt[ihl:]) {
				t.Errorf("fragments carry %d bytes that differ from the packet's %d", len(data), len(tc.pkt)-ihl)
			}
		})
	}
}

// FuzzFragmentIPv4 feeds arbitrary packets and MTUs to the fragmenter: it
// never panics or writes past its buffer, every fragment fits the MTU and
// has a valid header checksum, and the fragments carry the packet's data
// in order.
func FuzzFragmentIPv4(f *testing.F) {
	f.Add(testIPv4(3000, 20, 17, 0, "198.18.0.1", "198.19.0.2"), uint16(1340))
	f.Add(testIPv4(600, 60, 6, 0x2000|3, "198.18.0.1", "198.19.0.2", 0x83, 7, 1, 2, 3, 4, 5, 0x07, 3), uint16(100))
	f.Fuzz(func(t *testing.T, pkt []byte, mtu uint16) {
		dst := make([]byte, 1500+16)
		var data []byte
		for off, i := 0, 0; i < 10000; i++ {
			for k := range dst {
				dst[k] = 0xa5
			}
			n, next := fragmentIPv4(dst[:1500], pkt, int(mtu), off)
			for _, b := range dst[1500:] {
				if b != 0xa5 {
					t.Fatal("fragmentIPv4 wrote past its buffer")
				}
			}
			if n == 0 {
				return
			}
			frag := dst[:n]
			hdr := int(frag[0]&0x0f) * 4
			if n > int(mtu) || hdr < ipv4HeaderSize || hdr > n || refChecksum(frag[:hdr], 0) != 0xffff {
				t.Fatalf("fragment of %d bytes (header %d) for MTU %d, or a bad checksum", n, hdr, mtu)
			}
			data = append(data, frag[hdr:]...)
			if next == 0 {
				ihl := int(pkt[0]&0x0f) * 4
				total := int(binary.BigEndian.Uint16(pkt[2:4]))
				if !bytes.Equal(data, pkt[ihl:total]) {
					t.Fatalf("fragments carry %d bytes that differ from the packet's %d", len(data), total-ihl)
				}
				return
			}
			if next <= off {
				t.Fatalf("next offset %d after %d", next, off)
			}
			off = next
		}
		t.Fatal("no last fragment")
	})
}
