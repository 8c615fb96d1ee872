//go:build linux

package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// RouteSource returns the source address the kernel would choose now for
// a datagram from this socket to dst without a source given: its routing
// toward dst, fwmark and policy rules included. The engine compares it over
// time to notice a route change toward a peer (RO8). It sends nothing,
// makes three system calls and allocates nothing. Safe for concurrent use.
func (u *UDP) RouteSource(dst netip.AddrPort) (netip.Addr, error) {
	if u.closed.Load() {
		return netip.Addr{}, net.ErrClosed
	}
	return u.route.source(dst)
}

// routeProbe is an unbound UDP socket of the transport's family, opened
// beside it in its network namespace and with its fwmark, that never sends:
// connect(2) makes the kernel route toward a destination and pick a source
// address, getsockname(2) reads it, and connecting to AF_UNSPEC forgets it
// again (a connected UDP socket keeps its first source for every later
// connect).
type routeProbe struct {
	mu     sync.Mutex // guards the fields below and serialises the calls
	fd     int
	opened bool // fd is open
	is6    bool
	sa     unix.RawSockaddrInet6 // large enough for sockaddr_in too
}

// open opens the probe socket. Without one RouteSource reports
// errors.ErrUnsupported.
func (r *routeProbe) open(is6 bool, fwMark uint32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.is6 = is6
	domain := unix.AF_INET
	if is6 {
		domain = unix.AF_INET6
	}
	s, err := unix.Socket(domain, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("route probe socket: %w", err)
	}
	if is6 {
		if err := unix.SetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			unix.Close(s)
			return fmt.Errorf("route probe socket: clear IPV6_V6ONLY: %w", err)
		}
	}
	if fwMark != 0 {
		if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_MARK, int(fwMark)); err != nil {
			unix.Close(s)
			return fmt.Errorf("route probe socket: set fwmark %d: %w", fwMark, err)
		}
	}
	r.fd, r.opened = s, true
	return nil
}

// source connects the probe to dst, reads the source the kernel chose and
// disconnects.
func (r *routeProbe) source(dst netip.AddrPort) (netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.opened {
		return netip.Addr{}, errors.ErrUnsupported
	}
	a := dst.Addr().Unmap()
	var n uintptr
	switch {
	case r.is6:
		r.sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()} // IPv4 v4-mapped
		if z := a.Zone(); z != "" {
			id, err := zoneIndex(z)
			if err != nil {
				return netip.Addr{}, err
			}
			r.sa.Scope_id = id
		}
		n = unix.SizeofSockaddrInet6
	case a.Is4():
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&r.sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
		n = unix.SizeofSockaddrInet4
	default:
		return netip.Addr{}, unix.EAFNOSUPPORT
	}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&r.sa.Port))[:], dst.Port())
	fd := uintptr(r.fd)
	if _, _, e := unix.Syscall(unix.SYS_CONNECT, fd, uintptr(unsafe.Pointer(&r.sa)), n); e != 0 {
		return netip.Addr{}, e
	}
	defer disconnect(fd, &r.sa)
	r.sa = unix.RawSockaddrInet6{}
	l := uint32(unix.SizeofSockaddrInet6)
	if _, _, e := unix.Syscall(unix.SYS_GETSOCKNAME, fd, uintptr(unsafe.Pointer(&r.sa)), uintptr(unsafe.Pointer(&l))); e != 0 {
		return netip.Addr{}, e
	}
	return sockaddrAddrPort(&r.sa).Addr(), nil
}

// close closes the probe socket. It is idempotent.
func (r *routeProbe) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.opened {
		unix.Close(r.fd)
	}
	r.opened = false
}

// disconnect connects the UDP socket fd to AF_UNSPEC, so that its next
// connect routes afresh: a connected UDP socket otherwise keeps the source
// address of its first connect, and fails for good once that address is
// gone. sa is scratch space, so that the call does not allocate.
func disconnect(fd uintptr, sa *unix.RawSockaddrInet6) {
	*sa = unix.RawSockaddrInet6{Family: unix.AF_UNSPEC}
	unix.Syscall(unix.SYS_CONNECT, fd, uintptr(unsafe.Pointer(sa)), unix.SizeofSockaddrInet6)
}
