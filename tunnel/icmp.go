package tunnel

import "encoding/binary"

// ICMP replies that tell an inner host its packet did not fit the path to a
// peer: "fragmentation needed and DF set" for IPv4 (RFC 792, RFC 1191) and
// "packet too big" for IPv6 (RFC 4443 3.2, RFC 8201). The engine writes
// them back through the adapter so that the host's TCP lowers its MSS.
//
// IPv4 reply (RFC 792, next-hop MTU per RFC 1191 4):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| IPv4 header, 20 bytes, protocol 1, source = original dest,    |
//	| destination = original source                                 |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   Type = 3    |   Code = 4    |          Checksum             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           Unused = 0          |         Next-Hop MTU          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  original datagram, as much as fits in 576 bytes in all       |
//	|  (RFC 1812 4.3.2.3)                                           |
//
// IPv6 reply (RFC 4443 3.2):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| IPv6 header, 40 bytes, next header 58, source = original      |
//	| destination, destination = original source                    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   Type = 2    |   Code = 0    |          Checksum             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                             MTU                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  original packet, as much as fits in 1280 bytes in all        |
//	|  (RFC 4443 2.4 (c))                                           |
//
// The reply's source is the address the original packet was going to. The
// host accepts it: that address routes through the tunnel, so reverse path
// filtering passes, and the kernel matches the error to its socket by the
// quoted header alone. The tunnel interface's own address would not do: a
// packet arriving with one of the host's own addresses as its source is a
// martian and dropped.
const (
	icmpHeaderSize      = 8    // type, code, checksum and 4 bytes (unused + MTU, or MTU), bytes
	ipv4HeaderSize      = 20   // without options, bytes
	ipv6HeaderSize      = 40   // bytes
	icmpv4MaxReply      = 576  // whole reply, RFC 1812 4.3.2.3, bytes
	icmpv6MaxReply      = 1280 // whole reply, RFC 4443 2.4 (c): the IPv6 minimum MTU, bytes
	ipv4MinMTU          = 68   // RFC 791, bytes
	ipv6MinMTU          = 1280 // RFC 8200 5, bytes
	icmpReplyTTL        = 64   // hop limit of the replies
	protoICMP           = 1
	protoICMPv6         = 58
	icmpDestUnreachable = 3 // ICMP type
	icmpFragNeeded      = 4 // ICMP code of type 3
	icmpv6PacketTooBig  = 2 // ICMPv6 type
	ipv4FlagDF          = 0x4000
	ipv4FragOffsetMask  = 0x1fff
)

// writeTooBig writes into dst the reply that tells the sender of the inner
// packet pkt that it exceeds mtu, and returns the reply's length, or 0 when
// no reply is due. It allocates nothing and keeps no reference to dst or
// pkt; dst must not overlap pkt.
//
// For IPv4 the reply is ICMP type 3 code 4 (fragmentation needed) carrying
// mtu as the next-hop MTU; for IPv6 ICMPv6 type 2 (packet too big) carrying
// mtu. It quotes as much of pkt as fits in 576 bytes (IPv4) or 1280 bytes
// (IPv6) in all, and less when dst is shorter: a dst of icmpv6MaxReply bytes
// always suffices.
//
// No reply is due (RFC 1122 3.2.2, RFC 1812 4.3.2.7, RFC 4443 2.4 (e)) and
// 0 is returned when:
//   - pkt is not a well-formed IPv4 or IPv6 packet, or its length (from its
//     header) does not exceed mtu;
//   - mtu is below the protocol's minimum (68 for IPv4, 1280 for IPv6) or
//     above 65535;
//   - an IPv4 packet lacks DF (the sender may fragment it instead) or is a
//     fragment other than the first;
//   - the packet is itself an ICMP or ICMPv6 error message;
//   - its source is not a unicast address (unspecified, loopback,
//     multicast, broadcast), or its destination is multicast, broadcast or
//     unspecified, which could not be the reply's source;
//   - dst cannot hold the headers and the minimum quote (the IP header plus
//     8 bytes for IPv4, the IPv6 header for IPv6).
func writeTooBig(dst, pkt []byte, mtu int) int {
	if len(pkt) < 1 {
		return 0
	}
	switch pkt[0] >> 4 {
	case 4:
		return writeFragNeeded(dst, pkt, mtu)
	case 6:
		return writePacketTooBig(dst, pkt, mtu)
	}
	return 0
}

