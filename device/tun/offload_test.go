package tun

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// referenceChecksum is RFC 1071 the slow way: big-endian 16-bit words.
func referenceChecksum(b []byte, initial uint32) uint16 {
	sum := initial
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

func TestChecksum(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 300 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		for _, initial := range []uint32{0, 0x1234, 0xffff} {
			got, want := checksum(b, uint64(initial)), referenceChecksum(b, initial)
			// 0 and 0xffff are both zero in one's complement.
			if got != want && !(got%0xffff == 0 && want%0xffff == 0) {
				t.Fatalf("len %d initial %#x: checksum = %#04x, want %#04x", n, initial, got, want)
			}
		}
	}
}

// segment describes one test packet of a flow.
type segment struct {
	payload int
	flags   uint8 // TCP flags; 0 means ACK
	seq     uint32
	sport   uint16
}

// tcpPacket builds a TCP packet with valid checksums and headroom offset.
func tcpPacket(src, dst netip.Addr, s segment, id uint16, offset int) []byte {
	iphLen := 20
	if src.Is6() {
		iphLen = 40
	}
	const thl = 32 // with 12 bytes of options (timestamps)
	total := iphLen + thl + s.payload
	b := make([]byte, offset+total, offset+total+64)
	pkt := b[offset:]
	if src.Is6() {
		pkt[0] = 0x60
		binary.BigEndian.PutUint16(pkt[4:], uint16(total-40))
		pkt[6], pkt[7] = ipProtoTCP, 64
		copy(pkt[8:], src.AsSlice())
		copy(pkt[24:], dst.AsSlice())
	} else {
		pkt[0] = 0x45
		binary.BigEndian.PutUint16(pkt[2:], uint16(total))
		binary.BigEndian.PutUint16(pkt[4:], id)
		pkt[6] = 0x40 // DF
		pkt[8], pkt[9] = 64, ipProtoTCP
		copy(pkt[12:], src.AsSlice())
		copy(pkt[16:], dst.AsSlice())
		binary.BigEndian.PutUint16(pkt[10:], ^checksum(pkt[:20], 0))
	}
	tcp := pkt[iphLen:]
	binary.BigEndian.PutUint16(tcp[0:], s.sport)
	binary.BigEndian.PutUint16(tcp[2:], 443)
	binary.BigEndian.PutUint32(tcp[4:], s.seq)
	binary.BigEndian.PutUint32(tcp[8:], 777)
	tcp[12] = thl / 4 << 4
	tcp[13] = s.flags
	if s.flags == 0 {
		tcp[13] = tcpFlagACK
	}
	binary.BigEndian.PutUint16(tcp[14:], 512)
	copy(tcp[20:thl], []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2})
	for i := range s.payload {
		tcp[thl+i] = byte(int(s.seq) + i)
	}
	binary.BigEndian.PutUint16(tcp[16:], ^checksum(tcp, pseudoHeaderSum(ipProtoTCP, src.AsSlice(), dst.AsSlice(), len(tcp))))
	return b
}

// udpPacket builds a UDP packet of payload bytes with valid checksums and
// headroom offset.
func udpPacket(src, dst netip.Addr, payload int, id uint16, offset int) []byte {
	iphLen := 20
	if src.Is6() {
		iphLen = 40
	}
	total := iphLen + 8 + payload
	b := make([]byte, offset+total)
	pkt := b[offset:]
	if src.Is6() {
		pkt[0] = 0x60
		binary.BigEndian.PutUint16(pkt[4:], uint16(total-40))
		pkt[6], pkt[7] = ipProtoUDP, 64
		copy(pkt[8:], src.AsSlice())
		copy(pkt[24:], dst.AsSlice())
	} else {
		pkt[0] = 0x45
		binary.BigEndian.PutUint16(pkt[2:], uint16(total))
		binary.BigEndian.PutUint16(pkt[4:], id)
		pkt[8], pkt[9] = 64, ipProtoUDP
		copy(pkt[12:], src.AsSlice())
		copy(pkt[16:], dst.AsSlice())
		binary.BigEndian.PutUint16(pkt[10:], ^checksum(pkt[:20], 0))
	}
	udp := pkt[iphLen:]
	binary.BigEndian.PutUint16(udp[0:], 4000)
	binary.BigEndian.PutUint16(udp[2:], 51820)
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	for i := range payload {
		udp[8+i] = byte(i * 7)
	}
	csum := ^checksum(udp, pseudoHeaderSum(ipProtoUDP, src.AsSlice(), dst.AsSlice(), len(udp)))
	if csum == 0 {
		csum = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:], csum)
	return b
}

