package tun

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
)

// Where splitAll finds the packet to split, and where the segments that do
// not fit go: as TUN.Read has it.
type splitMode int

const (
	splitApart   splitMode = iota // in and rest in buffers of their own
	splitRbuf                     // in at rbuf[virtioNetHdrLen:], rest the same
	splitInPlace                  // in at bufs[0][offset:], rest in rbuf
)

func (m splitMode) String() string {
	return [...]string{"apart", "rbuf", "in place"}[m]
}

// splitter holds the buffers of splitAll, made once for a test or fuzz run.
type splitter struct {
	offset int
	bufs   [][]byte // offset+maxGSOPacket bytes each
	sizes  []int
	rbuf   []byte // virtioNetHdrLen+maxGSOPacket
	spare  []byte // maxGSOPacket
}

func newSplitter(batch, offset int) *splitter {
	s := &splitter{
		offset: offset,
		bufs:   make([][]byte, batch),
		sizes:  make([]int, batch),
		rbuf:   make([]byte, virtioNetHdrLen+maxGSOPacket),
		spare:  make([]byte, maxGSOPacket),
	}
	for i := range s.bufs {
		s.bufs[i] = make([]byte, offset+maxGSOPacket)
	}
	return s
}

// splitAll splits in (at most maxGSOPacket bytes) with h, batch packets at a
// time, and splits the rest of each call again as TUN.Read does. It returns
// copies of all the packets and the header length split found.
func (s *splitter) splitAll(h virtioNetHdr, in []byte, batch int, mode splitMode) (pkts [][]byte, hdrLen int, err error) {
	var cur, rest []byte
	switch mode {
	case splitApart:
		cur, rest = bytes.Clone(in), s.spare
	case splitRbuf:
		cur = s.rbuf[virtioNetHdrLen : virtioNetHdrLen+copy(s.rbuf[virtioNetHdrLen:], in)]
		rest = s.rbuf[virtioNetHdrLen:]
	case splitInPlace:
		cur = s.bufs[0][s.offset : s.offset+copy(s.bufs[0][s.offset:], in)]
		rest = s.rbuf[virtioNetHdrLen:]
	}
	for range maxGSOPacket {
		hh := h
		n, restLen, err := split(&hh, cur, s.bufs[:batch], s.sizes[:batch], s.offset, rest)
		if n < 0 || n > batch || (err == nil && n == 0) {
			return nil, 0, fmt.Errorf("split = %d, %d, %v with %d buffers", n, restLen, err, batch)
		}
		for i := range n {
			pkts = append(pkts, bytes.Clone(s.bufs[i][s.offset:s.offset+s.sizes[i]]))
		}
		if err != nil || restLen == 0 {
			return pkts, int(hh.hdrLen), err
		}
		if restLen >= len(cur) {
			return nil, 0, fmt.Errorf("rest of %d bytes from a packet of %d", restLen, len(cur))
		}
		cur = rest[:restLen]
	}
	return nil, 0, fmt.Errorf("split does not end")
}

// checkIP returns an error unless pkt is an IP packet of iphLen bytes of
// IP headers followed by a TCP or UDP header (proto), with the lengths and
// checksums right.
func checkIP(pkt []byte, iphLen int, proto uint8) error {
	if len(pkt) < iphLen+8 {
		return fmt.Errorf("%d bytes", len(pkt))
	}
	var src, dst []byte
	switch pkt[0] >> 4 {
	case 4:
		if ihl := int(pkt[0]&0x0f) * 4; ihl != iphLen {
			return fmt.Errorf("IPv4 header of %d bytes, want %d", ihl, iphLen)
		}
		if n := int(binary.BigEndian.Uint16(pkt[2:])); n != len(pkt) {
			return fmt.Errorf("IPv4 total length %d, packet of %d bytes", n, len(pkt))
		}
		if sum := checksum(pkt[:iphLen], 0); sum != 0xffff {
			return fmt.Errorf("IPv4 header checksum sums to %#04x", sum)
		}
		src, dst = pkt[12:16], pkt[16:20]
	case 6:
		if n := int(binary.BigEndian.Uint16(pkt[4:])); n != len(pkt)-40 {
			return fmt.Errorf("IPv6 payload length %d, packet of %d bytes", n, len(pkt))
		}
		src, dst = pkt[8:24], pkt[24:40]
	default:
		return fmt.Errorf("IP version %d", pkt[0]>>4)
	}
	t := pkt[iphLen:]
	if proto == ipProtoUDP {
		if n := int(binary.BigEndian.Uint16(t[4:])); n != len(t) {
			return fmt.Errorf("UDP length %d, datagram of %d bytes", n, len(t))
		}
		if t[6] == 0 && t[7] == 0 {
			return fmt.Errorf("UDP checksum 0")
		}
	}
	if sum := checksum(t, pseudoHeaderSum(proto, src, dst, len(t))); sum != 0xffff {
		return fmt.Errorf("transport checksum sums to %#04x", sum)
	}
	return nil
}

