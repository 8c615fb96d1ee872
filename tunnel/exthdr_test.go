package tunnel

import (
	"encoding/binary"
	"testing"
)

// ipv6With returns an IPv6 packet from inner6A to inner6B whose first next
// header is nh, with body after the fixed header and payloadLen in the
// header (-1: the body's length).
func ipv6With(nh byte, body []byte, payloadLen int) []byte {
	pkt := make([]byte, 40+len(body))
	pkt[0] = 6 << 4
	if payloadLen < 0 {
		payloadLen = len(body)
	}
	binary.BigEndian.PutUint16(pkt[4:], uint16(payloadLen))
	pkt[6], pkt[7] = nh, 64
	a, b := inner6A.As16(), inner6B.As16()
	copy(pkt[8:], a[:])
	copy(pkt[24:], b[:])
	copy(pkt[40:], body)
	return pkt
}

// extChain returns n extension headers of 8 bytes, each naming nh as the
// next one and claiming hdrLen (the length field, in 8-byte units beyond
// the first 8).
func extChain(n int, nh, hdrLen byte) []byte {
	b := make([]byte, 8*n)
	for i := range n {
		b[8*i], b[8*i+1] = nh, hdrLen
	}
	return b
}

// TestM12IPv6ExtensionHeaders covers M12 at the engine: inner IPv6 packets
// with extension-header chains that lie about their length, loop or stop
// short are neither misread nor allowed to hang the receive path. The
// engine walks no chain: it reads the fixed header only (length, source),
// so each is delivered byte for byte when its payload length is consistent
// and dropped as a length error when not.
func TestM12IPv6ExtensionHeaders(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pkt     []byte
		deliver bool
	}{
		{"hop-by-hop claiming 2 KB in 8 bytes", ipv6With(0, extChain(1, 59, 255), -1), true},
		{"hop-by-hop chain looping 200 times", ipv6With(0, extChain(200, 0, 0), -1), true},
		{"routing header with length 255 at the end", ipv6With(43, extChain(1, 43, 255)[:4], -1), true},
		{"fragment headers looping", ipv6With(44, extChain(64, 44, 0), -1), true},
		{"chain cut short by the payload length", ipv6With(0, extChain(4, 0, 255), 12), true},
		{"payload length past the chain", ipv6With(0, extChain(2, 0, 255), 1000), false},
		{"no next header at all", ipv6With(59, nil, -1), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := established(t, pairOptions{})
			p.net.inject(outerA, outerB, p.a.sealed(t, tc.pkt))
			p.run()
			got := p.b.ad.written()
			if !tc.deliver {
				if len(got) != 0 || p.b.e.Drops(DropLengthError) != 1 {
					t.Errorf("delivered %d, length-error drops %d; want 0 and 1", len(got), p.b.e.Drops(DropLengthError))
				}
				return
			}
			want := tc.pkt[:40+int(binary.BigEndian.Uint16(tc.pkt[4:]))]
			if len(got) != 1 || string(got[0]) != string(want) {
				t.Errorf("delivered %x, want %x (drops %v)", got, want, p.b.e.DropCounts())
			}
		})
	}
}