// coalesced coalesces the packets bufs[i][offset:] the way Write does,
// expecting one run, and returns the virtio header and the GSO packet the
// kernel would get. bufs[0] is rewritten.
func coalesced(tb testing.TB, bufs [][]byte, offset int) (virtioNetHdr, []byte) {
	tb.Helper()
	end, seg, total, hdrLen := groRun(bufs, 0, offset, true)
	if end != len(bufs) {
		tb.Fatalf("run ends at %d, want %d", end, len(bufs))
	}
	h := coalesceHead(bufs, 0, end, offset, seg, total)
	wire := bytes.Clone(bufs[0][offset:])
	for _, b := range bufs[1:] {
		wire = append(wire, b[offset+hdrLen:]...)
	}
	return h, wire
}

// tcpFlow returns the packets of a TCP flow of the given payload sizes,
// the last one with flags last (0: ACK).
func tcpFlow(v6 bool, last uint8, offset int, sizes ...int) [][]byte {
	src, dst := src4, dst4
	if v6 {
		src, dst = src6, dst6
	}
	segs := flow(sizes...)
	segs[len(segs)-1].flags = last
	bufs := make([][]byte, len(segs))
	for i, s := range segs {
		bufs[i] = tcpPacket(src, dst, s, uint16(100+i), offset)
	}
	return bufs
}

// udpFlow returns n UDP packets of payload bytes each, then one of lastPayload
// bytes unless it is 0.
func udpFlow(v6 bool, offset, n, payload, lastPayload int) [][]byte {
	src, dst := src4, dst4
	if v6 {
		src, dst = src6, dst6
	}
	var bufs [][]byte
	for i := range n {
		bufs = append(bufs, udpPacket(src, dst, payload, uint16(i), offset))
	}
	if lastPayload > 0 {
		bufs = append(bufs, udpPacket(src, dst, lastPayload, uint16(n), offset))
	}
	return bufs
}

// flow returns consecutive segments of the given payload sizes.
func flow(sizes ...int) []segment {
	segs := make([]segment, len(sizes))
	seq := uint32(1000)
	for i, n := range sizes {
		segs[i] = segment{payload: n, seq: seq, sport: 5000}
		seq += uint32(n)
	}
	return segs
}

var (
	src4, dst4 = netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	src6, dst6 = netip.MustParseAddr("fd00:7761::1"), netip.MustParseAddr("fd00:7761::2")
)

