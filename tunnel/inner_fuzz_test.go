package tunnel

import (
	"encoding/binary"
	"testing"
)

// FuzzInnerPacket feeds arbitrary decrypted payloads to the inner-packet
// validator (M7, M8): it never panics and its verdict agrees with the IP
// header read independently here: an IPv4 packet is accepted with the
// length of its header's total length when that is 20 or more and within
// the payload, an IPv6 packet with 40 plus its payload length when that
// is within the payload; any other version is a frame error, and a length
// out of bounds a length error.
func FuzzInnerPacket(f *testing.F) {
	f.Add(testIPv4(60, 20, 6, ipv4FlagDF, "198.18.0.1", "198.19.0.2"))
	f.Add(testIPv6(80, 17, "fd00:7761::1", "fd00:7761:1::2"))
	f.Add([]byte{0x45, 0, 0, 19})
	f.Add([]byte{0x60})
	f.Add([]byte{0x00, 0x01, 0x02})
	f.Add(append(testIPv4(40, 20, 17, 0, "198.18.0.1", "198.19.0.2"), make([]byte, 16)...)) // padded
	f.Fuzz(func(t *testing.T, pt []byte) {
		if len(pt) == 0 {
			return // a keepalive: the receive path never passes it on (M10)
		}
		n, reason, ok := innerPacket(pt)
		wantN, wantReason, wantOK := 0, DropFrameError, false
		switch pt[0] >> 4 {
		case 4:
			wantReason = DropLengthError
			if len(pt) >= 20 {
				if l := int(binary.BigEndian.Uint16(pt[2:4])); l >= 20 && l <= len(pt) {
					wantN, wantReason, wantOK = l, 0, true
				}
			}
		case 6:
			wantReason = DropLengthError
			if len(pt) >= 40 {
				if l := 40 + int(binary.BigEndian.Uint16(pt[4:6])); l <= len(pt) {
					wantN, wantReason, wantOK = l, 0, true
				}
			}
		}
		if n != wantN || reason != wantReason || ok != wantOK {
			t.Fatalf("innerPacket(% x) = %d, %v, %v; want %d, %v, %v", pt[:min(len(pt), 48)], n, reason, ok, wantN, wantReason, wantOK)
		}
		if ok && (n < 20 || n > len(pt)) {
			t.Fatalf("innerPacket accepted a length of %d of a %d-byte payload", n, len(pt))
		}
	})
}
