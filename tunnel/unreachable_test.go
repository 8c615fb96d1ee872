package tunnel

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// checkUnreachable verifies reply, parsed with code independent of the
// builder's, as the host unreachable reply to pkt (N10): addresses
// swapped, ICMP type 3 code 1 or ICMPv6 type 1 code 3, checksums that
// verify, and a quote that is a prefix of pkt.
func checkUnreachable(t testing.TB, reply, pkt []byte) {
	t.Helper()
	var (
		body     []byte
		src, dst netip.Addr
		m        *icmp.Message
		err      error
	)
	if pkt[0]>>4 == 4 {
		h, herr := ipv4.ParseHeader(reply)
		if herr != nil {
			t.Fatalf("reply IPv4 header: %v", herr)
		}
		if h.Protocol != protoICMP || h.TotalLen != len(reply) || refChecksum(reply[:20], 0) != 0xffff {
			t.Fatalf("reply IPv4 header = %+v, checksum sum %#x", h, refChecksum(reply[:20], 0))
		}
		src, dst = netipOf(reply[12:16]), netipOf(reply[16:20])
		if refChecksum(reply[20:], 0) != 0xffff {
			t.Errorf("reply ICMP checksum does not verify")
		}
		m, err = icmp.ParseMessage(protoICMP, reply[20:])
		if err == nil && (m.Type != ipv4.ICMPTypeDestinationUnreachable || m.Code != 1) {
			t.Errorf("reply ICMP type %v code %d, want destination unreachable code 1 (host)", m.Type, m.Code)
		}
		if want := netipOf(pkt[16:20]); src != want {
			t.Errorf("reply from %v, want %v", src, want)
		}
		if want := netipOf(pkt[12:16]); dst != want {
			t.Errorf("reply to %v, want %v", dst, want)
		}
	} else {
		h, herr := ipv6.ParseHeader(reply)
		if herr != nil {
			t.Fatalf("reply IPv6 header: %v", herr)
		}
		if h.NextHeader != protoICMPv6 || h.PayloadLen != len(reply)-ipv6HeaderSize {
			t.Fatalf("reply IPv6 header = %+v", h)
		}
		src, dst = netipOf(reply[8:24]), netipOf(reply[24:40])
		if refChecksum(reply[40:], pseudoSum(reply)) != 0xffff {
			t.Errorf("reply ICMPv6 checksum does not verify")
		}
		m, err = icmp.ParseMessage(protoICMPv6, reply[40:])
		if err == nil && (m.Type != ipv6.ICMPTypeDestinationUnreachable || m.Code != 3) {
			t.Errorf("reply ICMPv6 type %v code %d, want destination unreachable code 3 (address)", m.Type, m.Code)
		}
		if want := netipOf(pkt[24:40]); src != want {
			t.Errorf("reply from %v, want %v", src, want)
		}
		if want := netipOf(pkt[8:24]); dst != want {
			t.Errorf("reply to %v, want %v", dst, want)
		}
	}
	if err != nil {
		t.Fatalf("reply ICMP message: %v", err)
	}
	du, ok := m.Body.(*icmp.DstUnreach)
	if !ok {
		t.Fatalf("reply body %T, want destination unreachable", m.Body)
	}
	body = du.Data
	if len(body) == 0 || !bytes.HasPrefix(pkt, body) {
		t.Errorf("reply quotes %d bytes that are not a prefix of the packet", len(body))
	}
}

// pseudoSum is the sum of the IPv6 pseudo-header of the ICMPv6 message in
// pkt (RFC 8200 8.1), with code independent of the builder's.
func pseudoSum(pkt []byte) uint32 {
	var s uint32
	for i := 8; i < 40; i += 2 {
		s += uint32(pkt[i])<<8 | uint32(pkt[i+1])
	}
	return s + uint32(len(pkt)-ipv6HeaderSize) + protoICMPv6
}

