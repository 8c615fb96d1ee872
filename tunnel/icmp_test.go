package tunnel

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// testIPv4 returns an IPv4 packet of size bytes (header of ihl bytes) from
// src to dst with the given protocol and flags/fragment field, its payload
// starting with payload and then counting bytes.
func testIPv4(size, ihl int, proto byte, frag uint16, src, dst string, payload ...byte) []byte {
	p := make([]byte, size)
	for i := range p {
		p[i] = byte(i)
	}
	p[0] = 0x40 | byte(ihl/4)
	p[1] = 0
	binary.BigEndian.PutUint16(p[2:], uint16(size))
	binary.BigEndian.PutUint16(p[4:], 0x1234)
	binary.BigEndian.PutUint16(p[6:], frag)
	p[8] = 63
	p[9] = proto
	p[10], p[11] = 0, 0
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	for i := 20; i < ihl; i++ {
		p[i] = 1 // NOP options
	}
	binary.BigEndian.PutUint16(p[10:], ^foldChecksum(sumChecksum(p[:ihl], 0)))
	copy(p[ihl:], payload)
	return p
}

// testIPv6 returns an IPv6 packet of size bytes from src to dst whose first
// next header is next and whose payload starts with payload.
func testIPv6(size int, next byte, src, dst string, payload ...byte) []byte {
	p := make([]byte, size)
	for i := range p {
		p[i] = byte(i)
	}
	binary.BigEndian.PutUint32(p[0:], 6<<28|0xabcde)
	binary.BigEndian.PutUint16(p[4:], uint16(size-ipv6HeaderSize))
	p[6] = next
	p[7] = 63
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(p[8:], s[:])
	copy(p[24:], d[:])
	copy(p[ipv6HeaderSize:], payload)
	return p
}

