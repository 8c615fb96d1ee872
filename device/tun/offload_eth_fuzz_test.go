package tun

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzSplitFrame splits arbitrary frames after arbitrary virtio headers as
// TAP.Read does (the rest kept in the read buffer, carried from call to
// call): no panic, and where the split succeeds every frame of a GSO split
// carries the input's Ethernet header and tags, a valid IP packet, and fits
// the MTU where it is TCP.
func FuzzSplitFrame(f *testing.F) {
	const offset = 20
	// Small seeds: the fuzzer slows to a crawl on inputs of kilobytes.
	// An MTU of 200 cuts the first flow's segments.
	for tags := range 3 {
		for _, c := range []struct {
			pkts [][]byte
			mtu  uint16
		}{
			{tcpFlow(false, tcpFlagACK|tcpFlagPSH, offset, 300, 300, 300, 10), 200},
			{tcpFlow(true, tcpFlagACK, offset, 100, 100), 1402},
			{udpFlow(false, offset, 3, 120, 50), 1402},
		} {
			bufs := withEthernet(c.pkts, offset, tags)
			h, wire := coalescedFrame(f, bufs, offset)
			var hb [virtioNetHdrLen]byte
			h.encode(hb[:])
			f.Add(hb[:], wire, c.mtu)
		}
	}
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, offset+maxGSOFrame)
	}
	sizes := make([]int, len(bufs))
	rbuf := make([]byte, virtioNetHdrLen+maxGSOFrame)
	f.Fuzz(func(t *testing.T, hdr, frame []byte, mtu uint16) {
		if len(frame) > maxGSOFrame || len(frame) == 0 {
			return // Read never has more, nor an empty frame
		}
		var b [virtioNetHdrLen]byte
		copy(b[:], hdr)
		var h virtioNetHdr
		h.decode(b[:])
		if h.gsoSize != 0 && len(frame)/int(h.gsoSize) > 4096 {
			return // slow, and nothing a kernel sends
		}
		gso := h.gsoType != virtioNetHdrGSONone
		eth := ethIPHeaderLen(frame)
		head := bytes.Clone(frame[:min(eth, len(frame))])
		// A few buffers at a time, so that the rest is carried from
		// call to call, but not so few that a frame of thousands of
		// segments takes thousands of calls.
		batch := bufs[:3]
		if len(frame) > 8192 {
			batch = bufs
		}
		cur := rbuf[virtioNetHdrLen : virtioNetHdrLen+copy(rbuf[virtioNetHdrLen:], frame)]
		rest := rbuf[virtioNetHdrLen:]
		// Each call leaves a shorter rest (checked), so the split ends;
		// past 1024 segments (a tiny MTU or segment size) the fuzz run
		// stops following it, for speed.
		for range 1024/len(batch) + 1 {
			n, restLen, err := splitFrame(&h, cur, batch, sizes, offset, rest, int(mtu))
			if n < 0 || n > len(batch) || restLen < 0 || restLen > len(rest) {
				t.Fatalf("splitFrame = %d, %d, %v", n, restLen, err)
			}
			for i := range n {
				out := bufs[i][offset : offset+sizes[i]]
				if !gso || err != nil {
					continue
				}
				if !bytes.Equal(out[:eth], head) {
					t.Fatalf("frame %d starts %x, want %x", i, out[:eth], head)
				}
				pkt := out[eth:]
				proto := uint8(ipProtoUDP)
				if h.gsoType != virtioNetHdrGSOUDPL4 {
					proto = ipProtoTCP
				}
				if cerr := checkIP(pkt, int(h.csumStart)-eth, proto); cerr != nil {
					t.Fatalf("frame %d: %v", i, cerr)
				}
				if proto == ipProtoTCP && mtu > 0 && int(h.hdrLen)+1 <= min(int(mtu), int(mtu)+EthernetOverhead-eth) && len(pkt) > int(mtu) {
					t.Fatalf("frame %d carries %d bytes of IP, MTU %d", i, len(pkt), mtu)
				}
			}
			if err != nil || restLen == 0 {
				return
			}
			if restLen >= len(cur) {
				t.Fatalf("rest of %d bytes from a frame of %d", restLen, len(cur))
			}
			cur = rest[:restLen]
		}
	})
}

