//go:build linux

package transport

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"
)

// setPathMTUDiscovery makes every datagram leave with DF set and the
// kernel refuse, with EMSGSIZE, one larger than the path MTU it has learnt
// toward its destination, instead of fragmenting it (IPv4) or sending it
// into a black hole (IPv6, where routers never fragment). On the
// dual-stack socket the IPv4 option governs the v4-mapped traffic and the
// IPv6 ones the rest. s is the socket's descriptor. It also opens the
// sockets that read the path MTU, here, in the socket's network namespace,
// with its fwmark.
func (u *UDP) setPathMTUDiscovery(s int, fwMark uint32) error {
	if err := unix.SetsockoptInt(s, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO); err != nil {
		return fmt.Errorf("IP_MTU_DISCOVER: %w", err)
	}
	if u.is6 {
		if err := unix.SetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DO); err != nil {
			return fmt.Errorf("IPV6_MTU_DISCOVER: %w", err)
		}
		if err := unix.SetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_DONTFRAG, 1); err != nil {
			return fmt.Errorf("IPV6_DONTFRAG: %w", err)
		}
	}
	return u.pmtu.open(u.is6, fwMark)
}

// sendError is the error of datagrams to ep that failed with errno: a
// *PathMTUError carrying the kernel's path MTU for EMSGSIZE.
func (u *UDP) sendError(ep netip.AddrPort, errno unix.Errno) error {
	err := fmt.Errorf("send to %v: %w", ep, errno)
	if errno != unix.EMSGSIZE {
		return err
	}
	mtu, _ := u.PathMTU(ep)
	return &PathMTUError{Endpoint: ep, MTU: mtu, Err: err}
}

// overPathMTU reports whether errno from a GSO send to ep is EINVAL because
// segments of size bytes exceed the kernel's path MTU toward ep, as they do
// once the path narrowed (the kernel checks the segment size against it):
// then GSO itself is fine.
func (u *UDP) overPathMTU(errno unix.Errno, ep netip.AddrPort, size int) bool {
	if errno != unix.EINVAL {
		return false
	}
	mtu, err := u.PathMTU(ep)
	if err != nil {
		return false
	}
	hdr := 40 + 8
	if ep.Addr().Unmap().Is4() {
		hdr = 20 + 8
	}
	return size+hdr > mtu
}

// PathMTU returns the kernel's path MTU toward ep: the MTU of its route
// there, lowered by any ICMP error the kernel accepted for that
// destination and has not yet expired (net.ipv4.route.mtu_expires,
// net.ipv6.route.mtu_expires). Safe for concurrent use; it makes a few
// system calls and sends nothing.
func (u *UDP) PathMTU(ep netip.AddrPort) (int, error) {
	if u.closed.Load() {
		return 0, errClosedProbe
	}
	return u.pmtu.pathMTU(ep)
}

var errClosedProbe = errors.New("transport closed")

// pmtuProbe holds one UDP socket per address family, opened beside the
// transport's in its network namespace and with its fwmark, never bound
// and never sending: connecting one to a destination makes the kernel look
// up the route there, whose MTU IP_MTU or IPV6_MTU then reports.
type pmtuProbe struct {
	mu       sync.Mutex // guards the descriptors and serialises connect and read
	fd4, fd6 int        // -1 or 0 (never opened): none
	opened   bool

	fragMu sync.Mutex // serialises SendFragmentable's changes of the socket's options
}

