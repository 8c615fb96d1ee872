package tunnel

// The layer 2 payload (Mode = tap). An Ethernet frame travels as the
// plaintext of an ordinary transport message (type 4) on the peer's normal
// session, behind a 4-byte frame header:
//
//	 0       1       2       3
//	+-------+-------+-------+-------+------------------------------+
//	| 0x10  | flags |  frame length |  Ethernet frame (dst, src,   |
//	|       |  (0)  |  (big endian) |  EtherType, ...)  | padding  |
//	+-------+-------+-------+-------+------------------------------+
//
// The first byte's high nibble is 1: the first nibble of the plaintext is
// what WireGuard reads as the IP version, and every implementation drops an
// authenticated payload whose version is neither 4 nor 6 without writing it
// to its TUN (wireguard-go RoutineSequentialReceiver: "invalid IP version";
// the kernel's wg_examine_packet_protocol: "neither ipv4 nor ipv6"), as
// does a warren in TUN mode (DropFrameError, M7). So a frame that reaches
// a peer in the wrong mode is discarded, never garbled into an IP packet;
// the other way round, a TAP-mode warren drops a payload whose nibble is 4
// or 6 (DropModeMismatch, T3), and both ends log the mismatch once per peer.
// The length is needed because the payload is padded to 16 bytes
// (whitepaper 5.4.6) and an Ethernet frame, unlike an IP packet, does not
// carry its own length. The flags byte is 0; a frame with flags this
// version does not know is dropped (DropFrameError), which leaves room for
// a later version.

import (
	"encoding/binary"
	"net/netip"

	"github.com/warrenvpn/warren/mactable"
)

// Frame encoding (a wire format: see the diagram above).
const (
	frameMarker      = 0x10 // first byte of a frame payload; high nibble 1
	frameHeaderSize  = 4    // marker, flags, length
	ethHeaderSize    = 14   // bytes: destination, source, EtherType
	vlanTagSize      = 4    // bytes of one 802.1Q tag
	maxVLANTags      = 2    // 802.1ad: a service tag and a customer tag
	etherTypeIPv4    = 0x0800
	etherTypeARP     = 0x0806
	etherTypeIPv6    = 0x86dd
	etherTypeVLAN    = 0x8100 // 802.1Q
	etherTypeQinQ    = 0x88a8 // 802.1ad
	arpSenderIPStart = 14     // offset of the sender protocol address in an Ethernet/IPv4 ARP packet
)

// FrameOverhead is what a frame adds to the TAP's MTU in a message's
// plaintext: the frame header, the Ethernet header and one VLAN tag.
const FrameOverhead = frameHeaderSize + ethHeaderSize + vlanTagSize

// putFrameHeader writes the frame header of a frame of n bytes at b.
func putFrameHeader(b []byte, n int) {
	b[0] = frameMarker
	b[1] = 0
	binary.BigEndian.PutUint16(b[2:4], uint16(n))
}

// parseFrame returns the Ethernet frame in an authenticated, non-empty
// payload pt (padding removed), or false and the drop reason: an IP packet
// (a peer in TUN mode: DropModeMismatch), an unknown marker or flags
// (DropFrameError), or a length that the payload does not hold or that is
// shorter than an Ethernet header (DropLengthError).
func parseFrame(pt []byte) ([]byte, DropReason, bool) {
	switch {
	case pt[0]>>4 == 4 || pt[0]>>4 == 6:
		return nil, DropModeMismatch, false
	case len(pt) < frameHeaderSize || pt[0] != frameMarker || pt[1] != 0:
		return nil, DropFrameError, false
	}
	n := int(binary.BigEndian.Uint16(pt[2:4]))
	if n < ethHeaderSize || n > len(pt)-frameHeaderSize {
		return nil, DropLengthError, false
	}
	return pt[frameHeaderSize : frameHeaderSize+n], 0, true
}

// isFrame reports whether an authenticated payload is a layer 2 frame (the
// payload a TUN-mode engine gets from a peer in TAP mode).
func isFrame(pt []byte) bool { return len(pt) > 0 && pt[0] == frameMarker }

// frameMACs returns the destination and source MACs of frame, which holds
// at least ethHeaderSize bytes.
func frameMACs(frame []byte) (dst, src mactable.MAC) {
	copy(dst[:], frame[0:6])
	copy(src[:], frame[6:12])
	return dst, src
}

// frameSender returns the sender's IP address carried by frame: the source
// of an IPv4 or IPv6 packet or the sender protocol address of an ARP
// packet, under up to two VLAN tags. ok is false for a truncated header or
// an EtherType other than these (DropFrameError, DropEtherType). A frame
// that carries no address (none such is accepted today) reports an invalid
// address.
func frameSender(frame []byte) (addr netip.Addr, reason DropReason, ok bool) {
	hdr, et, ok := frameL3(frame)
	if !ok {
		return netip.Addr{}, DropFrameError, false
	}
	l3 := frame[hdr:]
	switch et {
	case etherTypeIPv4:
		if len(l3) < 20 || l3[0]>>4 != 4 {
			return netip.Addr{}, DropFrameError, false
		}
		return netip.AddrFrom4([4]byte(l3[12:16])), 0, true
	case etherTypeIPv6:
		if len(l3) < 40 || l3[0]>>4 != 6 {
			return netip.Addr{}, DropFrameError, false
		}
		return netip.AddrFrom16([16]byte(l3[8:24])), 0, true
	case etherTypeARP:
		// Ethernet (1) and IPv4 (0x0800) with 6- and 4-byte addresses.
		if len(l3) < 28 || binary.BigEndian.Uint16(l3[0:2]) != 1 ||
			binary.BigEndian.Uint16(l3[2:4]) != etherTypeIPv4 || l3[4] != 6 || l3[5] != 4 {
			return netip.Addr{}, DropFrameError, false
		}
		return netip.AddrFrom4([4]byte(l3[arpSenderIPStart : arpSenderIPStart+4])), 0, true
	}
	return netip.Addr{}, DropEtherType, false
}

// frameL3 returns the length of frame's Ethernet header with its VLAN tags
// (up to maxVLANTags) and the EtherType of what follows; ok is false for
// more tags or a truncated tag. frame holds at least ethHeaderSize bytes.
func frameL3(frame []byte) (hdr int, etherType uint16, ok bool) {
	off := 12
	et := binary.BigEndian.Uint16(frame[off:])
	for tags := 0; et == etherTypeVLAN || et == etherTypeQinQ; tags++ {
		if tags == maxVLANTags || len(frame) < off+vlanTagSize+2 {
			return 0, 0, false
		}
		off += vlanTagSize
		et = binary.BigEndian.Uint16(frame[off:])
	}
	return off + 2, et, true
}

// senderAllowed reports whether a peer whose allowed IPs are ips may send
// from addr inside a frame: an empty list allows everything, and so do the
// unspecified addresses (DHCP, ARP probes, duplicate address detection) and
// IPv6 link-local ones (neighbour discovery, MLD), which every host uses
// before it has an address of the subnet.
func senderAllowed(ips []netip.Prefix, addr netip.Addr) bool {
	if len(ips) == 0 || addr.IsUnspecified() || addr.Is6() && addr.IsLinkLocalUnicast() {
		return true
	}
	for _, p := range ips {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
