package tun

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// withEthernet returns bufs with an Ethernet header and tags VLAN tags
// (the outer one 802.1ad where there are two) put between the headroom of
// offset bytes and each packet.
func withEthernet(bufs [][]byte, offset, tags int) [][]byte {
	out := make([][]byte, len(bufs))
	for i, b := range bufs {
		pkt := b[offset:]
		f := make([]byte, offset, offset+ethHeaderLen+tags*vlanTagLen+len(pkt))
		f = append(f, 2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1)
		for k := range tags {
			tpid := uint16(etherTypeVLAN)
			if tags == 2 && k == 0 {
				tpid = etherTypeQinQ
			}
			f = binary.BigEndian.AppendUint16(f, tpid)
			f = binary.BigEndian.AppendUint16(f, uint16(100+k))
		}
		et := uint16(etherTypeIPv4)
		if pkt[0]>>4 == 6 {
			et = etherTypeIPv6
		}
		f = binary.BigEndian.AppendUint16(f, et)
		out[i] = append(f, pkt...)
	}
	return out
}

// coalescedFrame coalesces the frames bufs[i][offset:] as TAP.Write does,
// expecting one run, and returns the virtio header and the frame the kernel
// would get.
func coalescedFrame(tb testing.TB, bufs [][]byte, offset int) (virtioNetHdr, []byte) {
	tb.Helper()
	h, end, skip := coalesceFrames(bufs, 0, offset, true)
	if end != len(bufs) {
		tb.Fatalf("run ends at %d, want %d", end, len(bufs))
	}
	wire := bytes.Clone(bufs[0][offset:])
	for _, b := range bufs[1:] {
		wire = append(wire, b[offset+skip:]...)
	}
	return h, wire
}

// TestFrameCoalesceSplit: TCP and UDP flows over IPv4 and IPv6 behind an
// Ethernet header with 0, 1 and 2 VLAN tags coalesce into one GSO frame
// whose headers count from the frame's start, and split back into the same
// frames.
func TestFrameCoalesceSplit(t *testing.T) {
	const offset = 20 // the engine's layer 2 offset
	for _, v6 := range []bool{false, true} {
		for _, udp := range []bool{false, true} {
			for tags := range 3 {
				var pkts [][]byte
				if udp {
					pkts = udpFlow(v6, offset, 5, 1000, 300)
				} else {
					pkts = tcpFlow(v6, tcpFlagACK|tcpFlagPSH, offset, 1000, 1000, 1000, 1000, 300)
				}
				bufs := withEthernet(pkts, offset, tags)
				orig := make([][]byte, len(bufs))
				for i, b := range bufs {
					orig[i] = bytes.Clone(b[offset:])
				}
				eth := ethHeaderLen + tags*vlanTagLen
				if got := ethIPHeaderLen(orig[0]); got != eth {
					t.Fatalf("ethIPHeaderLen = %d, want %d", got, eth)
				}
				h, wire := coalescedFrame(t, bufs, offset)
				g := parseGRO(orig[0][eth:])
				if int(h.csumStart) != eth+g.iphLen || int(h.hdrLen) != eth+g.hdrLen || h.gsoSize != 1000 {
					t.Errorf("v6=%v udp=%v tags=%d: header %+v, want csumStart %d hdrLen %d gsoSize 1000", v6, udp, tags, h, eth+g.iphLen, eth+g.hdrLen)
				}
				out := make([][]byte, 8)
				for i := range out {
					out[i] = make([]byte, offset+2000)
				}
				sizes := make([]int, len(out))
				rest := make([]byte, maxGSOFrame)
				n, restLen, err := splitFrame(&h, wire, out, sizes, offset, rest, 1500)
				if err != nil || n != len(orig) || restLen != 0 {
					t.Fatalf("v6=%v udp=%v tags=%d: splitFrame = %d, %d, %v; want %d, 0, nil", v6, udp, tags, n, restLen, err, len(orig))
				}
				for i := range n {
					got := out[i][offset : offset+sizes[i]]
					if err := checkIP(got[eth:], g.iphLen, g.proto); err != nil {
						t.Errorf("frame %d: %v", i, err)
					}
					if !bytes.Equal(maskRewritten(got[eth:], g), maskRewritten(orig[i][eth:], g)) || !bytes.Equal(got[:eth], orig[i][:eth]) {
						t.Errorf("v6=%v udp=%v tags=%d: frame %d after coalesce and split:\n got %x\nwant %x", v6, udp, tags, i, got, orig[i])
					}
				}
			}
		}
	}
}

