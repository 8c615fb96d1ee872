package tun

import (
	"fmt"

	"github.com/warrenvpn/warren/config"
)

// TUN limits.
const (
	// TUNHeadroom is the smallest offset Write accepts: the virtio-net
	// header the kernel expects in front of each packet when offloads are
	// on. The engine uses 16, the WireGuard data header size.
	TUNHeadroom = 10 // bytes

	// EthernetOverhead is what a TAP frame adds to an IP packet: the
	// Ethernet header and one VLAN tag.
	EthernetOverhead = 14 + 4 // bytes
)

// ErrRemoved reports that the host interface behind an adapter was deleted
// from outside (`ip link del`, which is how `wg-quick down` stops a
// userspace implementation). Such errors also match net.ErrClosed. The
// engine, which does not import this package, recognises them by their
// Removed method (see tunnel.Adapter).
var ErrRemoved error = removedError{}

// removedError is the type of ErrRemoved.
type removedError struct{}

func (removedError) Error() string { return "device removed" }

// Removed reports true: the interface is gone.
func (removedError) Removed() bool { return true }

// openError is an error whose text is one clear line for the user while it
// still unwraps to the system error behind it.
type openError struct {
	msg string
	err error
}

func (e *openError) Error() string { return e.msg }
func (e *openError) Unwrap() error { return e.err }

// checkMTU returns an error unless mtu is one a TUN or TAP can take
// (config.MinMTU to config.MaxMTU).
func checkMTU(mtu int) error {
	if mtu < config.MinMTU || mtu > config.MaxMTU {
		return fmt.Errorf("invalid MTU %d: want %d to %d", mtu, config.MinMTU, config.MaxMTU)
	}
	return nil
}