// TestN10HostUnreachable: a packet to an address no peer's allowed IPs
// hold is dropped as no_route and answered through the adapter with host
// unreachable (IPv4) or address unreachable (IPv6), from the address it
// was going to; an ICMP error, a later fragment or a multicast destination
// is not answered; the replies keep the kernel's rate, a burst of 50 and
// then 1000 a second.
func TestN10HostUnreachable(t *testing.T) {
	p := established(t, pairOptions{})
	p.tick(time.Second) // a full bucket
	p.a.ad.written()
	nowhere, nowhere6 := netip.MustParseAddr("198.19.9.9"), netip.MustParseAddr("fd00:7761:9::9")

	for _, pkt := range [][]byte{
		testPacket(innerA, nowhere, 1420, true),
		testPacket(innerA, nowhere, 100, false),
		testIPv4(20, 20, 6, 0, innerA.String(), nowhere.String()),
		testPacket(inner6A, nowhere6, 1420, true),
		testIPv6(48, 58, inner6A.String(), nowhere6.String(), 128), // echo request
	} {
		drops := p.a.e.Drops(DropNoRoute)
		p.a.ad.inject(pkt)
		p.run()
		if got := p.a.e.Drops(DropNoRoute) - drops; got != 1 {
			t.Errorf("no_route drops = %d, want 1", got)
		}
		got := p.a.ad.written()
		if len(got) != 1 {
			t.Fatalf("a's adapter got %d packets for a %d-byte IPv%d packet without a peer, want 1 reply", len(got), len(pkt), pkt[0]>>4)
		}
		checkUnreachable(t, got[0], pkt)
		if len(got[0]) > icmpv6MaxReply || pkt[0]>>4 == 4 && len(got[0]) > icmpv4MaxReply {
			t.Errorf("reply of %d bytes, over the RFC limit", len(got[0]))
		}
	}
	if got := p.b.ad.written(); len(got) != 0 {
		t.Errorf("b got %d packets, want none", len(got))
	}

	for name, pkt := range map[string][]byte{
		"ICMP error":          testIPv4(60, 20, protoICMP, 0, innerA.String(), nowhere.String(), 3, 1),
		"ICMPv6 error":        testIPv6(80, 58, inner6A.String(), nowhere6.String(), 1, 3),
		"later fragment":      testIPv4(60, 20, 17, 1, innerA.String(), nowhere.String()),
		"multicast":           testIPv4(60, 20, 17, 0, innerA.String(), "239.1.2.3"),
		"multicast IPv6":      testIPv6(60, 17, inner6A.String(), "ff02::1"),
		"unspecified source":  testIPv4(60, 20, 17, 0, "0.0.0.0", nowhere.String()),
		"short IPv4":          testIPv4(60, 20, 17, 0, innerA.String(), nowhere.String())[:19],
		"neither IPv4 nor v6": {0x10, 1, 2, 3},
	} {
		p.a.ad.inject(pkt)
		p.run()
		if got := p.a.ad.written(); len(got) != 0 {
			t.Errorf("%s: a's adapter got %d packets, want no reply", name, len(got))
		}
	}

	t.Run("rate", func(t *testing.T) {
		p.tick(time.Second)
		p.a.ad.written()
		pkt := testPacket(innerA, nowhere, 100, true)
		for range 200 {
			p.a.ad.inject(pkt)
		}
		p.run()
		if got := len(p.a.ad.written()); got != icmpUnreachableBurst {
			t.Errorf("200 packets at once: %d replies, want the burst of %d", got, icmpUnreachableBurst)
		}
		p.clock.advance(10 * time.Millisecond)
		for range 200 {
			p.a.ad.inject(pkt)
		}
		p.run()
		if got := len(p.a.ad.written()); got != 10 {
			t.Errorf("200 more 10 ms later: %d replies, want 10", got)
		}
	})
}

// TestN10UnreachableAllocs: answering a packet without a peer allocates
// nothing once the engine's reply buffers are made.
func TestN10UnreachableAllocs(t *testing.T) {
	p := established(t, pairOptions{})
	p.a.ad.discard = true
	e := p.a.e
	o := newOutbound(16)
	for i, pkt := range [][]byte{
		testPacket(innerA, netip.MustParseAddr("198.19.9.9"), 1420, true),
		testPacket(inner6A, netip.MustParseAddr("fd00:7761:9::9"), 1420, true),
	} {
		o.sizes[i] = copy(o.bufs[i][Offset:], pkt)
	}
	run := func() {
		p.clock.advance(time.Second)
		e.processOutbound(o, 2)
	}
	run()
	if a := testing.AllocsPerRun(100, run); a != 0 {
		t.Errorf("%v allocations per batch, want 0", a)
	}
	if got := e.Drops(DropNoRoute); got != 2*(1+1+100) { // AllocsPerRun warms up once
		t.Errorf("no_route = %d, want 204", got)
	}
}

// FuzzWriteUnreachable feeds arbitrary packets and buffer sizes to the
// host unreachable builder: it never panics, never writes past the length
// it returns, answers only what errorDue allows, and any reply it writes
// verifies.
func FuzzWriteUnreachable(f *testing.F) {
	f.Add(testIPv4(100, 24, 17, 0, "198.18.0.1", "198.19.0.2"), uint16(1280))
	f.Add(testIPv4(28, 20, protoICMP, 0, "198.18.0.1", "198.19.0.2", 8), uint16(40))
	f.Add(testIPv6(1500, 17, "fd00:7761::1", "fd00:7761:1::2"), uint16(1280))
	f.Add(testIPv6(100, 0, "fd00:7761::1", "fd00:7761:1::2", 58, 0, 0, 0, 0, 0, 0, 0, 1), uint16(200))
	f.Fuzz(func(t *testing.T, pkt []byte, dstLen uint16) {
		dst := make([]byte, int(dstLen)%(icmpv6MaxReply+1)+16)
		for i := range dst {
			dst[i] = 0xa5
		}
		n := writeUnreachable(dst[:len(dst)-16], pkt)
		for _, b := range dst[n:] {
			if b != 0xa5 {
				t.Fatalf("writeUnreachable wrote past the %d bytes it returned", n)
			}
		}
		if n == 0 {
			return
		}
		if _, total := errorDue(pkt); total == 0 {
			t.Fatalf("writeUnreachable answered a packet errorDue refuses")
		}
		checkUnreachable(t, dst[:n], pkt)
	})
}