func TestGRORun(t *testing.T) {
	const offset = 16
	mod := func(segs []segment, f func([]segment)) []segment { f(segs); return segs }
	tests := []struct {
		name string
		v6   bool
		segs []segment
		ends []int // end of each run, in order
	}{
		{"one packet", false, flow(1000), []int{1}},
		{"run", false, flow(1000, 1000, 1000, 1000), []int{4}},
		{"ipv6 run", true, flow(1200, 1200, 1200), []int{3}},
		{"short last", false, flow(1000, 1000, 500), []int{3}},
		{"short ends the run", false, flow(1000, 500, 1000), []int{2, 3}},
		{"larger breaks", false, flow(500, 1000), []int{1, 2}},
		{"sequence gap", false, mod(flow(1000, 1000, 1000), func(s []segment) { s[2].seq += 1 }), []int{2, 3}},
		{"other flow", false, mod(flow(1000, 1000, 1000), func(s []segment) { s[1].sport = 1 }), []int{1, 2, 3}},
		{"PSH ends the run", false, mod(flow(1000, 1000, 1000), func(s []segment) { s[1].flags = tcpFlagACK | tcpFlagPSH }), []int{2, 3}},
		{"PSH head alone", false, mod(flow(1000, 1000), func(s []segment) { s[0].flags = tcpFlagACK | tcpFlagPSH }), []int{1, 2}},
		{"FIN alone", false, mod(flow(1000, 1000, 1000), func(s []segment) { s[1].flags = tcpFlagACK | tcpFlagFIN }), []int{1, 2, 3}},
		{"64 KB limit", false, flow(1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400,
			1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400,
			1400, 1400, 1400, 1400, 1400, 1400, 1400, 1400), []int{46, 48}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := src4, dst4
			if tc.v6 {
				src, dst = src6, dst6
			}
			bufs := make([][]byte, len(tc.segs))
			for i, s := range tc.segs {
				bufs[i] = tcpPacket(src, dst, s, uint16(i), offset)
			}
			var ends []int
			for i := 0; i < len(bufs); {
				end, _, total, _ := groRun(bufs, i, offset, true)
				if total > maxGSOPacket {
					t.Errorf("run at %d: %d bytes", i, total)
				}
				ends = append(ends, end)
				i = end
			}
			if fmt.Sprint(ends) != fmt.Sprint(tc.ends) {
				t.Errorf("runs end at %v, want %v", ends, tc.ends)
			}
		})
	}
}

// TestCoalesceSplit coalesces a run the way Write does and splits the result
// the way Read does: the packets must come back byte for byte, checksums
// included.
func TestCoalesceSplit(t *testing.T) {
	const offset = 16
	for _, tc := range []struct {
		name  string
		v6    bool
		sizes []int
		last  uint8
	}{
		{"ipv4", false, []int{1000, 1000, 1000, 1000, 300}, tcpFlagACK | tcpFlagPSH},
		{"ipv6", true, []int{1200, 1200, 1200}, tcpFlagACK},
		{"ipv4 odd", false, []int{999, 999, 1}, tcpFlagACK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := src4, dst4
			if tc.v6 {
				src, dst = src6, dst6
			}
			segs := flow(tc.sizes...)
			segs[len(segs)-1].flags = tc.last
			var bufs, want [][]byte
			for i, s := range segs {
				b := tcpPacket(src, dst, s, uint16(100+i), offset)
				bufs = append(bufs, b)
				want = append(want, bytes.Clone(b[offset:]))
			}
			end, seg, total, hdrLen := groRun(bufs, 0, offset, true)
			if end != len(bufs) {
				t.Fatalf("run ends at %d, want %d", end, len(bufs))
			}
			h := coalesceHead(bufs, 0, end, offset, seg, total)
			wire := bytes.Clone(bufs[0][offset:])
			for _, b := range bufs[1:] {
				wire = append(wire, b[offset+hdrLen:]...)
			}
			if len(wire) != total {
				t.Fatalf("coalesced %d bytes, want %d", len(wire), total)
			}
			out := make([][]byte, 8)
			for i := range out {
				out[i] = make([]byte, offset+2000)
			}
			sizes := make([]int, len(out))
			n, rest, err := split(&h, wire, out, sizes, offset, nil)
			if err != nil || n != len(want) || rest != 0 {
				t.Fatalf("split = %d, %d, %v; want %d, 0, nil", n, rest, err, len(want))
			}
			for i := range n {
				if got := out[i][offset : offset+sizes[i]]; !bytes.Equal(got, want[i]) {
					t.Errorf("packet %d differs:\n got %x\nwant %x", i, got[:60], want[i][:60])
				}
			}
		})
	}
}