// checkTooBig verifies a reply of writeTooBig against the packet it
// answers: headers, addresses, checksums (with code independent of the
// builder's), the MTU field and the quote.
func checkTooBig(t testing.TB, reply, pkt []byte, mtu int) {
	t.Helper()
	switch pkt[0] >> 4 {
	case 4:
		h, err := ipv4.ParseHeader(reply)
		if err != nil {
			t.Fatalf("reply IPv4 header: %v", err)
		}
		if h.Len != 20 || h.TotalLen != len(reply) || h.Protocol != protoICMP || h.TTL != icmpReplyTTL || h.FragOff != 0 || h.Flags != 0 {
			t.Errorf("reply IPv4 header = %+v", h)
		}
		if !h.Src.Equal(pkt[16:20]) || !h.Dst.Equal(pkt[12:16]) {
			t.Errorf("reply %v -> %v, want %v -> %v", h.Src, h.Dst, netipOf(pkt[16:20]), netipOf(pkt[12:16]))
		}
		if s := refChecksum(reply[:20], 0); s != 0xffff {
			t.Errorf("reply IPv4 header checksum does not verify (sum %#x)", s)
		}
		if s := refChecksum(reply[20:], 0); s != 0xffff {
			t.Errorf("reply ICMP checksum does not verify (sum %#x)", s)
		}
		if len(reply) > icmpv4MaxReply {
			t.Errorf("reply is %d bytes, more than %d", len(reply), icmpv4MaxReply)
		}
		m, err := icmp.ParseMessage(protoICMP, reply[20:])
		if err != nil {
			t.Fatalf("reply ICMP: %v", err)
		}
		du, ok := m.Body.(*icmp.DstUnreach)
		if m.Type != ipv4.ICMPTypeDestinationUnreachable || m.Code != 4 || !ok {
			t.Fatalf("reply ICMP type %v code %d body %T, want destination unreachable code 4", m.Type, m.Code, m.Body)
		}
		if got := int(binary.BigEndian.Uint16(reply[26:28])); got != mtu {
			t.Errorf("next-hop MTU = %d, want %d", got, mtu)
		}
		total := int(binary.BigEndian.Uint16(pkt[2:4]))
		wantQuote := min(total, icmpv4MaxReply-28)
		if len(du.Data) > wantQuote || !bytes.Equal(du.Data, pkt[:len(du.Data)]) {
			t.Errorf("quote is %d bytes, not a prefix of the packet of at most %d", len(du.Data), wantQuote)
		}
	case 6:
		h, err := ipv6.ParseHeader(reply)
		if err != nil {
			t.Fatalf("reply IPv6 header: %v", err)
		}
		if h.NextHeader != protoICMPv6 || h.HopLimit != icmpReplyTTL || h.PayloadLen != len(reply)-40 || h.TrafficClass != 0 || h.FlowLabel != 0 {
			t.Errorf("reply IPv6 header = %+v", h)
		}
		if !h.Src.Equal(pkt[24:40]) || !h.Dst.Equal(pkt[8:24]) {
			t.Errorf("reply %v -> %v, want %v -> %v", h.Src, h.Dst, netipOf(pkt[24:40]), netipOf(pkt[8:24]))
		}
		var pseudo [40]byte
		copy(pseudo[:32], reply[8:40])
		binary.BigEndian.PutUint32(pseudo[32:], uint32(len(reply)-40))
		pseudo[39] = protoICMPv6
		if s := refChecksum(reply[40:], refChecksum(pseudo[:], 0)); s != 0xffff {
			t.Errorf("reply ICMPv6 checksum does not verify (sum %#x)", s)
		}
		if len(reply) > icmpv6MaxReply {
			t.Errorf("reply is %d bytes, more than %d", len(reply), icmpv6MaxReply)
		}
		m, err := icmp.ParseMessage(protoICMPv6, reply[40:])
		if err != nil {
			t.Fatalf("reply ICMPv6: %v", err)
		}
		ptb, ok := m.Body.(*icmp.PacketTooBig)
		if m.Type != ipv6.ICMPTypePacketTooBig || m.Code != 0 || !ok {
			t.Fatalf("reply ICMPv6 type %v code %d body %T, want packet too big", m.Type, m.Code, m.Body)
		}
		if ptb.MTU != mtu {
			t.Errorf("MTU = %d, want %d", ptb.MTU, mtu)
		}
		total := 40 + int(binary.BigEndian.Uint16(pkt[4:6]))
		wantQuote := min(total, icmpv6MaxReply-48)
		if len(ptb.Data) > wantQuote || !bytes.Equal(ptb.Data, pkt[:len(ptb.Data)]) {
			t.Errorf("quote is %d bytes, not a prefix of the packet of at most %d", len(ptb.Data), wantQuote)
		}
	default:
		t.Fatalf("reply to a packet of version %d", pkt[0]>>4)
	}
}

// refChecksum is the RFC 1071 sum in 16-bit words, written apart from the
// builder's so that the test checks one against the other.
func refChecksum(b []byte, s uint32) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return s
}

func netipOf(b []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(b)
	return a
}

