package tun

// TUN offloads done by warren itself instead of wireguard-go's tun package,
// whose Read and Write cost a software checksum over every byte each way and
// a copy on Write:
//
//   - Write coalesces runs of consecutive packets of one TCP or UDP flow into
//     one GSO packet and hands it to the kernel with writev: the virtio
//     header, the first packet and the payloads of the others straight from
//     the caller's buffers. Nothing is copied and no checksum is verified: the
//     packets were authenticated by the AEAD, and the kernel's own WireGuard
//     likewise marks decrypted packets CHECKSUM_UNNECESSARY. The coalesced
//     packet carries the pseudo-header sum (CHECKSUM_PARTIAL), which a local
//     socket accepts as is and a forwarding path completes.
//   - Read reads into the caller's first buffer where it is large enough, so
//     that a single packet is not copied, and splits a GSO packet into the
//     other buffers, computing each segment's checksums.
//
// Both use raw system calls on the non-blocking descriptor: they never
// block, so the runtime need not hand the P over for them.
//
// The rules for coalescing follow the kernel's GRO (and wireguard-go's):
// equal addresses, ports, TOS or traffic class, TTL or hop limit, DF, TCP
// ack, window, flags and options; consecutive sequence numbers; every
// payload the size of the first except a shorter last one; PSH ends a run.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"unsafe"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// virtioNetHdr is the kernel's struct virtio_net_hdr, in native byte order.
type virtioNetHdr struct {
	flags      uint8
	gsoType    uint8
	hdrLen     uint16
	gsoSize    uint16
	csumStart  uint16
	csumOffset uint16
}

// Offload limits.
const (
	virtioNetHdrLen = 10 // bytes, sizeof(struct virtio_net_hdr)
	maxGSOPacket    = 65535
	maxUDPSegments  = 64 // UDP_MAX_SEGMENTS of older kernels

	tcpFlagFIN = 0x01
	tcpFlagPSH = 0x08
	tcpFlagACK = 0x10
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
	proto  uint8 // unix.IPPROTO_TCP or IPPROTO_UDP; 0: not a candidate
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
	case unix.IPPROTO_TCP:
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
	case unix.IPPROTO_UDP:
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
		// Traffic class, hop limit, next header, addresses.
		if a[0] != b[0] || a[1]>>4 != b[1]>>4 || a[6] != b[6] || a[7] != b[7] || string(a[8:40]) != string(b[8:40]) {
			return false
		}
	} else if a[1] != b[1] || a[6]>>5 != b[6]>>5 || a[8] != b[8] || a[9] != b[9] || string(a[12:20]) != string(b[12:20]) {
		return false // TOS, DF, TTL, protocol, addresses
	}
	ta, tb := a[ga.iphLen:ga.hdrLen], b[gb.iphLen:gb.hdrLen]
	if string(ta[:4]) != string(tb[:4]) { // ports
		return false
	}
	if ga.proto != unix.IPPROTO_TCP {
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
	head := bufs[first][offset:]
	g := parseGRO(head)
	if g.proto == 0 || g.psh || (g.proto == unix.IPPROTO_UDP && !udp) {
		return first + 1, 0, len(head), 0
	}
	segment = len(head) - g.hdrLen
	total = len(head)
	nextSeq := g.seq + uint32(segment)
	end = first + 1
	for end < len(bufs) {
		pkt := bufs[end][offset:]
		gp := parseGRO(pkt)
		n := len(pkt) - gp.hdrLen
		if gp.proto == 0 || !sameFlow(head, pkt, &g, &gp) || n > segment || total+n > maxGSOPacket {
			break
		}
		if g.proto == unix.IPPROTO_TCP {
			if gp.seq != nextSeq {
				break
			}
			nextSeq += uint32(n)
		} else if end-first == maxUDPSegments {
			break
		}
		total += n
		end++
		if n < segment || gp.psh {
			break // only the last segment may be short or carry PSH
		}
	}
	return end, segment, total, g.hdrLen
}

