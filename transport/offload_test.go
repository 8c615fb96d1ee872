package transport

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The engine's view of a transport (tunnel.Transport).
var _ interface {
	Receive(bufs [][]byte, sizes []int, eps []netip.AddrPort, locals []netip.Addr) (int, error)
	Send(bufs [][]byte, ep netip.AddrPort, local netip.Addr) (int, error)
	BatchSize() int
	Close() error
} = (*UDP)(nil)

func sizedBufs(sizes ...int) [][]byte {
	bufs := make([][]byte, len(sizes))
	for i, n := range sizes {
		bufs[i] = make([]byte, n)
	}
	return bufs
}

func repeat(n, size int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = size
	}
	return s
}

func TestPlanGroups(t *testing.T) {
	type g struct{ Start, Count, Size int }
	tests := []struct {
		name       string
		sizes      []int
		maxPayload int
		gso        bool
		want       []g
	}{
		{"empty", nil, maxPayloadIPv4, true, nil},
		{"one", []int{100}, maxPayloadIPv4, true, []g{{0, 1, 100}}},
		{"equal", []int{100, 100, 100}, maxPayloadIPv4, true, []g{{0, 3, 100}}},
		{"gso off", []int{100, 100}, maxPayloadIPv4, false, []g{{0, 1, 100}, {1, 1, 100}}},
		{"short tail ends group", []int{100, 100, 50, 50}, maxPayloadIPv4, true, []g{{0, 3, 100}, {3, 1, 50}}},
		{"larger starts group", []int{50, 100, 100}, maxPayloadIPv4, true, []g{{0, 1, 50}, {1, 2, 100}}},
		{"64 segments", repeat(70, 10), maxPayloadIPv4, true, []g{{0, 64, 10}, {64, 6, 10}}},
		{"payload limit", repeat(5, 1000), 2500, true, []g{{0, 2, 1000}, {2, 2, 1000}, {4, 1, 1000}}},
		{"ipv4 limit 1400", repeat(64, 1400), maxPayloadIPv4, true, []g{{0, 46, 1400}, {46, 18, 1400}}},
		{"empty datagrams alone", []int{0, 0, 10, 0}, maxPayloadIPv4, true, []g{{0, 1, 0}, {1, 1, 0}, {2, 2, 10}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []g
			for _, x := range planGroups(nil, sizedBufs(tc.sizes...), tc.maxPayload, tc.gso) {
				got = append(got, g{x.start, x.count, x.size})
			}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("planGroups(%v) (-got +want):\n%s", tc.sizes, diff)
			}
		})
	}
}

// datagram returns size bytes that encode (id, offset) so that misplaced
// bytes show.
func datagram(id, size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(id*31 + i*7)
	}
	return b
}

func TestSplitMessages(t *testing.T) {
	ep1 := netip.MustParseAddrPort("198.18.0.1:1")
	ep2 := netip.MustParseAddrPort("[fd00:7761::2]:2")
	type dgram struct {
		EP    netip.AddrPort
		Local netip.Addr // the message's: one per message, distinct
		Data  []byte
	}
	// message is a received message made of datagrams of the given sizes
	// (all but the last equal when coalesced).
	type message struct {
		ep    netip.AddrPort
		sizes []int
	}
	tests := []struct {
		name  string
		nbufs int
		msgs  []message
	}{
		{"plain", 4, []message{{ep1, []int{10}}, {ep2, []int{20}}, {ep1, []int{0}}}},
		{"one coalesced", 8, []message{{ep1, []int{100, 100, 100, 40}}}},
		{"coalesced then plain", 8, []message{{ep1, []int{100, 100, 100}}, {ep2, []int{7}}, {ep1, []int{50, 50}}}},
		{"exact fit", 5, []message{{ep1, []int{3, 3}}, {ep2, []int{5, 5, 1}}}},
		{"spill partial", 4, []message{{ep1, []int{9, 9, 9}}, {ep2, []int{4, 4, 4, 2}}, {ep1, []int{1}}}},
		{"spill whole", 3, []message{{ep1, []int{9, 9, 9}}, {ep2, []int{4, 4}}, {ep1, []int{1}}}},
		{"spill 64", 2, []message{{ep1, repeat(64, 100)}, {ep2, repeat(64, 100)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var want []dgram
			bufs := make([][]byte, tc.nbufs)
			for i := range bufs {
				bufs[i] = make([]byte, BufferSize)
			}
			var msgs []rxMessage
			id := 0
			for j, m := range tc.msgs {
				var payload []byte
				local := netip.AddrFrom4([4]byte{198, 18, 1, byte(j)})
				for _, n := range m.sizes {
					d := datagram(id, n)
					id++
					want = append(want, dgram{m.ep, local, d})
					payload = append(payload, d...)
				}
				seg := 0
				if len(m.sizes) > 1 {
					seg = m.sizes[0]
				}
				copy(bufs[j], payload)
				msgs = append(msgs, rxMessage{n: len(payload), segment: seg, ep: m.ep, local: local})
			}
			sizes := make([]int, tc.nbufs)
			eps := make([]netip.AddrPort, tc.nbufs)
			locals := make([]netip.Addr, tc.nbufs)
			var sp spill
			n, _ := splitMessages(bufs, sizes, eps, locals, msgs, &sp)
			var got []dgram
			for i := range n {
				got = append(got, dgram{eps[i], locals[i], bytes.Clone(bufs[i][:sizes[i]])})
			}
			for {
				k := sp.deliver(bufs, sizes, eps, locals)
				if k == 0 {
					break
				}
				for i := range k {
					got = append(got, dgram{eps[i], locals[i], bytes.Clone(bufs[i][:sizes[i]])})
				}
			}
			if diff := cmp.Diff(got, want, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
				cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("datagrams (-got +want):\n%s", diff)
			}
			if sp.pending.Load() != 0 || len(sp.queue) != 0 {
				t.Errorf("spill not empty: pending %d, queue %d", sp.pending.Load(), len(sp.queue))
			}
		})
	}
}

func TestSegmentCount(t *testing.T) {
	tests := []struct{ n, seg, want int }{
		{0, 0, 1}, {10, 0, 1}, {10, 10, 1}, {11, 10, 2}, {20, 10, 2}, {64 * 1200, 1200, 64}, {5, 10, 1},
	}
	for _, tc := range tests {
		if got := segmentCount(tc.n, tc.seg); got != tc.want {
			t.Errorf("segmentCount(%d, %d) = %d, want %d", tc.n, tc.seg, got, tc.want)
		}
	}
}
