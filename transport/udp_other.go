//go:build !linux

package transport

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
)

// UDP is the portable fallback: a net.UDPConn moving one datagram per system
// call. Receive returns one datagram per call; BatchSize is 1. Safe for
// concurrent use; after Close every call returns net.ErrClosed.
type UDP struct {
	conn   *net.UDPConn
	port   uint16
	closed atomic.Bool
}

// Listen opens a dual-stack UDP socket on opts.Port (IPv4-only where the
// system has no IPv6). FwMark is not supported here.
func Listen(opts Options) (*UDP, error) {
	if opts.FwMark != 0 {
		return nil, fmt.Errorf("set fwmark %d: %w", opts.FwMark, errors.ErrUnsupported)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{Port: int(opts.Port)})
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			err = errno
		}
		return nil, fmt.Errorf("listen UDP port %d: %w", opts.Port, err)
	}
	return &UDP{conn: conn, port: uint16(conn.LocalAddr().(*net.UDPAddr).Port)}, nil
}

// Receive blocks until a datagram arrives and returns it in bufs[0]. Its
// local address is not known here: locals[0] is the zero Addr, so the
// engine never asks Send for a source address.
func (u *UDP) Receive(bufs [][]byte, sizes []int, eps []netip.AddrPort, locals []netip.Addr) (int, error) {
	if u.closed.Load() {
		return 0, net.ErrClosed
	}
	if _, err := checkReceive(bufs, sizes, eps, locals, 1); err != nil {
		return 0, err
	}
	n, ep, err := u.conn.ReadFromUDPAddrPort(bufs[0])
	if err != nil {
		if u.closed.Load() || errors.Is(err, net.ErrClosed) {
			return 0, net.ErrClosed
		}
		return 0, err
	}
	sizes[0], eps[0], locals[0] = n, netip.AddrPortFrom(ep.Addr().Unmap(), ep.Port()), netip.Addr{}
	return 1, nil
}

// Send sends every datagram in bufs to ep, one system call each, trying
// every one. It returns how many were sent and errors.Join of the failures.
// The source address is always the system's choice: local is ignored
// (Receive reports none to learn).
func (u *UDP) Send(bufs [][]byte, ep netip.AddrPort, _ netip.Addr) (int, error) {
	if u.closed.Load() {
		return 0, net.ErrClosed
	}
	var errs []error
	n := 0
	for _, b := range bufs {
		if _, err := u.conn.WriteToUDPAddrPort(b, ep); err != nil {
			if u.closed.Load() || errors.Is(err, net.ErrClosed) {
				return n, net.ErrClosed
			}
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// BatchSize returns 1: the fallback moves one datagram per call.
func (u *UDP) BatchSize() int { return 1 }

// Port returns the bound UDP port.
func (u *UDP) Port() uint16 { return u.port }

// Offload reports false, false: no GSO or GRO here.
func (u *UDP) Offload() (gso, gro bool) { return false, false }

// Close closes the socket, unblocking any Receive. It is idempotent.
func (u *UDP) Close() error {
	if !u.closed.CompareAndSwap(false, true) {
		return nil
	}
	return u.conn.Close()
}

// RouteSource reports errors.ErrUnsupported: the fallback cannot ask for
// the system's source address choice.
func (u *UDP) RouteSource(netip.AddrPort) (netip.Addr, error) {
	return netip.Addr{}, errors.ErrUnsupported
}