// checkSplit returns an error unless pkts are what splitting in with h must
// give: for a GSO packet, valid IP packets whose payloads make up in's and
// whose headers are in's but for lengths, IDs, sequence numbers, flags and
// checksums; otherwise in itself, its checksum completed if h asks for it.
func checkSplit(h virtioNetHdr, in []byte, pkts [][]byte, hdrLen int) error {
	if h.gsoType == virtioNetHdrGSONone {
		if len(pkts) != 1 || len(pkts[0]) != len(in) {
			return fmt.Errorf("%d packets from one", len(pkts))
		}
		if h.flags&virtioNetHdrFNeedsCsum != 0 {
			// The field held the pseudo-header sum, which the checksum
			// now covers (where the field sits on a 16-bit word).
			at := int(h.csumStart) + int(h.csumOffset)
			initial := uint64(binary.BigEndian.Uint16(in[at:]))
			if sum := checksum(pkts[0][h.csumStart:], initial); sum != 0xffff && h.csumOffset%2 == 0 {
				return fmt.Errorf("completed checksum sums to %#04x", sum)
			}
			if !bytes.Equal(pkts[0][:at], in[:at]) || !bytes.Equal(pkts[0][at+2:], in[at+2:]) {
				return fmt.Errorf("packet changed beyond its checksum")
			}
		} else if !bytes.Equal(pkts[0], in) {
			return fmt.Errorf("packet changed")
		}
		return nil
	}
	iphLen := int(h.csumStart)
	proto, csumAt := uint8(ipProtoTCP), iphLen+16
	if h.gsoType == virtioNetHdrGSOUDPL4 {
		proto, csumAt = ipProtoUDP, iphLen+6
	}
	// The header bytes split rewrites: lengths, IPv4 ID and checksum,
	// TCP sequence number and flags, the transport checksum.
	rewritten := []int{csumAt, csumAt + 1}
	if in[0]>>4 == 4 {
		rewritten = append(rewritten, 2, 3, 4, 5, 10, 11)
	} else {
		rewritten = append(rewritten, 4, 5)
	}
	if proto == ipProtoTCP {
		rewritten = append(rewritten, iphLen+4, iphLen+5, iphLen+6, iphLen+7, iphLen+13)
	} else {
		rewritten = append(rewritten, iphLen+4, iphLen+5)
	}
	var payload []byte
	for k, p := range pkts {
		if err := checkIP(p, iphLen, proto); err != nil {
			return fmt.Errorf("packet %d of %d: %v", k, len(pkts), err)
		}
		if len(p) <= hdrLen || len(p)-hdrLen > int(h.gsoSize) {
			return fmt.Errorf("packet %d of %d: %d bytes, headers %d, segments %d", k, len(pkts), len(p), hdrLen, h.gsoSize)
		}
		if k < len(pkts)-1 && len(p)-hdrLen != int(h.gsoSize) {
			return fmt.Errorf("packet %d of %d: short segment", k, len(pkts))
		}
		if proto == ipProtoTCP {
			seq := binary.BigEndian.Uint32(in[iphLen+4:]) + uint32(k)*uint32(h.gsoSize)
			if got := binary.BigEndian.Uint32(p[iphLen+4:]); got != seq {
				return fmt.Errorf("packet %d: sequence number %d, want %d", k, got, seq)
			}
		}
		p = bytes.Clone(p)
		for _, i := range rewritten {
			p[i] = in[i]
		}
		if !bytes.Equal(p[:hdrLen], in[:hdrLen]) {
			return fmt.Errorf("packet %d: headers differ beyond the rewritten fields:\n got %x\nwant %x", k, p[:hdrLen], in[:hdrLen])
		}
		payload = append(payload, p[hdrLen:]...)
	}
	if !bytes.Equal(payload, in[hdrLen:]) {
		return fmt.Errorf("payloads differ from the GSO packet's")
	}
	return nil
}

