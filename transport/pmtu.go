package transport

import (
	"fmt"
	"net/netip"
)

// PathMTUError is the failure of a datagram that exceeds the path MTU
// toward Endpoint. The socket sends with DF set (IP_PMTUDISC_DO,
// IPV6_PMTUDISC_DO), so a router on a narrower link answers with ICMP
// "fragmentation needed" or "packet too big"; the kernel checks that error
// against our socket, lowers the path MTU of its route to Endpoint and
// then refuses larger datagrams with EMSGSIZE. MTU is that path MTU as
// the kernel reports it (IP_MTU or IPV6_MTU of a socket connected to
// Endpoint), 0 when it could not be read.
//
// The engine finds it with errors.As by its method PathMTU (package tunnel
// imports no transport code).
type PathMTUError struct {
	Endpoint netip.AddrPort
	MTU      int   // bytes, the whole outer IP datagram
	Err      error // the send failure, wrapping EMSGSIZE
}

func (e *PathMTUError) Error() string {
	return fmt.Sprintf("%v (path MTU %d)", e.Err, e.MTU)
}

func (e *PathMTUError) Unwrap() error { return e.Err }

// PathMTU returns the kernel's path MTU toward the endpoint, 0 if unknown.
func (e *PathMTUError) PathMTU() int { return e.MTU }