// TestSplitInPlace reads a GSO packet that starts in bufs[0] itself, as Read
// does with large buffers.
func TestSplitInPlace(t *testing.T) {
	const offset = 16
	segs := flow(1000, 1000, 700)
	var bufs, want [][]byte
	for i, s := range segs {
		b := tcpPacket(src4, dst4, s, uint16(i), offset)
		bufs = append(bufs, b)
		want = append(want, bytes.Clone(b[offset:]))
	}
	end, seg, total, hdrLen := groRun(bufs, 0, offset, true)
	h := coalesceHead(bufs, 0, end, offset, seg, total)
	out := make([][]byte, 4)
	for i := range out {
		out[i] = make([]byte, offset+maxGSOPacket)
	}
	in := append(out[0][:offset], bufs[0][offset:]...)
	for _, b := range bufs[1:] {
		in = append(in, b[offset+hdrLen:]...)
	}
	sizes := make([]int, len(out))
	n, _, err := split(&h, in[offset:], out, sizes, offset, nil)
	if err != nil || n != 3 {
		t.Fatalf("split = %d, %v; want 3, nil", n, err)
	}
	for i := range n {
		if !bytes.Equal(out[i][offset:offset+sizes[i]], want[i]) {
			t.Errorf("packet %d differs", i)
		}
	}
}

// TestOffloadAllocs pins the per-packet work of Write and Read at zero
// allocations.
func TestOffloadAllocs(t *testing.T) {
	const offset = 16
	segs := flow(1400, 1400, 1400, 1400)
	bufs := make([][]byte, len(segs))
	out := make([][]byte, len(segs))
	sizes := make([]int, len(segs))
	wire := make([]byte, 0, maxGSOPacket)
	for i := range out {
		out[i] = make([]byte, offset+2000)
	}
	allocs := testing.AllocsPerRun(100, func() {
		for i, s := range segs {
			bufs[i] = tcpPacket(src4, dst4, s, uint16(i), offset)
		}
		end, seg, total, hdrLen := groRun(bufs, 0, offset, true)
		h := coalesceHead(bufs, 0, end, offset, seg, total)
		wire = append(wire[:0], bufs[0][offset:]...)
		for _, b := range bufs[1:] {
			wire = append(wire, b[offset+hdrLen:]...)
		}
		if _, _, err := split(&h, wire, out, sizes, offset, nil); err != nil {
			t.Fatal(err)
		}
	})
	// tcpPacket allocates one buffer per packet; the rest must not.
	if allocs != float64(len(segs)) {
		t.Errorf("%v allocations per batch, want %d (the test's own packets)", allocs, len(segs))
	}
}