// splitSeeds are GSO packets as the kernel hands them over, and malformed ones.
func splitSeeds(tb testing.TB) (hdrs [][]byte, pkts [][]byte) {
	const offset = 16
	add := func(h virtioNetHdr, pkt []byte) {
		var b [virtioNetHdrLen]byte
		h.encode(b[:])
		hdrs, pkts = append(hdrs, b[:]), append(pkts, pkt)
	}
	for _, bufs := range [][][]byte{
		tcpFlow(false, tcpFlagACK|tcpFlagPSH, offset, 40, 40, 40, 40, 13),
		tcpFlow(true, tcpFlagACK, offset, 32, 32, 32),
		tcpFlow(false, tcpFlagACK, offset, 99, 99, 1),
		tcpFlow(false, tcpFlagACK, offset, 1, 1, 1, 1, 1, 1, 1, 1, 1),
		udpFlow(false, offset, 5, 24, 10),
		udpFlow(true, offset, 3, 20, 0),
		udpFlow(false, offset, 4, 2, 1),
	} {
		h, wire := coalesced(tb, bufs, offset)
		add(h, wire)
	}
	// One packet asking for its checksum, and one not.
	p := tcpFlow(false, tcpFlagACK, offset, 100)[0][offset:]
	add(virtioNetHdr{flags: virtioNetHdrFNeedsCsum, csumStart: 20, csumOffset: 16}, p)
	add(virtioNetHdr{}, p)
	// A UDP GSO packet of fewer than 6 payload bytes: split once read the
	// TCP flags at iphLen+13 for it.
	h, wire := coalesced(tb, udpFlow(false, offset, 2, 2, 0), offset)
	add(h, wire)
	return hdrs, pkts
}

// FuzzSplit splits arbitrary packets after arbitrary virtio headers: split
// must not panic; what it accepts must come out as valid packets carrying
// the payload, the same in batches of any size and wherever the packet and
// the rest lie.
func FuzzSplit(f *testing.F) {
	hdrs, pkts := splitSeeds(f)
	for i := range hdrs {
		f.Add(hdrs[i], pkts[i])
	}
	const offset = 16
	s := newSplitter(64, offset)
	f.Fuzz(func(t *testing.T, hdr, pkt []byte) {
		if len(pkt) > maxGSOPacket {
			return // Read never has more
		}
		var b [virtioNetHdrLen]byte
		copy(b[:], hdr)
		var h virtioNetHdr
		h.decode(b[:])
		if segments := len(pkt)/max(int(h.gsoSize), 1) + 1; segments*int(h.csumStart) > 1<<22 {
			return // megabytes of headers: slow, and nothing a kernel sends
		}
		want, hdrLen, err := s.splitAll(h, pkt, 64, splitApart)
		if err != nil {
			if len(want) != 0 {
				t.Fatalf("split: %d packets with error %v", len(want), err)
			}
		} else if err := checkSplit(h, pkt, want, hdrLen); err != nil {
			t.Fatalf("split(%+v, %x): %v", h, pkt, err)
		}
		if len(want) > 256 {
			return // small batches would take long: each call moves the rest
		}
		for _, tc := range []struct {
			batch int
			mode  splitMode
		}{{3, splitRbuf}, {2, splitInPlace}, {1, splitApart}} {
			got, _, gotErr := s.splitAll(h, pkt, tc.batch, tc.mode)
			if (gotErr == nil) != (err == nil) {
				t.Fatalf("split in batches of %d, %v: error %v, in one batch %v", tc.batch, tc.mode, gotErr, err)
			}
			if err == nil && !equalPackets(got, want) {
				t.Fatalf("split in batches of %d, %v: %d packets differ from the %d of one batch", tc.batch, tc.mode, len(got), len(want))
			}
		}
	})
}

func equalPackets(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// packPackets encodes packets for FuzzCoalesce: each as a 2-byte length and
// its bytes.
func packPackets(bufs [][]byte, offset int) []byte {
	var b []byte
	for _, p := range bufs {
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)-offset))
		b = append(b, p[offset:]...)
	}
	return b
}