func TestWriteTooBig(t *testing.T) {
	const (
		df  = ipv4FlagDF
		tcp = 6
		udp = 17
	)
	a4, b4 := "198.18.0.1", "198.19.0.2"
	a6, b6 := "fd00:7761::1", "fd00:7761:1::2"
	hopByHopThenICMPv6 := []byte{protoICMPv6, 0, 1, 4, 0, 0, 0, 0, 1}  // 8-byte hop-by-hop, then destination unreachable
	firstFragThenICMPv6 := []byte{protoICMPv6, 0, 0, 1, 0, 0, 0, 7, 1} // offset 0, M set, then an error
	laterFrag := []byte{protoICMPv6, 0, 0x05, 0x01, 0, 0, 0, 7}        // offset 160
	authThenTCP := append([]byte{tcp, 4}, make([]byte, 22)...)         // 24-byte AH, then TCP
	hopByHopTruncated := testIPv6(1400, 0, a6, b6, 60, 200)            // header runs past the end
	hopByHopTruncated = hopByHopTruncated[:40+int(binary.BigEndian.Uint16(hopByHopTruncated[4:]))]
	tests := []struct {
		name      string
		pkt       []byte
		mtu       int
		dstLen    int // 0: icmpv6MaxReply
		wantLen   int // 0: no reply
		wantQuote int
	}{
		{name: "IPv4 TCP with DF", pkt: testIPv4(1500, 20, tcp, df, a4, b4), mtu: 1372, wantLen: 576, wantQuote: 548},
		{name: "IPv4 short packet quoted whole", pkt: testIPv4(400, 20, udp, df, a4, b4), mtu: 300, wantLen: 428, wantQuote: 400},
		{name: "IPv4 with options", pkt: testIPv4(1500, 24, tcp, df, a4, b4), mtu: 1280, wantLen: 576, wantQuote: 548},
		{name: "IPv4 ICMP echo", pkt: testIPv4(1500, 20, protoICMP, df, a4, b4, 8, 0), mtu: 1280, wantLen: 576, wantQuote: 548},
		{name: "IPv4 minimum MTU", pkt: testIPv4(100, 20, udp, df, a4, b4), mtu: 68, wantLen: 128, wantQuote: 100},
		{name: "IPv4 dst holds only the minimum quote", pkt: testIPv4(1500, 20, tcp, df, a4, b4), mtu: 1280, dstLen: 56, wantLen: 56, wantQuote: 28},
		{name: "IPv4 trailing bytes past total length ignored", pkt: append(testIPv4(300, 20, udp, df, a4, b4), 9, 9, 9), mtu: 296, wantLen: 328, wantQuote: 300},
		{name: "IPv4 without DF", pkt: testIPv4(1500, 20, tcp, 0, a4, b4), mtu: 1280},
		{name: "IPv4 first fragment", pkt: testIPv4(1500, 20, tcp, df|0x2000, a4, b4), mtu: 1280, wantLen: 576, wantQuote: 548},
		{name: "IPv4 later fragment", pkt: testIPv4(1500, 20, tcp, df|0x00b9, a4, b4), mtu: 1280},
		{name: "IPv4 fits", pkt: testIPv4(1280, 20, tcp, df, a4, b4), mtu: 1280},
		{name: "IPv4 MTU below 68", pkt: testIPv4(1500, 20, tcp, df, a4, b4), mtu: 67},
		{name: "IPv4 MTU above 65535", pkt: testIPv4(1500, 20, tcp, df, a4, b4), mtu: 65536},
		{name: "IPv4 ICMP error", pkt: testIPv4(1500, 20, protoICMP, df, a4, b4, 3, 4), mtu: 1280},
		{name: "IPv4 ICMP time exceeded", pkt: testIPv4(1500, 20, protoICMP, df, a4, b4, 11, 0), mtu: 1280},
		{name: "IPv4 source unspecified", pkt: testIPv4(1500, 20, tcp, df, "0.0.0.0", b4), mtu: 1280},
		{name: "IPv4 source loopback", pkt: testIPv4(1500, 20, tcp, df, "127.0.0.1", b4), mtu: 1280},
		{name: "IPv4 source multicast", pkt: testIPv4(1500, 20, tcp, df, "224.0.0.1", b4), mtu: 1280},
		{name: "IPv4 destination multicast", pkt: testIPv4(1500, 20, udp, df, a4, "239.1.2.3"), mtu: 1280},
		{name: "IPv4 destination broadcast", pkt: testIPv4(1500, 20, udp, df, a4, "255.255.255.255"), mtu: 1280},
		{name: "IPv4 truncated", pkt: testIPv4(1500, 20, tcp, df, a4, b4)[:1400], mtu: 1280},
		{name: "IPv4 IHL below 5", pkt: func() []byte { p := testIPv4(1500, 20, tcp, df, a4, b4); p[0] = 0x44; return p }(), mtu: 1280},
		{name: "IPv4 header only", pkt: testIPv4(20, 20, tcp, df, a4, b4)[:19], mtu: 68},
		{name: "IPv4 dst too small", pkt: testIPv4(1500, 20, tcp, df, a4, b4), mtu: 1280, dstLen: 55},

		{name: "IPv6 UDP", pkt: testIPv6(1500, udp, a6, b6), mtu: 1280, wantLen: 1280, wantQuote: 1232},
		{name: "IPv6 MTU 1300", pkt: testIPv6(1400, tcp, a6, b6), mtu: 1300, wantLen: 1280, wantQuote: 1232},
		{name: "IPv6 MTU 1280", pkt: testIPv6(1281, tcp, a6, b6), mtu: 1280, wantLen: 1280, wantQuote: 1232},
		{name: "IPv6 link-local", pkt: testIPv6(1500, tcp, "fe80::1", "fe80::2"), mtu: 1400, wantLen: 1280, wantQuote: 1232},
		{name: "IPv6 ICMPv6 echo", pkt: testIPv6(1500, protoICMPv6, a6, b6, 128), mtu: 1280, wantLen: 1280, wantQuote: 1232},
		{name: "IPv6 ICMPv6 error", pkt: testIPv6(1500, protoICMPv6, a6, b6, 1), mtu: 1280},
		{name: "IPv6 ICMPv6 packet too big", pkt: testIPv6(1500, protoICMPv6, a6, b6, 2), mtu: 1280},
		{name: "IPv6 hop-by-hop then ICMPv6 error", pkt: testIPv6(1500, 0, a6, b6, hopByHopThenICMPv6...), mtu: 1280},
		{name: "IPv6 first fragment of ICMPv6 error", pkt: testIPv6(1500, 44, a6, b6, firstFragThenICMPv6...), mtu: 1280},
		{name: "IPv6 later fragment", pkt: testIPv6(1500, 44, a6, b6, laterFrag...), mtu: 1280, wantLen: 1280, wantQuote: 1232},
		{name: "IPv6 authentication header then TCP", pkt: testIPv6(1500, 51, a6, b6, authThenTCP...), mtu: 1280, wantLen: 1280, wantQuote: 1232},
		{name: "IPv6 extension header past the end", pkt: hopByHopTruncated, mtu: 1280},
		{name: "IPv6 dst holds only the header", pkt: testIPv6(1500, udp, a6, b6), mtu: 1280, dstLen: 88, wantLen: 88, wantQuote: 40},
		{name: "IPv6 dst too small", pkt: testIPv6(1500, udp, a6, b6), mtu: 1280, dstLen: 87},
		{name: "IPv6 fits", pkt: testIPv6(1400, udp, a6, b6), mtu: 1400},
		{name: "IPv6 MTU below 1280", pkt: testIPv6(1500, udp, a6, b6), mtu: 1279},
		{name: "IPv6 source unspecified", pkt: testIPv6(1500, udp, "::", b6), mtu: 1280},
		{name: "IPv6 source loopback", pkt: testIPv6(1500, udp, "::1", b6), mtu: 1280},
		{name: "IPv6 source multicast", pkt: testIPv6(1500, udp, "ff02::1", b6), mtu: 1280},
		{name: "IPv6 destination multicast", pkt: testIPv6(1500, udp, a6, "ff05::2"), mtu: 1280},
		{name: "IPv6 truncated", pkt: testIPv6(1500, udp, a6, b6)[:1400], mtu: 1280},
		{name: "IPv6 jumbo payload length 0", pkt: func() []byte { p := testIPv6(1500, 0, a6, b6); p[4], p[5] = 0, 0; return p }(), mtu: 1280},
		{name: "IPv6 header only", pkt: testIPv6(40, udp, a6, b6)[:39], mtu: 1280},

		{name: "empty", pkt: nil, mtu: 1280},
		{name: "version 5", pkt: func() []byte { p := testIPv4(1500, 20, tcp, df, a4, b4); p[0] = 0x55; return p }(), mtu: 1280},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dstLen := tc.dstLen
			if dstLen == 0 {
				dstLen = icmpv6MaxReply
			}
			dst := make([]byte, dstLen)
			before := bytes.Clone(tc.pkt)
			n := writeTooBig(dst, tc.pkt, tc.mtu)
			if !bytes.Equal(tc.pkt, before) {
				t.Errorf("writeTooBig changed the packet")
			}
			if n != tc.wantLen {
				t.Fatalf("writeTooBig(%d-byte dst, %d-byte packet, %d) = %d, want %d", dstLen, len(tc.pkt), tc.mtu, n, tc.wantLen)
			}
			if n == 0 {
				return
			}
			checkTooBig(t, dst[:n], tc.pkt, tc.mtu)
			hdr := ipv4HeaderSize
			if tc.pkt[0]>>4 == 6 {
				hdr = ipv6HeaderSize
			}
			if got := n - hdr - icmpHeaderSize; got != tc.wantQuote {
				t.Errorf("quote = %d bytes, want %d", got, tc.wantQuote)
			}
		})
	}
}