// FuzzCoalesceFrames coalesces arbitrary frames as TAP.Write does: no
// panic, and every coalesced run splits back into its frames, equal but for
// the IPv4 IDs, checksums and TCP urgent pointer.
func FuzzCoalesceFrames(f *testing.F) {
	const offset = 20
	pack := func(bufs [][]byte) []byte {
		var b []byte
		for _, p := range bufs {
			b = binary.BigEndian.AppendUint16(b, uint16(len(p)-offset))
			b = append(b, p[offset:]...)
		}
		return b
	}
	for tags := range 3 {
		for _, pkts := range [][][]byte{
			tcpFlow(false, tcpFlagACK|tcpFlagPSH, offset, 40, 40, 40, 13),
			tcpFlow(true, tcpFlagACK, offset, 32, 32, 32),
			udpFlow(false, offset, 4, 24, 10),
			append(tcpFlow(false, tcpFlagACK, offset, 16, 16), udpFlow(true, offset, 2, 16, 0)...),
		} {
			f.Add(pack(withEthernet(pkts, offset, tags)), true)
			f.Add(pack(withEthernet(pkts, offset, tags)), false)
		}
	}
	out := make([][]byte, 64)
	for i := range out {
		out[i] = make([]byte, offset+maxGSOFrame)
	}
	sizes := make([]int, len(out))
	rest := make([]byte, maxGSOFrame)
	f.Fuzz(func(t *testing.T, data []byte, udp bool) {
		fix := len(data)%2 == 0 // as FuzzCoalesce
		var bufs, orig [][]byte
		for len(data) >= 2 && len(bufs) < 256 {
			n := min(int(binary.BigEndian.Uint16(data)), len(data)-2)
			b := make([]byte, offset+n)
			copy(b[offset:], data[2:2+n])
			if eth := ethIPHeaderLen(b[offset:]); fix && eth > 0 {
				fixChecksums(b[offset+eth:])
			}
			bufs, orig = append(bufs, b), append(orig, bytes.Clone(b[offset:]))
			data = data[2+n:]
		}
		for i := 0; i < len(bufs); {
			h, end, skip := coalesceFrames(bufs, i, offset, udp)
			if end <= i || end > len(bufs) {
				t.Fatalf("run at %d ends at %d of %d", i, end, len(bufs))
			}
			if end-i == 1 {
				i = end
				continue
			}
			if h.gsoType == virtioNetHdrGSOUDPL4 && !udp {
				t.Fatal("UDP coalesced for a kernel without UDP GSO")
			}
			eth := ethIPHeaderLen(orig[i])
			wire := bytes.Clone(bufs[i][offset:])
			for _, b := range bufs[i+1 : end] {
				wire = append(wire, b[offset+skip:]...)
			}
			n, restLen, err := splitFrame(&h, wire, out, sizes, offset, rest, 0)
			if err != nil || restLen != 0 || n != end-i {
				t.Fatalf("split of a coalesced run of %d: %d, %d, %v", end-i, n, restLen, err)
			}
			for k := range n {
				got, want := out[k][offset:offset+sizes[k]], orig[i+k]
				g := parseGRO(want[eth:])
				if err := checkIP(got[eth:], g.iphLen, g.proto); err != nil {
					t.Fatalf("frame %d: %v", i+k, err)
				}
				if !bytes.Equal(got[:eth], want[:eth]) || !bytes.Equal(maskRewritten(got[eth:], g), maskRewritten(want[eth:], g)) {
					t.Fatalf("frame %d after coalesce and split:\n got %x\nwant %x", i+k, got, want)
				}
			}
			i = end
		}
	})
}
