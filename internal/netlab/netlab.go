// Package netlab builds network namespace labs for root tests, benchmarks and
// the demo: named namespaces that `ip netns exec` can enter, and a Lab of two
// namespaces joined by a veth pair.
//
// Everything a lab creates lives inside its own namespaces, so closing them
// leaves the host's tables exactly as they were. Tests take labs through
// package netlabtest, which skips where namespaces cannot be made and
// closes them in t.Cleanup; netlab itself does not import package testing,
// so the warren binary does not link it.
package netlab

import (
	"crypto/rand"
	"encoding/hex"
	"net/netip"
)

// Lab addresses, from the ranges reserved for tests (RFC 2544, RFC 4193).
var (
	AddrA  = netip.MustParsePrefix("198.18.0.1/24")
	AddrB  = netip.MustParsePrefix("198.18.0.2/24")
	Addr6A = netip.MustParsePrefix("fd00:7761::1/64")
	Addr6B = netip.MustParsePrefix("fd00:7761::2/64")
)

// Lab link names. Each lives in its own namespace.
const (
	LinkA = "veth-a"
	LinkB = "veth-b"
)

// DefaultMTU is the veth MTU NewLab uses when given 0.
const DefaultMTU = 1500 // bytes

// Lab is two namespaces, A and B, joined by a veth pair: LinkA in A carries
// AddrA and Addr6A, LinkB in B carries AddrB and Addr6B. Both ends are up, and
// IPv6 addresses skip duplicate address detection so they work at once.
type Lab struct {
	A, B           *Namespace
	LinkA, LinkB   string
	AddrA, AddrB   netip.Prefix // 198.18.0.1/24, 198.18.0.2/24
	Addr6A, Addr6B netip.Prefix // fd00:7761::1/64, fd00:7761::2/64
	MTU            int          // bytes, of both veth ends
}

// uniqueName returns prefix followed by a dash and 8 random hex digits.
func uniqueName(prefix string) string {
	var b [4]byte
	rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}