// TestWriteTooBigAllocs pins the builder at zero allocations: it runs once
// per oversize packet.
func TestWriteTooBigAllocs(t *testing.T) {
	pkts := [][]byte{
		testIPv4(1500, 20, 6, ipv4FlagDF, "198.18.0.1", "198.19.0.2"),
		testIPv6(1500, 17, "fd00:7761::1", "fd00:7761:1::2"),
	}
	dst := make([]byte, icmpv6MaxReply)
	for _, p := range pkts {
		if a := testing.AllocsPerRun(100, func() { writeTooBig(dst, p, 1280) }); a != 0 {
			t.Errorf("writeTooBig of IPv%d: %v allocations, want 0", p[0]>>4, a)
		}
	}
}

func BenchmarkWriteTooBig(b *testing.B) {
	for _, tc := range []struct {
		name string
		pkt  []byte
	}{
		{"IPv4", testIPv4(1500, 20, 6, ipv4FlagDF, "198.18.0.1", "198.19.0.2")},
		{"IPv6", testIPv6(1500, 17, "fd00:7761::1", "fd00:7761:1::2")},
	} {
		b.Run(tc.name, func(b *testing.B) {
			dst := make([]byte, icmpv6MaxReply)
			b.ReportAllocs()
			for b.Loop() {
				if writeTooBig(dst, tc.pkt, 1280) == 0 {
					b.Fatal("no reply")
				}
			}
		})
	}
}