// SendFragmentable is Send for datagrams the kernel may fragment to the
// path MTU instead of refusing them: the engine's IPv6 packets over a path
// narrower than IPv6's 1280 bytes, which RFC 8200 5 asks the link to
// fragment below IPv6. DF is an option of the socket (IPv4 has no
// per-datagram control), so for the call the socket's path MTU discovery
// toward ep's family is relaxed (IP_PMTUDISC_WANT, or IPV6_PMTUDISC_WANT
// with IPV6_DONTFRAG off) and then set back; a datagram another goroutine
// sends to that family meanwhile may be fragmented too instead of refused,
// which delivers it. Calls are serialised; the rest is as Send.
func (u *UDP) SendFragmentable(bufs [][]byte, ep netip.AddrPort, local netip.Addr) (int, error) {
	u.pmtu.fragMu.Lock()
	defer u.pmtu.fragMu.Unlock()
	v4 := ep.Addr().Unmap().Is4()
	if err := u.setFragmentable(v4, true); err != nil {
		return 0, fmt.Errorf("send to %v: allow fragments: %w", ep, err)
	}
	// One datagram per call: a GSO run over the path MTU is refused even
	// where the kernel would fragment each datagram alone.
	var (
		n    int
		errs []error
	)
	for i := range bufs {
		k, err := u.Send(bufs[i:i+1], ep, local)
		n += k
		if err != nil {
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	if rerr := u.setFragmentable(v4, false); rerr != nil {
		// Left as is, the socket would fragment what it should refuse:
		// fail closed by closing it (the engine's loops then stop).
		u.log.Error("path MTU discovery not restored, closing the socket", "port", u.port, "err", rerr)
		u.Close()
	}
	return n, err
}

// setFragmentable relaxes (on) or restores path MTU discovery for IPv4
// (v4) or IPv6 datagrams.
func (u *UDP) setFragmentable(v4, on bool) error {
	var err error
	cerr := u.raw.Control(func(fd uintptr) {
		s := int(fd)
		if v4 {
			mode := unix.IP_PMTUDISC_DO
			if on {
				mode = unix.IP_PMTUDISC_WANT
			}
			err = unix.SetsockoptInt(s, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, mode)
			return
		}
		mode, dontfrag := unix.IPV6_PMTUDISC_DO, 1
		if on {
			mode, dontfrag = unix.IPV6_PMTUDISC_WANT, 0
		}
		if err = unix.SetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, mode); err == nil {
			err = unix.SetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_DONTFRAG, dontfrag)
		}
	})
	if cerr != nil {
		return cerr
	}
	return err
}

// open opens the probe sockets: IPv4 always, IPv6 with is6.
func (p *pmtuProbe) open(is6 bool, fwMark uint32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fd4, p.fd6 = -1, -1
	p.opened = true
	var err error
	if p.fd4, err = probeSocket(unix.AF_INET, fwMark); err != nil {
		return err
	}
	if is6 {
		if p.fd6, err = probeSocket(unix.AF_INET6, fwMark); err != nil {
			unix.Close(p.fd4)
			p.fd4 = -1
			return err
		}
	}
	return nil
}

func probeSocket(domain int, fwMark uint32) (int, error) {
	s, err := unix.Socket(domain, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("path MTU probe socket: %w", err)
	}
	if fwMark != 0 {
		if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_MARK, int(fwMark)); err != nil {
			unix.Close(s)
			return -1, fmt.Errorf("path MTU probe socket: set fwmark %d: %w", fwMark, err)
		}
	}
	return s, nil
}

// pathMTU connects the probe socket of ep's family to ep and reads the
// route's MTU.
func (p *pmtuProbe) pathMTU(ep netip.AddrPort) (int, error) {
	a := ep.Addr().Unmap()
	p.mu.Lock()
	defer p.mu.Unlock()
	fd, level, opt := p.fd6, unix.IPPROTO_IPV6, unix.IPV6_MTU
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: int(ep.Port()), Addr: a.As16()}
	if a.Is4() {
		fd, level, opt = p.fd4, unix.IPPROTO_IP, unix.IP_MTU
		sa = &unix.SockaddrInet4{Port: int(ep.Port()), Addr: a.As4()}
	}
	if !p.opened || fd < 0 {
		return 0, fmt.Errorf("path MTU to %v: %w", ep, errors.ErrUnsupported)
	}
	if err := unix.Connect(fd, sa); err != nil {
		return 0, fmt.Errorf("path MTU to %v: connect: %w", ep, err)
	}
	var scratch unix.RawSockaddrInet6
	defer disconnect(uintptr(fd), &scratch)
	mtu, err := unix.GetsockoptInt(fd, level, opt)
	if err != nil {
		return 0, fmt.Errorf("path MTU to %v: %w", ep, err)
	}
	return mtu, nil
}

// close closes the probe sockets. It is idempotent.
func (p *pmtuProbe) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, fd := range []*int{&p.fd4, &p.fd6} {
		if p.opened && *fd >= 0 {
			unix.Close(*fd)
		}
		*fd = -1
	}
}
