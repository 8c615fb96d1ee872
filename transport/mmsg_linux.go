//go:build linux

package transport

// Scratch areas for recvmmsg and sendmmsg. Each holds every header, iovec,
// address and control buffer one call needs, made once and reused, so that a
// call allocates nothing. The kernel sees pointers into them and into the
// caller's buffers only for the duration of the system call; release clears
// the pointers to the caller's buffers afterwards.

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Control buffer sizes per message; multiples of 8 keep every cmsghdr aligned.
const (
	// rxControlSize has room for UDP_GRO (an int), IPV6_PKTINFO (20 bytes)
	// and IP_PKTINFO (12 bytes) at once, with slack.
	rxControlSize = 128 // bytes
)

var (
	// A message's control buffer holds UDP_SEGMENT (a uint16) and then the
	// source address, IPV6_PKTINFO (in6_pktinfo) on the dual-stack socket
	// and IP_PKTINFO (in_pktinfo) on an IPv4 one. Either part is used alone.
	segmentSpace  = unix.CmsgSpace(2)
	pktinfo6Space = unix.CmsgSpace(unix.SizeofInet6Pktinfo)
	pktinfo4Space = unix.CmsgSpace(unix.SizeofInet4Pktinfo)
	txControlSize = segmentSpace + max(pktinfo6Space, pktinfo4Space)
)

// rxScratch is the state of one recvmmsg call.
type rxScratch struct {
	msgs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // large enough for sockaddr_in too
	ctrl  []byte                  // rxControlSize bytes per message
	rx    []rxMessage

	readFn func(fd uintptr) bool // s.doRead, bound once so that Read does not allocate

	// Inputs and results of doRead.
	vlen  int
	block bool
	n     int
	errno unix.Errno
}

func newRxScratch(batch int) *rxScratch {
	s := &rxScratch{
		msgs:  make([]unix.Mmsghdr, batch),
		iovs:  make([]unix.Iovec, batch),
		names: make([]unix.RawSockaddrInet6, batch),
		ctrl:  make([]byte, batch*rxControlSize),
		rx:    make([]rxMessage, batch),
	}
	for i := range s.msgs {
		h := &s.msgs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&s.names[i]))
		h.Iov = &s.iovs[i]
		h.SetIovlen(1)
		h.Control = &s.ctrl[i*rxControlSize]
	}
	s.readFn = s.doRead
	return s
}

// prepare points the first len(bufs) messages at bufs.
func (s *rxScratch) prepare(bufs [][]byte) {
	for i, b := range bufs {
		s.iovs[i].Base = &b[0]
		s.iovs[i].SetLen(len(b))
		h := &s.msgs[i].Hdr
		h.Namelen = unix.SizeofSockaddrInet6
		h.SetControllen(rxControlSize)
		h.Flags = 0
		s.msgs[i].Len = 0
	}
	s.vlen = len(bufs)
}

// release drops the references to the caller's buffers.
func (s *rxScratch) release(m int) {
	for i := range m {
		s.iovs[i].Base = nil
	}
}

// doRead runs inside RawConn.Read; returning false waits for readability.
func (s *rxScratch) doRead(fd uintptr) bool {
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.msgs[0])), uintptr(s.vlen), 0, 0, 0)
		switch {
		case e == unix.EINTR:
			continue
		case e == unix.EAGAIN && s.block:
			return false
		}
		s.n, s.errno = int(r), e
		if e != 0 {
			s.n = 0
		}
		return true
	}
}

// messages decodes the first n received messages.
func (s *rxScratch) messages(n int) []rxMessage {
	for j := range n {
		h := &s.msgs[j].Hdr
		ctrl := s.ctrl[j*rxControlSize : j*rxControlSize+int(h.Controllen)]
		segment, local := parseControl(ctrl)
		s.rx[j] = rxMessage{
			n:       int(s.msgs[j].Len),
			segment: segment,
			ep:      sockaddrAddrPort(&s.names[j]),
			local:   local,
		}
	}
	return s.rx[:n]
}

// groSegment returns the segment size of a UDP_GRO control message in ctrl,
// or 0.
func groSegment(ctrl []byte) int {
	segment, _ := parseControl(ctrl)
	return segment
}

