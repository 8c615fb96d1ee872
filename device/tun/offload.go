package tun

// TUN offloads done by warren itself instead of wireguard-go's tun package,
// whose Read and Write cost a software checksum over every byte each way and
// a copy on Write. This file holds the packet work, which is portable so that
// tests and fuzzing reach it on any OS; offload_linux.go holds the system
// calls.
//
//   - Write coalesces runs of consecutive packets of one TCP or UDP flow into
//     one GSO packet and hands it to the kernel with writev: the virtio
//     header, the first packet and the payloads of the others straight from
//     the caller's buffers. Nothing is copied. The packets were authenticated
//     by the AEAD, but a segment may have been corrupted before the peer
//     sealed it, so each packet's checksums are verified before it joins a
//     run (as the kernel's GRO does): one that fails is written alone, as it
//     came, for the kernel to drop. The coalesced packet carries the
//     pseudo-header sum (CHECKSUM_PARTIAL), which a local socket accepts as
//     is and a forwarding path completes.
//   - Read reads into the caller's first buffer where it is large enough, so
//     that a single packet is not copied, and splits a GSO packet into the
//     other buffers, computing each segment's checksums. Segments that do not
//     fit the buffers are kept as a smaller GSO packet for the next Read.
//
// Both use raw system calls on the non-blocking descriptor: they never
// block, so the runtime need not hand the P over for them.
//
// The rules for coalescing follow the kernel's GRO (and wireguard-go's):
// equal addresses, ports, TOS or traffic class and flow label, TTL or hop
// limit, DF, TCP ack, window, flags and options; consecutive sequence
// numbers; every payload the size of the first except a shorter last one;
// PSH ends a run.
//
// Every packet here comes from the kernel (Read) or, decrypted, from a peer
// (Write): each index is bounded by a check of the actual length, and a
// malformed packet gives an error (Read) or is passed on uncoalesced
// (Write), never a panic. FuzzSplit and FuzzCoalesce hold that.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// virtioNetHdr is the kernel's struct virtio_net_hdr, in native byte order:
//
//	 0       1       2               4               6               8              10
//	+-------+-------+---------------+---------------+---------------+---------------+
//	| flags |gsoType|    hdrLen     |    gsoSize    |   csumStart   |  csumOffset   |
//	+-------+-------+---------------+---------------+---------------+---------------+
type virtioNetHdr struct {
	flags      uint8
	gsoType    uint8
	hdrLen     uint16 // bytes of headers before the first segment's payload
	gsoSize    uint16 // bytes of payload per segment
	csumStart  uint16 // offset of the transport header
	csumOffset uint16 // offset of the checksum field from csumStart
}

// Protocol values: virtio-net (include/uapi/linux/virtio_net.h) and IP.
const (
	virtioNetHdrLen        = 10 // bytes, sizeof(struct virtio_net_hdr)
	virtioNetHdrFNeedsCsum = 1  // VIRTIO_NET_HDR_F_NEEDS_CSUM

	virtioNetHdrGSONone  = 0 // VIRTIO_NET_HDR_GSO_NONE
	virtioNetHdrGSOTCPv4 = 1 // VIRTIO_NET_HDR_GSO_TCPV4
	virtioNetHdrGSOTCPv6 = 4 // VIRTIO_NET_HDR_GSO_TCPV6
	virtioNetHdrGSOUDPL4 = 5 // VIRTIO_NET_HDR_GSO_UDP_L4

	ipProtoTCP = 6  // IPPROTO_TCP
	ipProtoUDP = 17 // IPPROTO_UDP

	tcpFlagFIN = 0x01
	tcpFlagPSH = 0x08
	tcpFlagACK = 0x10
)

// Offload limits.
const (
	maxGSOPacket   = 65535 // bytes, the largest packet one read or write carries
	maxUDPSegments = 64    // UDP_MAX_SEGMENTS of older kernels
)

func (h *virtioNetHdr) encode(b []byte) {
	b[0], b[1] = h.flags, h.gsoType
	binary.NativeEndian.PutUint16(b[2:], h.hdrLen)
	binary.NativeEndian.PutUint16(b[4:], h.gsoSize)
	binary.NativeEndian.PutUint16(b[6:], h.csumStart)
	binary.NativeEndian.PutUint16(b[8:], h.csumOffset)
}

