package tun

// TAP offloads: the TUN's split and coalesce (offload.go) for IP packets
// behind an Ethernet header. A TAP with IFF_VNET_HDR and TUNSETOFFLOAD hands
// over frames whose IP packet is a GSO super-packet, and takes such frames;
// the virtio header's hdrLen and csumStart then count from the frame's
// first byte. The Ethernet header (with up to two VLAN tags: 802.1Q, and
// 802.1ad outside it) is set aside, the IP packet split or coalesced as the
// TUN does, and the header put in front of each segment. Portable, like
// offload.go, so that FuzzSplitFrame and FuzzCoalesceFrames run anywhere.

import "encoding/binary"

// Ethernet framing (IEEE 802.3, 802.1Q, 802.1ad).
const (
	ethHeaderLen  = 14 // bytes: destination, source, EtherType
	vlanTagLen    = 4  // bytes of one VLAN tag
	maxVLANTags   = 2  // a service tag (802.1ad) and a customer tag (802.1Q)
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	etherTypeVLAN = 0x8100 // 802.1Q
	etherTypeQinQ = 0x88a8 // 802.1ad

	// maxGSOFrame is the largest frame one TAP read or write carries: a
	// GSO packet behind an Ethernet header and two VLAN tags.
	maxGSOFrame = maxGSOPacket + ethHeaderLen + maxVLANTags*vlanTagLen // bytes
)

// ethIPHeaderLen returns the length of frame's Ethernet header with its
// VLAN tags where an IPv4 or IPv6 packet follows it (its version nibble
// agreeing with the EtherType), else 0.
func ethIPHeaderLen(frame []byte) int {
	n := ethHeaderLen
	for tags := 0; len(frame) > n; tags++ {
		switch binary.BigEndian.Uint16(frame[n-2:]) {
		case etherTypeIPv4:
			if frame[n]>>4 != 4 {
				return 0
			}
			return n
		case etherTypeIPv6:
			if frame[n]>>4 != 6 {
				return 0
			}
			return n
		case etherTypeVLAN, etherTypeQinQ:
			if tags == maxVLANTags {
				return 0
			}
			n += vlanTagLen
		default:
			return 0
		}
	}
	return 0
}

// splitFrame is split for a frame read from a TAP: it writes the frames
// into bufs[i][offset:] and their sizes, and keeps in rest a GSO frame of
// the segments that did not fit the buffers, returning its length (rest
// either starts where frame starts or overlaps neither frame nor bufs).
//
// A frame without GSO gets its checksum, if it asks for one, at csumStart,
// whatever it carries. A GSO frame must carry IPv4 or IPv6 behind its
// Ethernet header and tags; each segment gets a copy of them. Where mtu is
// not 0, TCP segments are cut smaller than the sender's segment size if
// need be, so that every IP packet fits mtu and every frame fits
// mtu+EthernetOverhead (what the engine carries): a bridge forwards a GSO
// packet to the TAP whatever its segment size, which a host on a LAN with
// a larger MTU sets. UDP segments are datagrams and are left as they are.
// h's csumStart is as the kernel gave it again on return; hdrLen is
// overwritten.
func splitFrame(h *virtioNetHdr, frame []byte, bufs [][]byte, sizes []int, offset int, rest []byte, mtu int) (n, restLen int, err error) {
	if h.gsoType == virtioNetHdrGSONone {
		return split(h, frame, bufs, sizes, offset, rest)
	}
	eth := ethIPHeaderLen(frame)
	if eth == 0 || int(h.csumStart) <= eth || len(rest) < eth || offset < 0 {
		return 0, 0, errVirtio
	}
	h.csumStart -= uint16(eth)
	in := frame[eth:]
	if mtu > 0 && (h.gsoType == virtioNetHdrGSOTCPv4 || h.gsoType == virtioNetHdrGSOTCPv6) {
		if iphLen := int(h.csumStart); len(in) >= iphLen+20 {
			hdrLen := iphLen + int(in[iphLen+12]>>4)*4
			if limit := min(mtu, mtu+EthernetOverhead-eth) - hdrLen; limit > 0 && int(h.gsoSize) > limit {
				h.gsoSize = uint16(limit)
			}
		}
	}
	n, restLen, err = split(h, in, bufs, sizes, offset+eth, rest[eth:])
	hdr := frame[:eth]
	for k := range n {
		copy(bufs[k][offset:], hdr)
		sizes[k] += eth
	}
	if restLen > 0 {
		copy(rest, hdr)
		restLen += eth
	}
	h.csumStart += uint16(eth)
	return n, restLen, err
}

// coalesceFrames finds the run of frames starting at bufs[first] that
// coalesce into one GSO frame (one TCP or UDP flow behind one Ethernet
// header, as groRunLink says) and, for a run of two or more, rewrites the
// first frame's headers and returns its virtio header. It returns the end
// of the run and the bytes of each later frame to skip: its payload is
// bufs[k][offset+skip:]. udp says whether the kernel takes UDP GSO.
func coalesceFrames(bufs [][]byte, first, offset int, udp bool) (h virtioNetHdr, end, skip int) {
	eth := ethIPHeaderLen(bufs[first][offset:])
	if eth == 0 {
		return h, first + 1, 0
	}
	end, segment, total, hdrLen := groRunLink(bufs, first, offset, eth, udp)
	if end-first < 2 {
		return h, end, 0
	}
	h = coalesceHead(bufs, first, end, offset+eth, segment, total)
	h.hdrLen += uint16(eth)
	h.csumStart += uint16(eth)
	return h, end, eth + hdrLen
}
