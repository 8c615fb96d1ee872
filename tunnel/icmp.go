package tunnel

import (
	"encoding/binary"
	"sync"
	"time"
)

// ICMP replies that tell an inner host its packet did not fit the path to a
// peer: "fragmentation needed and DF set" for IPv4 (RFC 792, RFC 1191) and
// "packet too big" for IPv6 (RFC 4443 3.2, RFC 8201). The engine writes
// them back through the adapter so that the host's TCP lowers its MSS.
// Likewise "host unreachable" (ICMP type 3 code 1, ICMPv6 type 1 code 3,
// as the kernel's WireGuard) for a packet whose destination no peer's
// allowed IPs hold (N10), at most icmpUnreachableRate a second.
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
	icmpHeaderSize        = 8    // type, code, checksum and 4 bytes (unused + MTU, or MTU), bytes
	ipv4HeaderSize        = 20   // without options, bytes
	ipv6HeaderSize        = 40   // bytes
	icmpv4MaxReply        = 576  // whole reply, RFC 1812 4.3.2.3, bytes
	icmpv6MaxReply        = 1280 // whole reply, RFC 4443 2.4 (c): the IPv6 minimum MTU, bytes
	ipv4MinMTU            = 68   // RFC 791, bytes
	ipv6MinMTU            = 1280 // RFC 8200 5, bytes
	icmpReplyTTL          = 64   // hop limit of the replies
	protoICMP             = 1
	protoICMPv6           = 58
	icmpDestUnreachable   = 3 // ICMP type
	icmpHostUnreachable   = 1 // ICMP code of type 3
	icmpFragNeeded        = 4 // ICMP code of type 3
	icmpv6DestUnreachable = 1 // ICMPv6 type
	icmpv6AddrUnreachable = 3 // ICMPv6 code of type 1
	icmpv6PacketTooBig    = 2 // ICMPv6 type
	ipv4FlagDF            = 0x4000
	ipv4FragOffsetMask    = 0x1fff
)

// Rate of the unreachable replies: the kernel's defaults for all the ICMP
// errors a host sends (net.ipv4.icmp_msgs_per_sec, icmp_msgs_burst).
const (
	icmpUnreachableRate  = 1000 // replies per second
	icmpUnreachableBurst = 50   // replies
)

// icmpLimiter is a token bucket of icmpUnreachableRate a second holding up
// to icmpUnreachableBurst, kept as time credit: each reply costs a
// second/icmpUnreachableRate. The zero value is full once the engine's
// clock reads 50 ms (the burst's worth), as it does from boot on Linux.
type icmpLimiter struct {
	mu     sync.Mutex    // guards credit and last
	credit time.Duration // earned and not spent, at most the burst's worth
	last   time.Duration // engine clock at the last allow
}

// allow reports whether a reply may go at now (the engine's clock), and
// spends its cost if so.
func (l *icmpLimiter) allow(now time.Duration) bool {
	const cost = time.Second / icmpUnreachableRate
	l.mu.Lock()
	defer l.mu.Unlock()
	l.credit = min(l.credit+max(now-l.last, 0), icmpUnreachableBurst*cost)
	l.last = now
	if l.credit < cost {
		return false
	}
	l.credit -= cost
	return true
}

// replyUnreachable queues in s the host unreachable reply to pkt, a packet
// without a peer (N10), when one is due and the rate allows.
func (e *Engine) replyUnreachable(s *pmtuScratch, pkt []byte, now time.Duration) {
	if _, total := errorDue(pkt); total == 0 || !e.unreachable.allow(now) {
		return
	}
	r := s.nextReply(e.adapterOffset())
	s.addReply(e.adapterOffset(), writeUnreachable(r, pkt))
}

// nextReply returns the buffer of s's next ICMP reply, past off bytes of
// the adapter's headroom: icmpv6MaxReply bytes, enough for any reply.
func (s *pmtuScratch) nextReply(off int) []byte {
	if s.n == len(s.replies) {
		s.replies = append(s.replies, make([]byte, off+icmpv6MaxReply))
	}
	return s.replies[s.n][off:]
}

// addReply keeps the k bytes written into nextReply's buffer as s's next
// reply; k 0 (no reply) keeps nothing.
func (s *pmtuScratch) addReply(off, k int) {
	if k > 0 {
		s.replies[s.n] = s.replies[s.n][:off+k]
		s.n++
	}
}

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
// No reply is due and 0 is returned when no ICMP error is (errorDue), or
// when:
//   - pkt's length (from its header) does not exceed mtu;
//   - mtu is below the protocol's minimum (68 for IPv4, 1280 for IPv6) or
//     above 65535;
//   - an IPv4 packet lacks DF (the sender may fragment it instead).
func writeTooBig(dst, pkt []byte, mtu int) int {
	ihl, total := errorDue(pkt)
	if total == 0 || mtu > 0xffff || total <= mtu {
		return 0
	}
	if ihl > 0 {
		if mtu < ipv4MinMTU || binary.BigEndian.Uint16(pkt[6:8])&ipv4FlagDF == 0 {
			return 0
		}
		return writeICMPv4(dst, pkt, ihl, total, icmpDestUnreachable, icmpFragNeeded, uint32(mtu))
	}
	if mtu < ipv6MinMTU {
		return 0
	}
	return writeICMPv6(dst, pkt, total, icmpv6PacketTooBig, 0, uint32(mtu))
}

