package netlab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NewLab creates two namespaces named after prefix and joins them with a veth
// pair of the given MTU (0 means DefaultMTU). The host's own namespace is
// never touched: the pair is created inside A with its peer end in B.
func NewLab(prefix string, mtu int) (*Lab, error) {
	if mtu == 0 {
		mtu = DefaultMTU
	}
	a, err := NewNamespace(prefix + "-a")
	if err != nil {
		return nil, err
	}
	b, err := NewNamespace(prefix + "-b")
	if err != nil {
		a.Close()
		return nil, err
	}
	l := &Lab{
		A: a, B: b,
		LinkA: LinkA, LinkB: LinkB,
		AddrA: AddrA, AddrB: AddrB,
		Addr6A: Addr6A, Addr6B: Addr6B,
		MTU: mtu,
	}
	if err := l.wire(); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// wire creates the veth pair and configures both ends.
func (l *Lab) wire() error {
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: l.LinkA, MTU: l.MTU},
		PeerName:      l.LinkB,
		PeerNamespace: netlink.NsFd(l.B.ns),
	}
	if err := l.A.handle.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth pair %s/%s: %w", l.LinkA, l.LinkB, err)
	}
	// The peer end takes the MTU of the request only on recent kernels.
	if err := setUp(l.B, l.LinkB, l.MTU, l.AddrB, l.Addr6B); err != nil {
		return err
	}
	if err := setUp(l.A, l.LinkA, l.MTU, l.AddrA, l.Addr6A); err != nil {
		return err
	}
	for _, w := range []struct {
		ns   *Namespace
		addr netip.Prefix
	}{{l.A, l.AddrA}, {l.A, l.Addr6A}, {l.B, l.AddrB}, {l.B, l.Addr6B}} {
		if err := w.ns.WaitLocal(w.addr.Addr()); err != nil {
			return err
		}
	}
	return nil
}

// setUp sets the MTU and addresses of link in ns and brings it up.
func setUp(ns *Namespace, name string, mtu int, addrs ...netip.Prefix) error {
	h := ns.handle
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", name, ns.name, err)
	}
	if err := h.LinkSetMTU(link, mtu); err != nil {
		return fmt.Errorf("set MTU %d on %s: %w", mtu, name, err)
	}
	for _, p := range addrs {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if p.Addr().Is6() {
			// No duplicate address detection: the address is usable at once.
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(link, a); err != nil {
			return fmt.Errorf("add %s to %s: %w", p, name, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// Close removes both namespaces and the veth pair with them. It is
// idempotent.
func (l *Lab) Close() error {
	return errors.Join(l.A.Close(), l.B.Close())
}
