package tuntest

import (
	"bytes"
	"net/netip"
	"testing"
)

func TestUDPPacket(t *testing.T) {
	tests := []struct {
		name     string
		src, dst netip.AddrPort
		payload  []byte
	}{
		{"ipv4", netip.MustParseAddrPort("198.18.0.1:1000"), netip.MustParseAddrPort("198.18.0.2:2000"), []byte("hello")},
		{"ipv4 empty", netip.MustParseAddrPort("198.18.0.1:1"), netip.MustParseAddrPort("198.18.0.2:2"), nil},
		{"ipv6 odd", netip.MustParseAddrPort("[fd00:7761::1]:1000"), netip.MustParseAddrPort("[fd00:7761::2]:2000"), []byte("odd")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pkt := UDPPacket(tc.src, tc.dst, tc.payload)
			src, dst, payload, ok := ParseUDP(pkt)
			if !ok || src != tc.src || dst != tc.dst || !bytes.Equal(payload, tc.payload) {
				t.Errorf("ParseUDP(UDPPacket) = %v, %v, %q, %v; want %v, %v, %q", src, dst, payload, ok, tc.src, tc.dst, tc.payload)
			}
			// A valid checksum sums to all ones over pseudo-header and datagram.
			hdr := 20
			if tc.src.Addr().Is6() {
				hdr = 40
			} else if got := fold(sum(0, pkt[:20])); got != 0xffff {
				t.Errorf("IPv4 header checksum folds to %#x, want 0xffff", got)
			}
			udp := pkt[hdr:]
			s := sum(sum(0, tc.src.Addr().AsSlice()), tc.dst.Addr().AsSlice()) + protoUDP + uint32(len(udp))
			if got := fold(sum(s, udp)); got != 0xffff {
				t.Errorf("UDP checksum folds to %#x, want 0xffff", got)
			}
		})
	}
	if _, _, _, ok := ParseUDP([]byte{0x45, 0}); ok {
		t.Errorf("ParseUDP(short) ok")
	}
}