// writeUnreachable writes into dst the reply that tells the sender of the
// inner packet pkt that its destination has no peer (N10), and returns the
// reply's length, or 0 when no ICMP error is due (errorDue). It is the
// kernel's reply in the same case: ICMP type 3 code 1 (host unreachable)
// for IPv4, ICMPv6 type 1 code 3 (address unreachable) for IPv6, quoting
// pkt as writeTooBig does. It allocates nothing and keeps no reference to
// dst or pkt; dst must not overlap pkt.
func writeUnreachable(dst, pkt []byte) int {
	ihl, total := errorDue(pkt)
	switch {
	case total == 0:
		return 0
	case ihl > 0:
		return writeICMPv4(dst, pkt, ihl, total, icmpDestUnreachable, icmpHostUnreachable, 0)
	}
	return writeICMPv6(dst, pkt, total, icmpv6DestUnreachable, icmpv6AddrUnreachable, 0)
}

// errorDue reports whether the inner packet pkt may be answered with an
// ICMP or ICMPv6 error: it returns pkt's length from its header and, for
// IPv4, its header length (0 for IPv6), or total 0 when no error is due
// (RFC 1122 3.2.2, RFC 1812 4.3.2.7, RFC 4443 2.4 (e)), that is when:
//   - pkt is not a well-formed IPv4 or IPv6 packet (an IPv6 payload length
//     of 0, a jumbogram, has nothing to quote);
//   - it is an IPv4 fragment other than the first;
//   - it is itself an ICMP or ICMPv6 error message;
//   - its source is not a unicast address (unspecified, loopback,
//     multicast, broadcast), or its destination is multicast, broadcast or
//     unspecified, which could not be the reply's source.
func errorDue(pkt []byte) (ihl, total int) {
	if len(pkt) < 1 {
		return 0, 0
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < ipv4HeaderSize {
			return 0, 0
		}
		ihl = int(pkt[0]&0x0f) * 4
		total = int(binary.BigEndian.Uint16(pkt[2:4]))
		if ihl < ipv4HeaderSize || total < ihl || total > len(pkt) {
			return 0, 0
		}
		if binary.BigEndian.Uint16(pkt[6:8])&ipv4FragOffsetMask != 0 {
			return 0, 0
		}
		if !isUnicastIPv4(pkt[12:16]) || !isUnicastIPv4(pkt[16:20]) {
			return 0, 0
		}
		if pkt[9] == protoICMP && isICMPv4Error(pkt[ihl:total]) {
			return 0, 0
		}
		return ihl, total
	case 6:
		if len(pkt) < ipv6HeaderSize {
			return 0, 0
		}
		payload := int(binary.BigEndian.Uint16(pkt[4:6]))
		total = ipv6HeaderSize + payload
		if payload == 0 || total > len(pkt) {
			return 0, 0
		}
		if !isUnicastIPv6(pkt[8:24]) || !isUnicastIPv6(pkt[24:40]) {
			return 0, 0
		}
		if isICMPv6Error(pkt[:total]) {
			return 0, 0
		}
		return 0, total
	}
	return 0, 0
}

// writeICMPv4 writes into dst an ICMP error of type typ and code with the
// 4 bytes after the checksum set to info, from pkt's destination to its
// source, quoting pkt (header ihl bytes, total bytes in all) as far as 576
// bytes in all and dst allow. It returns the reply's length, or 0 when dst
// cannot hold the header plus 8 bytes of pkt (RFC 792).
func writeICMPv4(dst, pkt []byte, ihl, total int, typ, code byte, info uint32) int {
	quote := min(total, icmpv4MaxReply-ipv4HeaderSize-icmpHeaderSize, len(dst)-ipv4HeaderSize-icmpHeaderSize)
	if quote < min(ihl+8, total) { // RFC 792: the header plus 64 bits of data
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
	copy(ip[12:16], pkt[16:20])
	copy(ip[16:20], pkt[12:16])
	binary.BigEndian.PutUint16(ip[10:12], ^foldChecksum(sumChecksum(ip, 0)))

	icmp := dst[ipv4HeaderSize:n]
	icmp[0] = typ
	icmp[1] = code
	icmp[2], icmp[3] = 0, 0
	binary.BigEndian.PutUint32(icmp[4:8], info)
	copy(icmp[icmpHeaderSize:], pkt[:quote])
	binary.BigEndian.PutUint16(icmp[2:4], ^foldChecksum(sumChecksum(icmp, 0)))
	return n
}

// writeICMPv6 is writeICMPv4 for IPv6: an ICMPv6 error quoting pkt (total
// bytes) as far as 1280 bytes in all and dst allow, or 0 when dst cannot
// hold pkt's header.
func writeICMPv6(dst, pkt []byte, total int, typ, code byte, info uint32) int {
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
	copy(ip[8:24], pkt[24:40])
	copy(ip[24:40], pkt[8:24])

	icmp := dst[ipv6HeaderSize:n]
	icmp[0] = typ
	icmp[1] = code
	icmp[2], icmp[3] = 0, 0
	binary.BigEndian.PutUint32(icmp[4:8], info)
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
