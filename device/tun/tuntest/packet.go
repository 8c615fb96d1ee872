package tuntest

import (
	"encoding/binary"
	"net/netip"
)

// IP and UDP header sizes.
const (
	ipv4HeaderLen = 20 // bytes, without options
	ipv6HeaderLen = 40 // bytes
	udpHeaderLen  = 8  // bytes
	protoUDP      = 17
)

// UDPPacket builds an IPv4 or IPv6 packet (after the family of src) carrying
// one UDP datagram from src to dst, with valid checksums, as a TUN would carry
// it. src and dst must be of the same family.
//
//	IPv4: | ver/ihl | tos | total len | id | flags/frag | ttl | proto | csum | src | dst | UDP |
//	IPv6: | ver/tc/flow | payload len | next hdr | hop limit | src (16) | dst (16) | UDP |
func UDPPacket(src, dst netip.AddrPort, payload []byte) []byte {
	udpLen := udpHeaderLen + len(payload)
	var pkt, udp []byte
	if src.Addr().Is4() {
		pkt = make([]byte, ipv4HeaderLen+udpLen)
		pkt[0] = 0x45
		binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
		pkt[8] = 64
		pkt[9] = protoUDP
		s, d := src.Addr().As4(), dst.Addr().As4()
		copy(pkt[12:], s[:])
		copy(pkt[16:], d[:])
		binary.BigEndian.PutUint16(pkt[10:], ^fold(sum(0, pkt[:ipv4HeaderLen])))
		udp = pkt[ipv4HeaderLen:]
	} else {
		pkt = make([]byte, ipv6HeaderLen+udpLen)
		pkt[0] = 0x60
		binary.BigEndian.PutUint16(pkt[4:], uint16(udpLen))
		pkt[6] = protoUDP
		pkt[7] = 64
		s, d := src.Addr().As16(), dst.Addr().As16()
		copy(pkt[8:], s[:])
		copy(pkt[24:], d[:])
		udp = pkt[ipv6HeaderLen:]
	}
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(udpLen))
	copy(udp[udpHeaderLen:], payload)
	// Pseudo-header (RFC 768, RFC 8200 8.1), then the datagram.
	s := sum(0, src.Addr().AsSlice())
	s = sum(s, dst.Addr().AsSlice())
	s += protoUDP + uint32(udpLen)
	c := ^fold(sum(s, udp))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:], c)
	return pkt
}

// ParseUDP returns the addresses and payload of a UDP packet built like
// UDPPacket's (no IPv4 options, no IPv6 extension headers). ok is false for
// anything else. payload aliases pkt.
func ParseUDP(pkt []byte) (src, dst netip.AddrPort, payload []byte, ok bool) {
	var sa, da netip.Addr
	var udp []byte
	switch {
	case len(pkt) >= ipv4HeaderLen+udpHeaderLen && pkt[0] == 0x45 && pkt[9] == protoUDP:
		sa = netip.AddrFrom4([4]byte(pkt[12:16]))
		da = netip.AddrFrom4([4]byte(pkt[16:20]))
		udp = pkt[ipv4HeaderLen:]
	case len(pkt) >= ipv6HeaderLen+udpHeaderLen && pkt[0]>>4 == 6 && pkt[6] == protoUDP:
		sa = netip.AddrFrom16([16]byte(pkt[8:24]))
		da = netip.AddrFrom16([16]byte(pkt[24:40]))
		udp = pkt[ipv6HeaderLen:]
	default:
		return src, dst, nil, false
	}
	n := int(binary.BigEndian.Uint16(udp[4:]))
	if n < udpHeaderLen || n > len(udp) {
		return src, dst, nil, false
	}
	src = netip.AddrPortFrom(sa, binary.BigEndian.Uint16(udp[0:]))
	dst = netip.AddrPortFrom(da, binary.BigEndian.Uint16(udp[2:]))
	return src, dst, udp[udpHeaderLen:n], true
}

// sum adds b to the ones' complement sum s as big-endian 16-bit words.
func sum(s uint32, b []byte) uint32 {
	for ; len(b) >= 2; b = b[2:] {
		s += uint32(b[0])<<8 | uint32(b[1])
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

// fold folds the carries of s into 16 bits.
func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}