// FuzzWriteTooBig feeds arbitrary packets, MTUs and buffer sizes to the
// builder: it never panics, never writes past the length it returns, and
// any reply it writes verifies (checksums, addresses, MTU, a quote that is
// a prefix of the packet within the RFC limits).
func FuzzWriteTooBig(f *testing.F) {
	f.Add(testIPv4(1500, 20, 6, ipv4FlagDF, "198.18.0.1", "198.19.0.2"), uint16(1280), uint16(1280))
	f.Add(testIPv4(600, 24, protoICMP, ipv4FlagDF, "198.18.0.1", "198.19.0.2", 8), uint16(576), uint16(100))
	f.Add(testIPv6(1500, 17, "fd00:7761::1", "fd00:7761:1::2"), uint16(1280), uint16(1280))
	f.Add(testIPv6(1500, 0, "fd00:7761::1", "fd00:7761:1::2", 44, 0, 0, 0, 0, 0, 0, 0, 58, 0, 0, 1, 0, 0, 0, 0, 128), uint16(1400), uint16(1280))
	f.Fuzz(func(t *testing.T, pkt []byte, mtu, dstLen uint16) {
		dst := make([]byte, int(dstLen)%(icmpv6MaxReply+1)+16)
		for i := range dst {
			dst[i] = 0xa5
		}
		n := writeTooBig(dst[:len(dst)-16], pkt, int(mtu))
		for _, b := range dst[len(dst)-16:] {
			if b != 0xa5 {
				t.Fatalf("writeTooBig wrote past its buffer")
			}
		}
		if n == 0 {
			return
		}
		for _, b := range dst[n:] {
			if b != 0xa5 {
				t.Fatalf("writeTooBig wrote past the %d bytes it returned", n)
			}
		}
		checkTooBig(t, dst[:n], pkt, int(mtu))
	})
}