func (h *virtioNetHdr) decode(b []byte) {
	h.flags, h.gsoType = b[0], b[1]
	h.hdrLen = binary.NativeEndian.Uint16(b[2:])
	h.gsoSize = binary.NativeEndian.Uint16(b[4:])
	h.csumStart = binary.NativeEndian.Uint16(b[6:])
	h.csumOffset = binary.NativeEndian.Uint16(b[8:])
}

// groPacket is what coalescing needs to know of one packet.
type groPacket struct {
	proto  uint8 // ipProtoTCP or ipProtoUDP; 0: not a candidate
	v6     bool
	iphLen int
	hdrLen int    // IP and transport headers
	seq    uint32 // TCP
	psh    bool   // TCP
}

// parseGRO classifies pkt; a zero proto means it cannot be coalesced.
func parseGRO(pkt []byte) groPacket {
	var g groPacket
	switch {
	case len(pkt) >= 20 && pkt[0] == 0x45:
		if int(binary.BigEndian.Uint16(pkt[2:])) != len(pkt) || binary.BigEndian.Uint16(pkt[6:])&0x3fff != 0 {
			return groPacket{} // length mismatch, or a fragment
		}
		g.iphLen, g.proto = 20, pkt[9]
	case len(pkt) >= 40 && pkt[0]>>4 == 6:
		if int(binary.BigEndian.Uint16(pkt[4:]))+40 != len(pkt) {
			return groPacket{}
		}
		g.iphLen, g.proto, g.v6 = 40, pkt[6], true
	default:
		return groPacket{}
	}
	t := pkt[g.iphLen:]
	switch g.proto {
	case ipProtoTCP:
		if len(t) < 20 {
			return groPacket{}
		}
		thl := int(t[12]>>4) * 4
		if thl < 20 || len(t) <= thl || t[13]&^tcpFlagPSH != tcpFlagACK {
			return groPacket{} // no payload, or SYN, FIN, RST, URG, ECE, CWR
		}
		g.hdrLen = g.iphLen + thl
		g.seq = binary.BigEndian.Uint32(t[4:])
		g.psh = t[13]&tcpFlagPSH != 0
	case ipProtoUDP:
		if len(t) <= 8 || int(binary.BigEndian.Uint16(t[4:])) != len(t) {
			return groPacket{}
		}
		g.hdrLen = g.iphLen + 8
	default:
		return groPacket{}
	}
	return g
}

// sameFlow reports whether b, described by gb, may follow a (described by
// ga) in one coalesced packet, sequence numbers and sizes aside.
func sameFlow(a, b []byte, ga, gb *groPacket) bool {
	if ga.proto != gb.proto || ga.v6 != gb.v6 || ga.hdrLen != gb.hdrLen {
		return false
	}
	if ga.v6 {
		// Traffic class, flow label, next header, hop limit, addresses.
		if string(a[0:4]) != string(b[0:4]) || a[6] != b[6] || a[7] != b[7] || string(a[8:40]) != string(b[8:40]) {
			return false
		}
	} else if a[1] != b[1] || a[6]>>5 != b[6]>>5 || a[8] != b[8] || a[9] != b[9] || string(a[12:20]) != string(b[12:20]) {
		return false // TOS, DF, TTL, protocol, addresses
	}
	ta, tb := a[ga.iphLen:ga.hdrLen], b[gb.iphLen:gb.hdrLen]
	if string(ta[:4]) != string(tb[:4]) { // ports
		return false
	}
	if ga.proto != ipProtoTCP {
		return true
	}
	// Ack, data offset, flags but PSH, window, and the options.
	return string(ta[8:13]) == string(tb[8:13]) && ta[13]|tcpFlagPSH == tb[13]|tcpFlagPSH &&
		string(ta[14:16]) == string(tb[14:16]) && string(ta[20:]) == string(tb[20:])
}