func BenchmarkSplit(b *testing.B) {
	const offset = 16
	var segs []int
	for range 46 {
		segs = append(segs, 1400)
	}
	bufs := make([][]byte, len(segs))
	for i, s := range flow(segs...) {
		bufs[i] = tcpPacket(src4, dst4, s, uint16(i), offset)
	}
	end, seg, total, hdrLen := groRun(bufs, 0, offset, true)
	h := coalesceHead(bufs, 0, end, offset, seg, total)
	wire := bytes.Clone(bufs[0][offset:])
	for _, b := range bufs[1:] {
		wire = append(wire, b[offset+hdrLen:]...)
	}
	out := make([][]byte, 64)
	for i := range out {
		out[i] = make([]byte, offset+2000)
	}
	sizes := make([]int, len(out))
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	for b.Loop() {
		hh := h
		if _, _, err := split(&hh, wire, out, sizes, offset, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSplitMalformed gives split packets whose virtio header does not match
// them: each must be refused, none may panic. The first case is well formed:
// a UDP GSO packet of fewer than 6 payload bytes, for which split once read
// TCP flags past its end.
func TestSplitMalformed(t *testing.T) {
	const offset = 16
	gso := func(bufs [][]byte, edit func(h *virtioNetHdr, pkt []byte) []byte) func() (virtioNetHdr, []byte) {
		return func() (virtioNetHdr, []byte) {
			h, pkt := coalesced(t, bufs, offset)
			return h, edit(&h, pkt)
		}
	}
	keep := func(h *virtioNetHdr, pkt []byte) []byte { return pkt }
	tcp := func() [][]byte { return tcpFlow(false, tcpFlagACK, offset, 100, 100, 50) }
	tcp6 := func() [][]byte { return tcpFlow(true, tcpFlagACK, offset, 100, 100, 50) }
	udp := func() [][]byte { return udpFlow(false, offset, 3, 100, 0) }
	tests := []struct {
		name string
		pkt  func() (virtioNetHdr, []byte)
		want int // packets; 0: an error
	}{
		{"udp tiny payload", gso(udpFlow(false, offset, 2, 2, 0), keep), 2},
		{"udp headers only", gso(udp(), func(h *virtioNetHdr, p []byte) []byte { return p[:28] }), 0},
		{"udp header cut", gso(udp(), func(h *virtioNetHdr, p []byte) []byte { return p[:25] }), 0},
		{"tcp header cut", gso(tcp(), func(h *virtioNetHdr, p []byte) []byte { return p[:30] }), 0},
		{"tcp data offset 0", gso(tcp(), func(h *virtioNetHdr, p []byte) []byte { p[32] = 0; return p }), 0},
		{"tcp data offset 4", gso(tcp(), func(h *virtioNetHdr, p []byte) []byte { p[32] = 4 << 4; return p }), 0},
		{"tcp data offset past the end", gso(tcp(), func(h *virtioNetHdr, p []byte) []byte { p[32] = 15 << 4; return p[:70] }), 0},
		{"ip version 5", gso(tcp(), func(h *virtioNetHdr, p []byte) []byte { p[0] = 0x55; return p }), 0},
		{"ipv4 header length", gso(tcp(), func(h *virtioNetHdr, p []byte) []byte { p[0] = 0x46; return p }), 0},
		{"csum start short", gso(tcp(), func(h *virtioNetHdr, p []byte) []byte { h.csumStart = 12; return p }), 0},
		{"csum start past the end", gso(tcp(), func(h *virtioNetHdr, p []byte) []byte { h.csumStart = 4000; return p }), 0},
		{"ipv6 csum start short", gso(tcp6(), func(h *virtioNetHdr, p []byte) []byte { h.csumStart = 20; return p }), 0},
		{"tcpv6 type on ipv4", gso(tcp(), func(h *virtioNetHdr, p []byte) []byte { h.gsoType = virtioNetHdrGSOTCPv6; return p }), 0},
		{"gso size 0", gso(tcp(), func(h *virtioNetHdr, p []byte) []byte { h.gsoSize = 0; return p }), 0},
		{"segment over 64 KiB", gso(tcp(), func(h *virtioNetHdr, p []byte) []byte {
			h.gsoSize = maxGSOPacket
			return append(p, make([]byte, maxGSOPacket)...)
		}), 0},
		{"unknown gso type", gso(tcp(), func(h *virtioNetHdr, p []byte) []byte { h.gsoType = 3; return p }), 0},
		{"empty", func() (virtioNetHdr, []byte) { return virtioNetHdr{}, nil }, 0},
		{"checksum past the end", func() (virtioNetHdr, []byte) {
			return virtioNetHdr{flags: virtioNetHdrFNeedsCsum, csumStart: 20, csumOffset: 90}, make([]byte, 100)
		}, 0},
		{"checksum start past the end", func() (virtioNetHdr, []byte) {
			return virtioNetHdr{flags: virtioNetHdrFNeedsCsum, csumStart: 100}, make([]byte, 100)
		}, 0},
	}
	s := newSplitter(64, offset)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, pkt := tc.pkt()
			got, hdrLen, err := s.splitAll(h, pkt, 64, splitApart)
			if tc.want == 0 {
				if err == nil || len(got) != 0 {
					t.Errorf("split = %d packets, %v; want an error", len(got), err)
				}
				return
			}
			if err != nil || len(got) != tc.want {
				t.Fatalf("split = %d packets, %v; want %d, nil", len(got), err, tc.want)
			}
			if err := checkSplit(h, pkt, got, hdrLen); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestSplitRest splits GSO packets into fewer buffers than segments, the
// packet and the rest where TUN.Read keeps them: the packets must come in
// order, none lost, as from one split with room for all.
func TestSplitRest(t *testing.T) {
	const offset = 16
	s := newSplitter(64, offset)
	for _, tc := range []struct {
		name string
		bufs [][]byte
	}{
		{"tcp", tcpFlow(false, tcpFlagACK|tcpFlagPSH, offset, 100, 100, 100, 100, 100, 100, 100, 33)},
		{"tcp6", tcpFlow(true, tcpFlagACK, offset, 64, 64, 64, 64, 64, 64, 64, 64)},
		{"udp", udpFlow(false, offset, 9, 80, 7)},
		{"udp6", udpFlow(true, offset, 7, 80, 0)},
	} {
		want := make([][]byte, len(tc.bufs))
		for i, b := range tc.bufs {
			want[i] = bytes.Clone(b[offset:])
		}
		h, pkt := coalesced(t, tc.bufs, offset)
		for _, batch := range []int{1, 2, 3, 7} {
			for _, mode := range []splitMode{splitApart, splitRbuf, splitInPlace} {
				t.Run(fmt.Sprintf("%s/%d/%v", tc.name, batch, mode), func(t *testing.T) {
					got, _, err := s.splitAll(h, pkt, batch, mode)
					if err != nil {
						t.Fatal(err)
					}
					if !equalPackets(got, want) {
						t.Errorf("split in batches of %d gives %d packets, not the %d originals", batch, len(got), len(want))
					}
				})
			}
		}
	}
}

// BenchmarkCoalesce coalesces a run of 46 packets the way Write does.
func BenchmarkCoalesce(b *testing.B) {
	const offset = 16
	var sizes []int
	for range 46 {
		sizes = append(sizes, 1400)
	}
	bufs := tcpFlow(false, tcpFlagACK, offset, sizes...)
	head := bytes.Clone(bufs[0][offset : offset+52])
	b.SetBytes(int64(len(sizes) * 1400))
	b.ReportAllocs()
	for b.Loop() {
		copy(bufs[0][offset:], head) // coalesceHead rewrote it
		end, seg, total, _ := groRun(bufs, 0, offset, true)
		if end != len(bufs) {
			b.Fatalf("run ends at %d", end)
		}
		coalesceHead(bufs, 0, end, offset, seg, total)
	}
}

// TestGROVerifiesChecksums: a packet whose TCP or UDP (or IPv4 header)
// checksum is wrong joins no run: it ends the run before it and, as a head,
// is written alone, so that the kernel sees its checksum and drops it
// instead of a coalesced packet with a fresh checksum hiding it (issue 14).
func TestGROVerifiesChecksums(t *testing.T) {
	const offset = 16
	corrupt := map[string]func(pkt []byte){
		"payload":            func(pkt []byte) { pkt[len(pkt)-3] ^= 0x40 },
		"transport checksum": func(pkt []byte) { pkt[len(pkt)-1400-1] ^= 1 }, // TCP: an option byte; UDP: the checksum
		"IPv4 header":        func(pkt []byte) { pkt[5] ^= 1 },               // IPv4: the ID, under the header checksum; IPv6: the payload length
	}
	for _, v6 := range []bool{false, true} {
		for _, udp := range []bool{false, true} {
			for name, f := range corrupt {
				for bad := range 4 {
					var bufs [][]byte
					if udp {
						bufs = udpFlow(v6, offset, 4, 1400, 0)
					} else {
						bufs = tcpFlow(v6, tcpFlagACK, offset, 1400, 1400, 1400, 1400)
					}
					f(bufs[bad][offset:])
					// The runs: before bad, bad alone, after bad.
					var want []int
					if bad > 0 {
						want = append(want, bad)
					}
					want = append(want, bad+1)
					if bad+1 < len(bufs) {
						want = append(want, len(bufs))
					}
					var got []int
					for i := 0; i < len(bufs); {
						end, _, _, _ := groRun(bufs, i, offset, true)
						got = append(got, end)
						i = end
					}
					if !slices.Equal(got, want) {
						t.Errorf("v6=%v udp=%v %s corrupt in packet %d: runs end at %v, want %v", v6, udp, name, bad, got, want)
					}
				}
			}
		}
	}
	// IPv4 UDP without a checksum (0) coalesces.
	bufs := udpFlow(false, offset, 4, 1400, 0)
	for _, b := range bufs {
		b[offset+20+6], b[offset+20+7] = 0, 0
	}
	if end, _, _, _ := groRun(bufs, 0, offset, true); end != len(bufs) {
		t.Errorf("UDP without checksums: run ends at %d, want %d", end, len(bufs))
	}
}
