package transport

import (
	"bytes"
	"net/netip"
	"testing"
)

// FuzzSplitMessages splits up to three received messages of any length and
// any GRO segment size over any number of buffers: it never panics, and the
// datagrams it writes, followed by those the spill queue delivers, partition
// each message in order into segment-sized pieces (the last may be shorter),
// each with its message's endpoint and local address.
func FuzzSplitMessages(f *testing.F) {
	f.Add(bytes.Repeat([]byte{1, 2, 3}, 400), uint8(4), uint16(100), uint16(0), uint16(7), uint16(300), uint16(900))
	f.Add(make([]byte, 64*100), uint8(2), uint16(100), uint16(100), uint16(100), uint16(3200), uint16(6400))
	f.Add([]byte{}, uint8(1), uint16(0), uint16(0), uint16(0), uint16(0), uint16(0))
	f.Add(make([]byte, 1000), uint8(64), uint16(1), uint16(999), uint16(1000), uint16(10), uint16(10))
	// The buffers are allocated once: 64 fresh 64 KiB buffers per input
	// would leave the fuzzer little time for anything else.
	all := make([][]byte, 64)
	for i := range all {
		all[i] = make([]byte, BufferSize)
	}
	f.Fuzz(func(t *testing.T, data []byte, nbufs uint8, seg0, seg1, seg2, cut1, cut2 uint16) {
		if len(data) > BufferSize {
			data = data[:BufferSize]
		}
		c1 := int(cut1) % (len(data) + 1)
		c2 := c1 + int(cut2)%(len(data)-c1+1)
		parts := [][]byte{data[:c1], data[c1:c2], data[c2:]}
		segs := []int{int(seg0), int(seg1), int(seg2)}
		k := int(nbufs)%64 + 1
		bufs := all[:max(k, len(parts))]
		msgs := make([]rxMessage, len(parts))
		for j, p := range parts {
			copy(bufs[j], p)
			msgs[j] = rxMessage{
				n:       len(p),
				segment: segs[j],
				ep:      netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(j)}), uint16(j+1)),
				local:   netip.AddrFrom4([4]byte{198, 19, 0, byte(j)}),
			}
		}
		bufs = bufs[:k] // recvmmsg read len(parts) messages; fewer buffers than messages is no case
		if k < len(parts) {
			msgs = msgs[:k]
			parts = parts[:k]
		}
		sizes := make([]int, k)
		eps := make([]netip.AddrPort, k)
		locals := make([]netip.Addr, k)
		var sp spill
		type dgram struct {
			ep    netip.AddrPort
			local netip.Addr
			data  []byte
		}
		var got []dgram
		n, maxCount := splitMessages(bufs, sizes, eps, locals, msgs, &sp)
		if n < 0 || n > k {
			t.Fatalf("splitMessages wrote %d datagrams into %d buffers", n, k)
		}
		for i := range n {
			got = append(got, dgram{eps[i], locals[i], bytes.Clone(bufs[i][:sizes[i]])})
		}
		for {
			d := sp.deliver(bufs, sizes, eps, locals)
			if d == 0 {
				break
			}
			for i := range d {
				got = append(got, dgram{eps[i], locals[i], bytes.Clone(bufs[i][:sizes[i]])})
			}
		}
		if sp.pending.Load() != 0 {
			t.Fatalf("spill still holds %d after delivering all", sp.pending.Load())
		}
		wantMax := 0
		for j, p := range parts {
			m := msgs[j]
			count := segmentCount(m.n, m.segment)
			wantMax = max(wantMax, count)
			if len(got) < count {
				t.Fatalf("message %d (%d bytes, segment %d): %d datagrams left, want %d", j, m.n, m.segment, len(got), count)
			}
			var joined []byte
			for s, d := range got[:count] {
				if d.ep != m.ep || d.local != m.local {
					t.Fatalf("message %d datagram %d: endpoint %v local %v, want %v %v", j, s, d.ep, d.local, m.ep, m.local)
				}
				if m.segment > 0 && (len(d.data) > m.segment || s < count-1 && len(d.data) != m.segment) {
					t.Fatalf("message %d datagram %d of %d: %d bytes, segment %d", j, s, count, len(d.data), m.segment)
				}
				if count > 1 && len(d.data) == 0 {
					t.Fatalf("message %d datagram %d: empty", j, s)
				}
				joined = append(joined, d.data...)
			}
			if !bytes.Equal(joined, p) {
				t.Fatalf("message %d (%d bytes, segment %d): datagrams do not add up to it", j, m.n, m.segment)
			}
			got = got[count:]
		}
		if len(got) != 0 {
			t.Fatalf("%d datagrams more than the messages hold", len(got))
		}
		if maxCount != wantMax {
			t.Fatalf("largest segment count %d, want %d", maxCount, wantMax)
		}
	})
}