// groRun returns the end of the run of packets starting at bufs[first]
// that coalesce into one, the run's segment size, its total size and the
// headers' size. A run of one is not coalesced. udp says whether the kernel takes UDP GSO packets.
func groRun(bufs [][]byte, first, offset int, udp bool) (end, segment, total, hdrLen int) {
	return groRunLink(bufs, first, offset, 0, udp)
}

// groRunLink is groRun for packets behind a link header of link bytes (an
// Ethernet header and its VLAN tags: the TAP): packet i is
// bufs[i][offset+link:], and a run's packets have the head's link header,
// byte for byte. total and hdrLen count from the IP header.
//
// Every packet of a run of two or more has a correct TCP or UDP checksum
// (and IPv4 header checksum): coalescing gives the run one new checksum,
// which would hide a segment that was corrupted before it was sealed, where
// the kernel's GRO verifies before merging. A packet that fails ends the
// run before it and, as a head, is written alone with its checksum as it
// came, for the kernel to check and drop. The head is verified only once a
// packet would join it, so a packet that coalesces with nothing costs no
// checksum.
func groRunLink(bufs [][]byte, first, offset, link int, udp bool) (end, segment, total, hdrLen int) {
	frame := bufs[first][offset:]
	head := frame[link:]
	g := parseGRO(head)
	if g.proto == 0 || g.psh || (g.proto == ipProtoUDP && !udp) {
		return first + 1, 0, len(head), 0
	}
	linkHdr := frame[:link]
	segment = len(head) - g.hdrLen
	total = len(head)
	nextSeq := g.seq + uint32(segment)
	end = first + 1
	for end < len(bufs) {
		b := bufs[end][offset:]
		if len(b) < link || string(b[:link]) != string(linkHdr) {
			break
		}
		pkt := b[link:]
		gp := parseGRO(pkt)
		n := len(pkt) - gp.hdrLen
		if gp.proto == 0 || !sameFlow(head, pkt, &g, &gp) || n > segment || total+n > maxGSOPacket {
			break
		}
		if g.proto == ipProtoTCP {
			if gp.seq != nextSeq {
				break
			}
		} else if end-first == maxUDPSegments {
			break
		}
		if end == first+1 && !checksumsValid(head, &g) {
			return first + 1, 0, len(head), 0
		}
		if !checksumsValid(pkt, &gp) {
			break
		}
		nextSeq += uint32(n)
		total += n
		end++
		if n < segment || gp.psh {
			break // only the last segment may be short or carry PSH
		}
	}
	return end, segment, total, g.hdrLen
}

// checksumsValid reports whether pkt, a coalescing candidate described by g,
// has a correct IPv4 header checksum and TCP or UDP checksum. A UDP packet
// over IPv4 without a checksum (0, RFC 768) passes.
func checksumsValid(pkt []byte, g *groPacket) bool {
	t := pkt[g.iphLen:]
	var src, dst []byte
	if g.v6 {
		src, dst = pkt[8:24], pkt[24:40]
	} else {
		if checksum(pkt[:20], 0) != 0xffff {
			return false
		}
		if g.proto == ipProtoUDP && t[6] == 0 && t[7] == 0 {
			return true
		}
		src, dst = pkt[12:16], pkt[16:20]
	}
	return checksum(t, pseudoHeaderSum(g.proto, src, dst, len(t))) == 0xffff
}

// coalesceHead turns the first packet of the run bufs[first:end] into the
// head of one GSO packet of total bytes and returns its virtio header. The
// other packets' payloads follow the head unchanged.
func coalesceHead(bufs [][]byte, first, end, offset, segment, total int) virtioNetHdr {
	head := bufs[first][offset:]
	g := parseGRO(head)
	h := virtioNetHdr{
		flags:     virtioNetHdrFNeedsCsum,
		hdrLen:    uint16(g.hdrLen),
		gsoSize:   uint16(segment),
		csumStart: uint16(g.iphLen),
	}
	var src, dst []byte
	if g.v6 {
		binary.BigEndian.PutUint16(head[4:], uint16(total-40))
		src, dst = head[8:24], head[24:40]
	} else {
		binary.BigEndian.PutUint16(head[2:], uint16(total))
		head[10], head[11] = 0, 0
		binary.BigEndian.PutUint16(head[10:], ^checksum(head[:20], 0))
		src, dst = head[12:16], head[16:20]
	}
	t := head[g.iphLen:]
	switch g.proto {
	case ipProtoTCP:
		h.gsoType, h.csumOffset = virtioNetHdrGSOTCPv4, 16
		if g.v6 {
			h.gsoType = virtioNetHdrGSOTCPv6
		}
		if last := bufs[end-1][offset:]; last[g.iphLen+13]&tcpFlagPSH != 0 {
			t[13] |= tcpFlagPSH
		}
	case ipProtoUDP:
		h.gsoType, h.csumOffset = virtioNetHdrGSOUDPL4, 6
		binary.BigEndian.PutUint16(t[4:], uint16(total-g.iphLen))
	}
	// The pseudo-header sum, not complemented: the kernel completes it.
	psum := pseudoHeaderSum(g.proto, src, dst, total-g.iphLen)
	binary.BigEndian.PutUint16(t[h.csumOffset:], fold(psum))
	return h
}