// FuzzCoalesce coalesces arbitrary packets as TUN.Write does: it must not
// panic, and every coalesced run must split back into its packets, equal
// but for the IPv4 IDs, checksums and TCP urgent pointer.
func FuzzCoalesce(f *testing.F) {
	const offset = 16
	for _, bufs := range [][][]byte{
		tcpFlow(false, tcpFlagACK|tcpFlagPSH, offset, 40, 40, 40, 13),
		tcpFlow(true, tcpFlagACK, offset, 32, 32, 32),
		tcpFlow(false, tcpFlagACK, offset, 10, 10, 5, 10, 10),
		udpFlow(false, offset, 4, 24, 10),
		udpFlow(true, offset, 3, 20, 0),
		append(tcpFlow(false, tcpFlagACK, offset, 16, 16), udpFlow(false, offset, 2, 16, 0)...),
	} {
		f.Add(packPackets(bufs, offset), true)
		f.Add(packPackets(bufs, offset), false)
	}
	s := newSplitter(64, offset)
	f.Fuzz(func(t *testing.T, data []byte, udp bool) {
		// Checksums are verified before coalescing: most random packets
		// would fail, so where the input's length is even they are made
		// right first, and left as they came where it is odd.
		fix := len(data)%2 == 0
		var bufs, orig [][]byte
		for len(data) >= 2 && len(bufs) < 256 {
			n := min(int(binary.BigEndian.Uint16(data)), len(data)-2)
			b := make([]byte, offset+n)
			copy(b[offset:], data[2:2+n])
			if fix {
				fixChecksums(b[offset:])
			}
			bufs, orig = append(bufs, b), append(orig, bytes.Clone(b[offset:]))
			data = data[2+n:]
		}
		for i := 0; i < len(bufs); {
			end, seg, total, hdrLen := groRun(bufs, i, offset, udp)
			if end <= i || end > len(bufs) {
				t.Fatalf("run at %d ends at %d of %d", i, end, len(bufs))
			}
			if end-i == 1 {
				i = end
				continue
			}
			if total > maxGSOPacket {
				t.Fatalf("run of %d bytes", total)
			}
			h := coalesceHead(bufs, i, end, offset, seg, total)
			if h.gsoType == virtioNetHdrGSOUDPL4 && !udp {
				t.Fatalf("UDP coalesced for a kernel without UDP GSO")
			}
			wire := bytes.Clone(bufs[i][offset:])
			for _, b := range bufs[i+1 : end] {
				wire = append(wire, b[offset+hdrLen:]...)
			}
			if len(wire) != total {
				t.Fatalf("run of %d bytes, want %d", len(wire), total)
			}
			pkts, gotHdrLen, err := s.splitAll(h, wire, 64, splitRbuf)
			if err != nil || gotHdrLen != hdrLen {
				t.Fatalf("split of a coalesced run: %v (headers %d, want %d)", err, gotHdrLen, hdrLen)
			}
			if len(pkts) != end-i {
				t.Fatalf("run of %d packets split into %d", end-i, len(pkts))
			}
			for k, p := range pkts {
				want := orig[i+k]
				g := parseGRO(want)
				if err := checkIP(p, g.iphLen, g.proto); err != nil {
					t.Fatalf("packet %d: %v", i+k, err)
				}
				if got, want := maskRewritten(p, g), maskRewritten(want, g); !bytes.Equal(got, want) {
					t.Fatalf("packet %d after coalesce and split:\n got %x\nwant %x", i+k, got, want)
				}
			}
			i = end
		}
	})
}

// fixChecksums makes the IPv4 header and TCP or UDP checksums of pkt right
// where parseGRO takes it for a coalescing candidate.
func fixChecksums(pkt []byte) {
	g := parseGRO(pkt)
	if g.proto == 0 {
		return
	}
	var src, dst []byte
	if g.v6 {
		src, dst = pkt[8:24], pkt[24:40]
	} else {
		pkt[10], pkt[11] = 0, 0
		binary.BigEndian.PutUint16(pkt[10:], ^checksum(pkt[:20], 0))
		src, dst = pkt[12:16], pkt[16:20]
	}
	t := pkt[g.iphLen:]
	at := 6
	if g.proto == ipProtoTCP {
		at = 16
	}
	t[at], t[at+1] = 0, 0
	binary.BigEndian.PutUint16(t[at:], ^checksum(t, pseudoHeaderSum(g.proto, src, dst, len(t))))
}

// maskRewritten returns a copy of pkt, described by g, with the fields that
// coalescing and splitting may change zeroed: IPv4 ID and checksum, the
// transport checksum and the TCP urgent pointer.
func maskRewritten(pkt []byte, g groPacket) []byte {
	p := bytes.Clone(pkt)
	if !g.v6 {
		p[4], p[5], p[10], p[11] = 0, 0, 0, 0
	}
	t := p[g.iphLen:]
	if g.proto == ipProtoTCP {
		t[16], t[17], t[18], t[19] = 0, 0, 0, 0
	} else {
		t[6], t[7] = 0, 0
	}
	return p
}