// parseControl returns the segment size of a UDP_GRO control message in
// ctrl, or 0, and the local address of an IPV6_PKTINFO or IP_PKTINFO one
// (unmapped), or the zero Addr: the address the datagram was sent to, which
// replies leave from (RO6, RO7). An IPv6 link-local address is reported as
// the zero Addr: it would need its interface as a zone, and the system's
// choice serves it.
func parseControl(ctrl []byte) (segment int, local netip.Addr) {
	for len(ctrl) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&ctrl[0]))
		l := int(h.Len)
		if l < unix.CmsgLen(0) || l > len(ctrl) {
			break
		}
		data := ctrl[unix.CmsgLen(0):l]
		switch {
		case h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO:
			switch {
			case len(data) >= 4: // the kernel puts an int
				segment = int(binary.NativeEndian.Uint32(data))
			case len(data) >= 2:
				segment = int(binary.NativeEndian.Uint16(data))
			}
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			a := netip.AddrFrom16([16]byte(data[:16])).Unmap()
			if !a.IsLinkLocalUnicast() {
				local = a
			}
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			if !local.IsValid() {
				// in_pktinfo: ifindex, spec_dst, addr (the header's
				// destination, as the kernel's implementation takes).
				local = netip.AddrFrom4([4]byte(data[8:12]))
			}
		}
		ctrl = ctrl[min(unix.CmsgSpace(l-unix.CmsgLen(0)), len(ctrl)):]
	}
	return segment, local
}

// sockaddrAddrPort converts a received sockaddr_in6 or sockaddr_in, with
// v4-mapped addresses unmapped.
func sockaddrAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET6:
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		a := netip.AddrFrom16(sa.Addr).Unmap()
		if sa.Scope_id != 0 && a.Is6() {
			// Rare (link-local peers): allocates the zone string.
			a = a.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		return netip.AddrPortFrom(a, port)
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	}
	return netip.AddrPort{}
}

// txScratch is the state of one Send.
type txScratch struct {
	msgs   []unix.Mmsghdr
	iovs   []unix.Iovec
	ctrl   []byte // txControlSize bytes per message, UDP_SEGMENT and PKTINFO headers prefilled
	groups []segmentGroup
	used   int // iovecs pointing at the caller's buffers

	is6       bool       // the pktinfo headers are IPV6_PKTINFO, else IP_PKTINFO
	local     netip.Addr // source of this Send; zero = the system's choice
	infoSpace int        // bytes of the pktinfo part of a control buffer

	sa6     unix.RawSockaddrInet6
	sa4     unix.RawSockaddrInet4
	name    *byte
	namelen uint32

	writeFn func(fd uintptr) bool // s.doWrite, bound once

	// Inputs and results of doWrite.
	next, to int
	errno    unix.Errno
}

func newTxScratch(batch int, is6 bool) *txScratch {
	s := &txScratch{
		msgs:      make([]unix.Mmsghdr, batch),
		iovs:      make([]unix.Iovec, batch),
		ctrl:      make([]byte, batch*txControlSize),
		groups:    make([]segmentGroup, 0, batch),
		is6:       is6,
		infoSpace: pktinfo4Space,
	}
	if is6 {
		s.infoSpace = pktinfo6Space
	}
	for i := range s.msgs {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&s.ctrl[i*txControlSize]))
		h.Level = unix.SOL_UDP
		h.Type = unix.UDP_SEGMENT
		h.SetLen(unix.CmsgLen(2))
		h = (*unix.Cmsghdr)(unsafe.Pointer(&s.ctrl[i*txControlSize+segmentSpace]))
		if is6 {
			h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
			h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
		} else {
			h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
			h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
		}
	}
	s.writeFn = s.doWrite
	return s
}