// checksumNoFold adds b, as big-endian 16-bit words, to initial; the sum
// is kept in 64 bits, to be folded by fold.
func checksumNoFold(b []byte, initial uint64) uint64 {
	// Sum native-endian 64-bit words with end-around carry, then swap to
	// big endian at the end (RFC 1071: byte order independence). Two
	// independent carry chains over each 64 bytes let the CPU overlap the
	// additions: about 1.45 times as fast as one chain on 1440 bytes.
	var a, ca, b2, cb uint64
	for len(b) >= 64 {
		a, ca = bits.Add64(a, binary.NativeEndian.Uint64(b[0:]), 0)
		b2, cb = bits.Add64(b2, binary.NativeEndian.Uint64(b[8:]), 0)
		a, ca = bits.Add64(a, binary.NativeEndian.Uint64(b[16:]), ca)
		b2, cb = bits.Add64(b2, binary.NativeEndian.Uint64(b[24:]), cb)
		a, ca = bits.Add64(a, binary.NativeEndian.Uint64(b[32:]), ca)
		b2, cb = bits.Add64(b2, binary.NativeEndian.Uint64(b[40:]), cb)
		a, ca = bits.Add64(a, binary.NativeEndian.Uint64(b[48:]), ca)
		b2, cb = bits.Add64(b2, binary.NativeEndian.Uint64(b[56:]), cb)
		a += ca
		b2 += cb
		b = b[64:]
	}
	var carry uint64
	ac, carry := bits.Add64(a, b2, 0)
	ac += carry
	if len(b) >= 32 {
		ac, carry = bits.Add64(ac, binary.NativeEndian.Uint64(b[0:]), 0)
		ac, carry = bits.Add64(ac, binary.NativeEndian.Uint64(b[8:]), carry)
		ac, carry = bits.Add64(ac, binary.NativeEndian.Uint64(b[16:]), carry)
		ac, carry = bits.Add64(ac, binary.NativeEndian.Uint64(b[24:]), carry)
		ac += carry
		b = b[32:]
	}
	for len(b) >= 8 {
		ac, carry = bits.Add64(ac, binary.NativeEndian.Uint64(b), 0)
		ac += carry
		b = b[8:]
	}
	var tail [8]byte
	copy(tail[:], b)
	ac, carry = bits.Add64(ac, binary.NativeEndian.Uint64(tail[:]), 0)
	ac += carry
	// Fold to 32 bits before the swap so that initial can be added safely.
	ac = (ac >> 32) + (ac & 0xffffffff)
	ac = (ac >> 32) + (ac & 0xffffffff)
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 { // little endian: swap bytes within the 16-bit words
		ac = uint64(bits.ReverseBytes32(uint32(ac)))
		ac = (ac >> 16) | (ac&0xffff)<<16
	}
	return ac + initial
}

// fold folds a checksumNoFold sum into 16 bits (not complemented).
func fold(ac uint64) uint16 {
	ac = (ac >> 32) + (ac & 0xffffffff)
	ac = (ac >> 16) + (ac & 0xffff)
	ac = (ac >> 16) + (ac & 0xffff)
	ac = (ac >> 16) + (ac & 0xffff)
	return uint16(ac)
}