// writeFragNeeded is writeTooBig for IPv4.
func writeFragNeeded(dst, pkt []byte, mtu int) int {
	if mtu < ipv4MinMTU || mtu > 0xffff || len(pkt) < ipv4HeaderSize {
		return 0
	}
	ihl := int(pkt[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(pkt[2:4]))
	if ihl < ipv4HeaderSize || total < ihl || total > len(pkt) || total <= mtu {
		return 0
	}
	frag := binary.BigEndian.Uint16(pkt[6:8])
	if frag&ipv4FlagDF == 0 || frag&ipv4FragOffsetMask != 0 {
		return 0
	}
	src, dstAddr := pkt[12:16], pkt[16:20]
	if !isUnicastIPv4(src) || !isUnicastIPv4(dstAddr) {
		return 0
	}
	if pkt[9] == protoICMP && isICMPv4Error(pkt[ihl:total]) {
		return 0
	}
	quote := min(total, icmpv4MaxReply-ipv4HeaderSize-icmpHeaderSize, len(dst)-ipv4HeaderSize-icmpHeaderSize)
	if quote < ihl+8 { // RFC 792: the header plus 64 bits of data
		return 0
	}
	n := ipv4HeaderSize + icmpHeaderSize + quote
	ip := dst[:ipv4HeaderSize]
	ip[0] = 0x45
	ip[1] = 0
	binary.BigEndian.PutUint16(ip[2:4], uint16(n))
	binary.BigEndian.PutUint32(ip[4:8], 0) // ID, flags, fragment offset
	ip[8] = icmpReplyTTL
	ip[9] = protoICMP
	ip[10], ip[11] = 0, 0
	copy(ip[12:16], dstAddr)
	copy(ip[16:20], src)
	binary.BigEndian.PutUint16(ip[10:12], ^foldChecksum(sumChecksum(ip, 0)))

	icmp := dst[ipv4HeaderSize:n]
	icmp[0] = icmpDestUnreachable
	icmp[1] = icmpFragNeeded
	icmp[2], icmp[3] = 0, 0
	icmp[4], icmp[5] = 0, 0
	binary.BigEndian.PutUint16(icmp[6:8], uint16(mtu))
	copy(icmp[icmpHeaderSize:], pkt[:quote])
	binary.BigEndian.PutUint16(icmp[2:4], ^foldChecksum(sumChecksum(icmp, 0)))
	return n
}

// writePacketTooBig is writeTooBig for IPv6.
func writePacketTooBig(dst, pkt []byte, mtu int) int {
	if mtu < ipv6MinMTU || mtu > 0xffff || len(pkt) < ipv6HeaderSize {
		return 0
	}
	payload := int(binary.BigEndian.Uint16(pkt[4:6]))
	total := ipv6HeaderSize + payload
	if payload == 0 || total > len(pkt) || total <= mtu { // payload 0: a jumbogram or nothing to quote
		return 0
	}
	src, dstAddr := pkt[8:24], pkt[24:40]
	if !isUnicastIPv6(src) || !isUnicastIPv6(dstAddr) {
		return 0
	}
	if isICMPv6Error(pkt[:total]) {
		return 0
	}
	quote := min(total, icmpv6MaxReply-ipv6HeaderSize-icmpHeaderSize, len(dst)-ipv6HeaderSize-icmpHeaderSize)
	if quote < ipv6HeaderSize {
		return 0
	}
	n := ipv6HeaderSize + icmpHeaderSize + quote
	ip := dst[:ipv6HeaderSize]
	binary.BigEndian.PutUint32(ip[0:4], 6<<28) // version, traffic class 0, flow label 0
	binary.BigEndian.PutUint16(ip[4:6], uint16(icmpHeaderSize+quote))
	ip[6] = protoICMPv6
	ip[7] = icmpReplyTTL
	copy(ip[8:24], dstAddr)
	copy(ip[24:40], src)

	icmp := dst[ipv6HeaderSize:n]
	icmp[0] = icmpv6PacketTooBig
	icmp[1] = 0
	icmp[2], icmp[3] = 0, 0
	binary.BigEndian.PutUint32(icmp[4:8], uint32(mtu))
	copy(icmp[icmpHeaderSize:], pkt[:quote])
	// RFC 8200 8.1 pseudo-header: source, destination, upper-layer
	// length, next header.
	sum := sumChecksum(ip[8:40], uint64(len(icmp))+protoICMPv6)
	binary.BigEndian.PutUint16(icmp[2:4], ^foldChecksum(sumChecksum(icmp, sum)))
	return n
}

// isUnicastIPv4 reports whether a (4 bytes) may be the source or the
// destination of an ICMP error: not in 0.0.0.0/8, 127.0.0.0/8,
// 224.0.0.0/4 (multicast) or 240.0.0.0/4 (reserved and the limited
// broadcast).
func isUnicastIPv4(a []byte) bool {
	return a[0] != 0 && a[0] != 127 && a[0] < 224
}

// isUnicastIPv6 reports whether a (16 bytes) may be the source or the
// destination of an ICMPv6 error: not unspecified, loopback or multicast
// (RFC 4443 2.4 (e)). A packet too big may answer a multicast destination,
// but the reply's source would then be that multicast address, so warren
// stays silent.
func isUnicastIPv6(a []byte) bool {
	if a[0] == 0xff {
		return false
	}
	for _, b := range a[:15] {
		if b != 0 {
			return true
		}
	}
	return a[15] > 1
}

// isICMPv4Error reports whether the ICMP message m is an error message
// (RFC 1122 3.2.2: destination unreachable, source quench, redirect, time
// exceeded, parameter problem), which must not be answered with another
// error. A message too short to tell counts as an error.
func isICMPv4Error(m []byte) bool {
	if len(m) < 1 {
		return true
	}
	switch m[0] {
	case 3, 4, 5, 11, 12:
		return true
	}
	return false
}

// isICMPv6Error reports whether the IPv6 packet pkt carries an ICMPv6
// error message (types 0 to 127, RFC 4443 2.1), following the extension
// headers a host may put before it. A first fragment is followed too; a
// later fragment hides its upper layer and does not count as an error. A
// chain that ends early counts as an error, so that nothing is answered.
func isICMPv6Error(pkt []byte) bool {
	next := pkt[6]
	off := ipv6HeaderSize
	for {
		switch next {
		case protoICMPv6:
			return off >= len(pkt) || pkt[off] < 128
		case 0, 43, 60: // hop-by-hop, routing, destination options (RFC 8200 4)
			if off+2 > len(pkt) {
				return true
			}
			next = pkt[off]
			off += (int(pkt[off+1]) + 1) * 8
		case 44: // fragment
			if off+8 > len(pkt) {
				return true
			}
			if binary.BigEndian.Uint16(pkt[off+2:off+4])&^7 != 0 {
				return false
			}
			next = pkt[off]
			off += 8
		case 51: // authentication header, RFC 4302 2.2: length in 4-byte units minus 2
			if off+2 > len(pkt) {
				return true
			}
			next = pkt[off]
			off += (int(pkt[off+1]) + 2) * 4
		default:
			return false
		}
	}
}

// sumChecksum adds b as big-endian 16-bit words to the one's complement
// sum s (RFC 1071), padding an odd length with a zero byte.
func sumChecksum(b []byte, s uint64) uint64 {
	for len(b) >= 8 {
		s += uint64(binary.BigEndian.Uint32(b[0:4])) + uint64(binary.BigEndian.Uint32(b[4:8]))
		b = b[8:]
	}
	for len(b) >= 2 {
		s += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	return s
}

// foldChecksum folds the sum s to 16 bits (RFC 1071).
func foldChecksum(s uint64) uint16 {
	for s > 0xffff {
		s = (s >> 16) + (s & 0xffff)
	}
	return uint16(s)
}