// coalesceHead turns the first packet of the run bufs[first:end] into the
// head of one GSO packet of total bytes and returns its virtio header. The
// other packets' payloads follow the head unchanged.
func coalesceHead(bufs [][]byte, first, end, offset, segment, total int) virtioNetHdr {
	head := bufs[first][offset:]
	g := parseGRO(head)
	h := virtioNetHdr{
		flags:     unix.VIRTIO_NET_HDR_F_NEEDS_CSUM,
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
	case unix.IPPROTO_TCP:
		h.gsoType, h.csumOffset = unix.VIRTIO_NET_HDR_GSO_TCPV4, 16
		if g.v6 {
			h.gsoType = unix.VIRTIO_NET_HDR_GSO_TCPV6
		}
		if last := bufs[end-1][offset:]; last[g.iphLen+13]&tcpFlagPSH != 0 {
			t[13] |= tcpFlagPSH
		}
	case unix.IPPROTO_UDP:
		h.gsoType, h.csumOffset = unix.VIRTIO_NET_HDR_GSO_UDP_L4, 6
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
	// big endian at the end (RFC 1071: byte order independence).
	var ac, carry uint64
	for len(b) >= 32 {
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

// tunIO is the state of the raw reads and writes of a TUN, used by one
// reader and one writer at a time.
type tunIO struct {
	udpGSO bool // the kernel takes UDP GSO packets (USO, Linux 6.2)

	// Read.
	rbuf   []byte // virtioNetHdrLen+maxGSOPacket, where bufs[0] is too small
	readFn func(fd uintptr) bool
	rdst   []byte
	rwait  bool // wait for a packet rather than answer EAGAIN
	rn     int
	rerr   unix.Errno

	// Write.
	iovs    []unix.Iovec
	hdr     [virtioNetHdrLen]byte
	writeFn func(fd uintptr) bool
	wcnt    int
	werr    unix.Errno
}

func newTunIO(batch int, udpGSO bool) *tunIO {
	io := &tunIO{
		udpGSO: udpGSO,
		rbuf:   make([]byte, virtioNetHdrLen+maxGSOPacket),
		iovs:   make([]unix.Iovec, 0, batch+1),
	}
	io.readFn = io.doRead
	io.writeFn = io.doWrite
	return io
}

// doRead runs inside RawConn.Read; false waits for readability.
func (io *tunIO) doRead(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&io.rdst[0])), uintptr(len(io.rdst)))
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if !io.rwait {
				io.rn, io.rerr = 0, e
				return true
			}
			return false
		case 0:
			io.rn, io.rerr = int(n), 0
		default:
			io.rn, io.rerr = 0, e
		}
		return true
	}
}

// doWrite runs inside RawConn.Write; false waits for writability.
func (io *tunIO) doWrite(fd uintptr) bool {
	for {
		_, _, e := unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&io.iovs[0])), uintptr(len(io.iovs)))
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		io.werr = e
		return true
	}
}

// addIov appends b to the iovecs of the next write.
func (io *tunIO) addIov(b []byte) {
	io.iovs = append(io.iovs, unix.Iovec{Base: &b[0]})
	io.iovs[len(io.iovs)-1].SetLen(len(b))
}

// clearIovs drops the references to the caller's buffers.
func (io *tunIO) clearIovs() {
	clear(io.iovs)
	io.iovs = io.iovs[:0]
}

var errVirtio = errors.New("malformed virtio header")

