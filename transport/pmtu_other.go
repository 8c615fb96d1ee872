//go:build !linux

package transport

import (
	"errors"
	"net/netip"
)

// PathMTU is not supported by the portable fallback, which leaves
// fragmentation to the system.
func (u *UDP) PathMTU(ep netip.AddrPort) (int, error) { return 0, errors.ErrUnsupported }

// SendFragmentable is Send: the portable fallback leaves fragmentation to
// the system anyway.
func (u *UDP) SendFragmentable(bufs [][]byte, ep netip.AddrPort, local netip.Addr) (int, error) {
	return u.Send(bufs, ep, local)
}