// checksum returns the folded sum of b and initial (not complemented).
func checksum(b []byte, initial uint64) uint16 { return fold(checksumNoFold(b, initial)) }

// pseudoHeaderSum is the sum of the TCP or UDP pseudo-header.
func pseudoHeaderSum(proto uint8, src, dst []byte, length int) uint64 {
	return checksumNoFold(src, checksumNoFold(dst, uint64(proto)+uint64(length)))
}

// Errors of split. Each means the packet was dropped.
var (
	errVirtio          = errors.New("malformed virtio header or GSO packet")
	errTooManySegments = errors.New("too many segments for the buffers")
)

// split turns the packet in (after its virtio header h) into packets at
// bufs[i][offset:] and their sizes, and returns how many it wrote. A GSO
// packet is cut into segments, each with its own headers and checksums; a
// packet that asks for a checksum gets it. in may be bufs[0][offset:] itself.
// h.hdrLen is overwritten.
//
// A GSO packet of more segments than min(len(bufs), len(sizes)) loses none:
// split writes those that fit and, to rest, a GSO packet of the others for
// the same h, and returns its length as restLen; splitting that packet gives
// the next segments. rest either starts where in starts or overlaps neither
// in nor bufs. Where rest is too small, split writes the segments that fit
// and returns an error wrapping errTooManySegments.
func split(h *virtioNetHdr, in []byte, bufs [][]byte, sizes []int, offset int, rest []byte) (n, restLen int, err error) {
	fit := min(len(bufs), len(sizes))
	if fit == 0 || offset < 0 || len(in) == 0 {
		return 0, 0, errVirtio
	}
	if h.gsoType == virtioNetHdrGSONone {
		out := bufs[0]
		if offset > len(out) || len(in) > len(out)-offset {
			return 0, 0, fmt.Errorf("packet of %d bytes overflows a %d-byte buffer", len(in), max(len(out)-offset, 0))
		}
		out = out[offset : offset+len(in)]
		if &out[0] != &in[0] {
			copy(out, in)
		}
		if h.flags&virtioNetHdrFNeedsCsum != 0 {
			start := int(h.csumStart)
			at := start + int(h.csumOffset)
			if start >= len(out) || at+2 > len(out) {
				return 0, 0, errVirtio
			}
			// The field holds the pseudo-header sum: the sum from start
			// on, field included, is the checksum (the kernel's
			// skb_checksum_help).
			binary.BigEndian.PutUint16(out[at:], ^checksum(out[start:], 0))
		}
		sizes[0] = len(in)
		return 1, 0, nil
	}

	// The headers: IP, of iphLen bytes (IPv6 extension headers included),
	// then TCP or UDP, hdrLen bytes in all.
	iphLen := int(h.csumStart)
	v6 := false
	switch in[0] >> 4 {
	case 4:
		if iphLen < 20 || iphLen != int(in[0]&0x0f)*4 {
			return 0, 0, errVirtio
		}
	case 6:
		if iphLen < 40 {
			return 0, 0, errVirtio
		}
		v6 = true
	default:
		return 0, 0, errVirtio
	}
	var proto uint8
	var hdrLen int
	switch h.gsoType {
	case virtioNetHdrGSOTCPv4, virtioNetHdrGSOTCPv6:
		proto = ipProtoTCP
		if (h.gsoType == virtioNetHdrGSOTCPv6) != v6 || len(in) < iphLen+20 {
			return 0, 0, errVirtio
		}
		// The kernel's hdrLen may cover a whole packet on the forwarding
		// path: take the TCP header's own length.
		thl := int(in[iphLen+12]>>4) * 4
		if thl < 20 {
			return 0, 0, errVirtio
		}
		hdrLen = iphLen + thl
	case virtioNetHdrGSOUDPL4:
		proto = ipProtoUDP
		hdrLen = iphLen + 8
	default:
		return 0, 0, fmt.Errorf("unsupported virtio GSO type %d", h.gsoType)
	}
	seg := int(h.gsoSize)
	if hdrLen >= len(in) || seg == 0 || hdrLen+min(seg, len(in)-hdrLen) > maxGSOPacket {
		return 0, 0, errVirtio // no payload, or segments too large for the length fields
	}
	h.hdrLen = uint16(hdrLen)
	count := (len(in) - hdrLen + seg - 1) / seg

	addrAt, addrLen := 12, 4
	if v6 {
		addrAt, addrLen = 8, 16
	}
	src, dst := in[addrAt:addrAt+addrLen], in[addrAt+addrLen:addrAt+2*addrLen]
	var firstSeq uint32
	var flags uint8
	if proto == ipProtoTCP {
		firstSeq = binary.BigEndian.Uint32(in[iphLen+4:])
		flags = in[iphLen+13]
	}
	id := binary.BigEndian.Uint16(in[4:])

	whole, carryAfter := in, false
	if count > fit {
		restLen = len(in) - fit*seg
		switch {
		case len(rest) < restLen:
			err = fmt.Errorf("GSO packet of %d segments, %d buffers: %w", count, fit, errTooManySegments)
			restLen = 0
		case &rest[0] == &in[0]:
			carryAfter = true // the segments are read from rest first
		default:
			carry(rest, in, hdrLen, iphLen, fit, seg, proto, v6)
		}
		count = fit
		in = in[:hdrLen+count*seg]
	}

	// Segment 0 may be in itself: it goes last, once the others have copied
	// the headers.
	for k := count - 1; k >= 0; k-- {
		data := in[hdrLen+k*seg : min(hdrLen+(k+1)*seg, len(in))]
		total := hdrLen + len(data)
		out := bufs[k]
		if offset > len(out) || len(out)-offset < total {
			return 0, 0, fmt.Errorf("segment of %d bytes overflows a %d-byte buffer", total, max(len(out)-offset, 0))
		}
		out = out[offset : offset+total]
		if k > 0 || &out[0] != &in[0] {
			copy(out[:hdrLen], in[:hdrLen])
			copy(out[hdrLen:], data)
		}
		if v6 {
			binary.BigEndian.PutUint16(out[4:], uint16(total-40)) // extension headers count as payload
		} else {
			binary.BigEndian.PutUint16(out[2:], uint16(total))
			binary.BigEndian.PutUint16(out[4:], id+uint16(k))
			out[10], out[11] = 0, 0
			binary.BigEndian.PutUint16(out[10:], ^checksum(out[:iphLen], 0))
		}
		t := out[iphLen:]
		csumAt := 6
		if proto == ipProtoTCP {
			csumAt = 16
			binary.BigEndian.PutUint32(t[4:], firstSeq+uint32(k*seg))
			if k < count-1 || restLen > 0 {
				t[13] = flags &^ (tcpFlagFIN | tcpFlagPSH)
			} else {
				t[13] = flags
			}
		} else {
			binary.BigEndian.PutUint16(t[4:], uint16(len(t)))
		}
		t[csumAt], t[csumAt+1] = 0, 0
		csum := ^checksum(t, pseudoHeaderSum(proto, src, dst, len(t)))
		if csum == 0 && proto == ipProtoUDP {
			csum = 0xffff // 0 would mean no checksum (RFC 768)
		}
		binary.BigEndian.PutUint16(t[csumAt:], csum)
		sizes[k] = total
	}
	if carryAfter {
		carry(rest, whole, hdrLen, iphLen, count, seg, proto, v6)
	}
	return count, restLen, err
}

// carry writes to rest the GSO packet of in's segments from segment first
// on: in's headers, advanced to that segment, and the payload left. rest
// holds len(in)-first*seg bytes and either starts where in starts or does not
// overlap it.
func carry(rest, in []byte, hdrLen, iphLen, first, seg int, proto uint8, v6 bool) {
	copy(rest[:hdrLen], in[:hdrLen])
	copy(rest[hdrLen:], in[hdrLen+first*seg:])
	if proto == ipProtoTCP {
		seq := binary.BigEndian.Uint32(rest[iphLen+4:])
		binary.BigEndian.PutUint32(rest[iphLen+4:], seq+uint32(first*seg))
	}
	if !v6 {
		id := binary.BigEndian.Uint16(rest[4:])
		binary.BigEndian.PutUint16(rest[4:], id+uint16(first))
	}
}