// setDestination fills the sockaddr every message of this Send points at.
func (s *txScratch) setDestination(ep netip.AddrPort, is6 bool) error {
	a := ep.Addr().Unmap()
	if !a.IsValid() {
		return unix.EDESTADDRREQ
	}
	if !is6 {
		if !a.Is4() {
			return unix.EAFNOSUPPORT
		}
		s.sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&s.sa4.Port))[:], ep.Port())
		s.name, s.namelen = (*byte)(unsafe.Pointer(&s.sa4)), unix.SizeofSockaddrInet4
		return nil
	}
	s.sa6 = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&s.sa6.Port))[:], ep.Port())
	if z := a.Zone(); z != "" {
		id, err := zoneIndex(z)
		if err != nil {
			return err
		}
		s.sa6.Scope_id = id
	}
	s.name, s.namelen = (*byte)(unsafe.Pointer(&s.sa6)), unix.SizeofSockaddrInet6
	return nil
}

// setSource makes local the source address of this Send's messages (RO6);
// the zero Addr leaves it to the system. A source of the other family than
// the destination ep fails with EINVAL, as the kernel fails a source it
// does not have.
func (s *txScratch) setSource(local netip.Addr, ep netip.AddrPort) error {
	local = local.Unmap()
	s.local = local
	if !local.IsValid() {
		return nil
	}
	if local.Is4() != ep.Addr().Unmap().Is4() || (!s.is6 && !local.Is4()) {
		s.local = netip.Addr{}
		return unix.EINVAL
	}
	return nil
}

// fillSource writes s.local into the pktinfo part of control buffer c: in
// in6_pktinfo the address (IPv4 mapped) and interface 0, in in_pktinfo
// interface 0, spec_dst the address (the source) and addr 0.
func (s *txScratch) fillSource(c []byte) {
	data := c[segmentSpace+unix.CmsgLen(0) : segmentSpace+s.infoSpace]
	clear(data)
	if s.is6 {
		b := s.local.As16() // IPv4 as v4-mapped
		copy(data, b[:])
		return
	}
	b := s.local.As4()
	copy(data[4:8], b[:])
}

// zoneIndex resolves an IPv6 zone, a number or an interface name.
func zoneIndex(zone string) (uint32, error) {
	if id, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(id), nil
	}
	ifi, err := net.InterfaceByName(zone)
	if err != nil {
		return 0, err
	}
	return uint32(ifi.Index), nil
}

// build fills one message per group of s.groups, gathering chunk.
func (s *txScratch) build(chunk [][]byte) {
	for i, b := range chunk {
		if len(b) > 0 {
			s.iovs[i].Base = &b[0]
		} else {
			s.iovs[i].Base = nil
		}
		s.iovs[i].SetLen(len(b))
	}
	s.used = len(chunk)
	for i, g := range s.groups {
		h := &s.msgs[i].Hdr
		h.Name, h.Namelen = s.name, s.namelen
		h.Iov = &s.iovs[g.start]
		h.SetIovlen(g.count)
		h.Flags = 0
		c := s.ctrl[i*txControlSize : (i+1)*txControlSize]
		sourced := s.local.IsValid()
		if sourced {
			s.fillSource(c)
		}
		switch {
		case g.count > 1 && sourced:
			binary.NativeEndian.PutUint16(c[unix.CmsgLen(0):], uint16(g.size))
			h.Control = &c[0]
			h.SetControllen(segmentSpace + s.infoSpace)
		case g.count > 1:
			binary.NativeEndian.PutUint16(c[unix.CmsgLen(0):], uint16(g.size))
			h.Control = &c[0]
			h.SetControllen(segmentSpace)
		case sourced:
			h.Control = &c[segmentSpace]
			h.SetControllen(s.infoSpace)
		default:
			h.Control = nil
			h.SetControllen(0)
		}
	}
}

// release drops the references to the caller's buffers.
func (s *txScratch) release() {
	for i := range s.used {
		s.iovs[i].Base = nil
	}
	s.used = 0
}

// doWrite runs inside RawConn.Write: it sends s.msgs[s.next:s.to], stopping
// at the first failing message; returning false waits for writability.
func (s *txScratch) doWrite(fd uintptr) bool {
	for s.next < s.to {
		r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&s.msgs[s.next])), uintptr(s.to-s.next), 0, 0, 0)
		switch e {
		case 0:
			s.next += int(r)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			s.errno = e
			return true
		}
	}
	return true
}