// TestFrameCoalesceBounds: frames behind different Ethernet headers, or
// carrying no IP, do not coalesce; a frame with a wrong checksum is written
// alone.
func TestFrameCoalesceBounds(t *testing.T) {
	const offset = 20
	fresh := func() [][]byte {
		return withEthernet(tcpFlow(false, tcpFlagACK, offset, 1000, 1000, 1000, 1000), offset, 1)
	}
	runs := func(bufs [][]byte) []int {
		var ends []int
		for i := 0; i < len(bufs); {
			_, end, _ := coalesceFrames(bufs, i, offset, true)
			ends = append(ends, end)
			i = end
		}
		return ends
	}
	for _, c := range []struct {
		name   string
		change func(bufs [][]byte)
		want   []int
	}{
		{"one flow", func([][]byte) {}, []int{4}},
		{"another destination MAC", func(b [][]byte) { b[2][offset+5], b[3][offset+5] = 9, 9 }, []int{2, 4}},
		{"another VLAN", func(b [][]byte) { b[1][offset+15] = 7 }, []int{1, 2, 4}},
		{"an ARP EtherType", func(b [][]byte) { b[0][offset+17] = 0x06 }, []int{1, 4}},
		{"an EtherType saying IPv6", func(b [][]byte) { b[0][offset+16], b[0][offset+17] = 0x86, 0xdd }, []int{1, 4}},
		{"a corrupt payload", func(b [][]byte) { b[2][len(b[2])-1] ^= 1 }, []int{2, 3, 4}},
		{"three tags", func(b [][]byte) {
			for i := range b {
				b[i][offset+16], b[i][offset+17] = 0x81, 0x00
			}
		}, []int{1, 2, 3, 4}},
	} {
		bufs := fresh()
		c.change(bufs)
		if got := runs(bufs); !equalInts(got, c.want) {
			t.Errorf("%s: runs end at %v, want %v", c.name, got, c.want)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestSplitFrameMTU: a TCP GSO frame whose segment size is larger than the
// TAP's MTU allows (a sender on a LAN with a larger MTU, through a bridge)
// is cut into frames that fit the MTU, the same bytes in order; a UDP one
// keeps its datagrams.
func TestSplitFrameMTU(t *testing.T) {
	const offset, mtu = 20, 1402
	bufs := withEthernet(tcpFlow(false, tcpFlagACK, offset, 1448, 1448, 1448, 1448), offset, 0)
	var payload []byte
	for _, b := range bufs {
		payload = append(payload, b[offset+14+52:]...)
	}
	h, wire := coalescedFrame(t, bufs, offset)
	out := make([][]byte, 16)
	for i := range out {
		out[i] = make([]byte, offset+2000)
	}
	sizes := make([]int, len(out))
	n, restLen, err := splitFrame(&h, wire, out, sizes, offset, make([]byte, maxGSOFrame), mtu)
	if err != nil || restLen != 0 {
		t.Fatalf("splitFrame = %d, %d, %v", n, restLen, err)
	}
	var got []byte
	for i := range n {
		f := out[i][offset : offset+sizes[i]]
		if len(f)-14 > mtu {
			t.Errorf("frame %d carries %d bytes of IP, MTU %d", i, len(f)-14, mtu)
		}
		if err := checkIP(f[14:], 20, ipProtoTCP); err != nil {
			t.Errorf("frame %d: %v", i, err)
		}
		got = append(got, f[14+52:]...)
	}
	if n != 5 || !bytes.Equal(got, payload) {
		t.Errorf("%d frames carrying %d bytes, want 5 carrying the %d sent", n, len(got), len(payload))
	}
}

// TestFrameOffloadAllocs: coalescing and splitting frames allocate nothing.
func TestFrameOffloadAllocs(t *testing.T) {
	const offset = 20
	bufs := withEthernet(tcpFlow(false, tcpFlagACK, offset, 1000, 1000, 1000), offset, 1)
	head := bytes.Clone(bufs[0])
	h0, wire := coalescedFrame(t, bufs, offset)
	out := make([][]byte, 8)
	for i := range out {
		out[i] = make([]byte, offset+2000)
	}
	sizes := make([]int, len(out))
	rest := make([]byte, maxGSOFrame)
	allocs := testing.AllocsPerRun(100, func() {
		copy(bufs[0], head)
		if _, end, _ := coalesceFrames(bufs, 0, offset, true); end != len(bufs) {
			t.Fatal("no run")
		}
		h := h0
		if n, _, err := splitFrame(&h, wire, out, sizes, offset, rest, 1500); n != 3 || err != nil {
			t.Fatal(n, err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per coalesce and split", allocs)
	}
}

// BenchmarkCoalesceFrames coalesces a run of 46 VLAN-tagged TCP frames of
// 1400 bytes of payload the way TAP.Write does (checksums verified).
func BenchmarkCoalesceFrames(b *testing.B) {
	const offset = 20
	sizes := make([]int, 46)
	for i := range sizes {
		sizes[i] = 1400
	}
	bufs := withEthernet(tcpFlow(false, tcpFlagACK, offset, sizes...), offset, 1)
	head := bytes.Clone(bufs[0])
	b.SetBytes(int64(len(sizes) * 1400))
	b.ReportAllocs()
	for b.Loop() {
		copy(bufs[0], head) // coalescing rewrote it
		if _, end, _ := coalesceFrames(bufs, 0, offset, true); end != len(bufs) {
			b.Fatalf("run ends at %d", end)
		}
	}
}

// BenchmarkSplitFrame splits a VLAN-tagged TCP GSO frame of 46 segments of
// 1400 bytes the way TAP.Read does, in place in the first buffer.
func BenchmarkSplitFrame(b *testing.B) {
	const offset = 20
	sizes := make([]int, 46)
	for i := range sizes {
		sizes[i] = 1400
	}
	bufs := withEthernet(tcpFlow(false, tcpFlagACK, offset, sizes...), offset, 1)
	h0, wire := coalescedFrame(b, bufs, offset)
	out := make([][]byte, 64)
	for i := range out {
		out[i] = make([]byte, offset+maxGSOFrame)
	}
	outSizes := make([]int, len(out))
	rest := make([]byte, maxGSOFrame)
	b.SetBytes(int64(len(sizes) * 1400))
	b.ReportAllocs()
	for b.Loop() {
		copy(out[0][offset:], wire)
		h := h0
		if n, _, err := splitFrame(&h, out[0][offset:offset+len(wire)], out, outSizes, offset, rest, 1500); n != len(sizes) || err != nil {
			b.Fatalf("splitFrame = %d, %v", n, err)
		}
	}
}
