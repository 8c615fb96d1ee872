package tun

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
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
		pkt[6], pkt[7] = unix.IPPROTO_TCP, 64
		copy(pkt[8:], src.AsSlice())
		copy(pkt[24:], dst.AsSlice())
	} else {
		pkt[0] = 0x45
		binary.BigEndian.PutUint16(pkt[2:], uint16(total))
		binary.BigEndian.PutUint16(pkt[4:], id)
		pkt[6] = 0x40 // DF
		pkt[8], pkt[9] = 64, unix.IPPROTO_TCP
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
	binary.BigEndian.PutUint16(tcp[16:], ^checksum(tcp, pseudoHeaderSum(unix.IPPROTO_TCP, src.AsSlice(), dst.AsSlice(), len(tcp))))
	return b
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
			n, err := split(&h, wire, out, sizes, offset)
			if err != nil || n != len(want) {
				t.Fatalf("split = %d, %v; want %d, nil", n, err, len(want))
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
	n, err := split(&h, in[offset:], out, sizes, offset)
	if err != nil || n != 3 {
		t.Fatalf("split = %d, %v", n, err)
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
		if _, err := split(&h, wire, out, sizes, offset); err != nil {
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
		if _, err := split(&hh, wire, out, sizes, offset); err != nil {
			b.Fatal(err)
		}
	}
}