// split turns the packet in (after its virtio header h) into bufs[i][offset:]
// and sizes, and returns how many it wrote. in may be bufs[0][offset:]
// itself. A GSO packet is cut into segments, each with its own headers and
// checksums; a packet that asks for a checksum gets it.
func split(h *virtioNetHdr, in []byte, bufs [][]byte, sizes []int, offset int) (int, error) {
	if h.gsoType == unix.VIRTIO_NET_HDR_GSO_NONE {
		if h.flags&unix.VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
			at := int(h.csumStart) + int(h.csumOffset)
			if int(h.csumStart) >= len(in) || at+2 > len(in) {
				return 0, errVirtio
			}
			initial := uint64(binary.BigEndian.Uint16(in[at:]))
			in[at], in[at+1] = 0, 0
			binary.BigEndian.PutUint16(in[at:], ^checksum(in[h.csumStart:], initial))
		}
		if len(in) > len(bufs[0])-offset {
			return 0, fmt.Errorf("packet of %d bytes overflows a %d-byte buffer", len(in), len(bufs[0])-offset)
		}
		if &in[0] != &bufs[0][offset] {
			copy(bufs[0][offset:], in)
		}
		sizes[0] = len(in)
		return 1, nil
	}
	if len(in) < 20 {
		return 0, errVirtio
	}
	v6 := in[0]>>4 == 6
	iphLen := int(h.csumStart)
	var proto uint8
	switch h.gsoType {
	case unix.VIRTIO_NET_HDR_GSO_TCPV4, unix.VIRTIO_NET_HDR_GSO_TCPV6:
		proto = unix.IPPROTO_TCP
		if len(in) < iphLen+20 {
			return 0, errVirtio
		}
		// The kernel's hdrLen may cover a whole packet on the forwarding
		// path: take the TCP header's own length.
		h.hdrLen = uint16(iphLen + int(in[iphLen+12]>>4)*4)
	case unix.VIRTIO_NET_HDR_GSO_UDP_L4:
		proto = unix.IPPROTO_UDP
		h.hdrLen = uint16(iphLen + 8)
	default:
		return 0, fmt.Errorf("unsupported virtio GSO type %d", h.gsoType)
	}
	hdrLen, seg := int(h.hdrLen), int(h.gsoSize)
	if (v6 && iphLen < 40) || (!v6 && iphLen < 20) || hdrLen > len(in) || seg == 0 {
		return 0, errVirtio
	}
	count := (len(in) - hdrLen + seg - 1) / seg
	var err error
	if count > len(bufs) {
		// As wireguard-go's tun: deliver what fits, report the rest.
		err = fmt.Errorf("GSO packet of %d segments, batch of %d: %w", count, len(bufs), tun.ErrTooManySegments)
		count = len(bufs)
		in = in[:hdrLen+count*seg]
	}
	addrAt, addrLen := 12, 4
	if v6 {
		addrAt, addrLen = 8, 16
	}
	src, dst := in[addrAt:addrAt+addrLen], in[addrAt+addrLen:addrAt+2*addrLen]
	firstSeq := uint32(0)
	if proto == unix.IPPROTO_TCP {
		firstSeq = binary.BigEndian.Uint32(in[iphLen+4:])
	}
	id := binary.BigEndian.Uint16(in[4:])
	flags := in[iphLen+13]
	// Segment 0 may be in itself: it goes last, once the others have copied
	// the headers.
	for k := count - 1; k >= 0; k-- {
		data := in[hdrLen+k*seg : min(hdrLen+(k+1)*seg, len(in))]
		total := hdrLen + len(data)
		out := bufs[k][offset:]
		if len(out) < total {
			return 0, fmt.Errorf("segment of %d bytes overflows a %d-byte buffer", total, len(out))
		}
		if k > 0 || &out[0] != &in[0] {
			copy(out[:hdrLen], in[:hdrLen])
			copy(out[hdrLen:], data)
		}
		if v6 {
			binary.BigEndian.PutUint16(out[4:], uint16(total-iphLen))
		} else {
			binary.BigEndian.PutUint16(out[2:], uint16(total))
			binary.BigEndian.PutUint16(out[4:], id+uint16(k))
			out[10], out[11] = 0, 0
			binary.BigEndian.PutUint16(out[10:], ^checksum(out[:iphLen], 0))
		}
		t := out[iphLen:total]
		csumAt := 6
		if proto == unix.IPPROTO_TCP {
			csumAt = 16
			binary.BigEndian.PutUint32(t[4:], firstSeq+uint32(k*seg))
			if k < count-1 {
				t[13] = flags &^ (tcpFlagFIN | tcpFlagPSH)
			} else {
				t[13] = flags
			}
		} else {
			binary.BigEndian.PutUint16(t[4:], uint16(len(t)))
		}
		t[csumAt], t[csumAt+1] = 0, 0
		binary.BigEndian.PutUint16(t[csumAt:], ^checksum(t, pseudoHeaderSum(proto, src, dst, len(t))))
		sizes[k] = total
	}
	return count, err
}
