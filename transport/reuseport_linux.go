//go:build linux

package transport

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// ListenGroup opens n sockets on one port, one per pipeline of the engine:
// an SO_REUSEPORT group, over which the kernel spreads incoming datagrams
// by a hash of their addresses and ports, so that one peer's datagrams
// always reach the same socket. n = 1 is Listen.
//
// The first socket is bound as Listen binds it, without SO_REUSEPORT, so
// that a port already in use fails as it does with one socket (two
// interfaces given one ListenPort do not silently share it); it takes
// SO_REUSEPORT only after the bind, and the others join it (the kernel lets
// only sockets of the same user join). When opts.Port is 0 they join the
// port the first one got. On failure none stays open.
func ListenGroup(opts Options, n int) ([]*UDP, error) {
	if n < 1 {
		return nil, fmt.Errorf("listen UDP port %d: %d sockets", opts.Port, n)
	}
	first, err := Listen(opts)
	if err != nil {
		return nil, err
	}
	group := []*UDP{first}
	if n == 1 {
		return group, nil
	}
	fail := func(err error) ([]*UDP, error) {
		for _, u := range group {
			u.Close()
		}
		return nil, err
	}
	var serr error
	if err := first.raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil || serr != nil {
		return fail(fmt.Errorf("listen UDP port %d: SO_REUSEPORT: %w", first.port, errors.Join(err, serr)))
	}
	opts.Port = first.port
	for range n - 1 {
		conn, err := bindReusePort(first.port, first.is6)
		if err != nil {
			return fail(fmt.Errorf("listen UDP port %d (socket %d of %d): %w", first.port, len(group)+1, n, err))
		}
		u, err := newUDP(conn, opts)
		if err != nil {
			return fail(err)
		}
		group = append(group, u)
	}
	return group, nil
}

// bindReusePort opens a UDP socket with SO_REUSEPORT bound to the wildcard
// address and port: dual-stack [::] when is6, else 0.0.0.0.
func bindReusePort(port uint16, is6 bool) (*net.UDPConn, error) {
	family := unix.AF_INET
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: int(port)}
	if is6 {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(port)}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_UDP)
	if err != nil {
		return nil, err
	}
	if is6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("clear IPV6_V6ONLY: %w", err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("SO_REUSEPORT: %w", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "udp")
	c, err := net.FilePacketConn(f) // dups the descriptor
	f.Close()
	if err != nil {
		return nil, err
	}
	conn, ok := c.(*net.UDPConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("socket is a %T, not UDP", c)
	}
	return conn, nil
}
