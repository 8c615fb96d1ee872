package host_test

import (
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/warrenvpn/warren/device/host"
)

func netlinkAddr(s string) *netlink.Addr {
	p := netip.MustParsePrefix(s)
	return &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
}

func netlinkRoute(link netlink.Link, s string) *netlink.Route {
	return &netlink.Route{LinkIndex: link.Attrs().Index, Dst: netlinkAddr(s).IPNet}
}

// ruleOf builds the netlink rule the Host would add for r.
func ruleOf(r host.Rule) *netlink.Rule {
	n := netlink.NewRule()
	n.Family = 2
	if r.IPv6 {
		n.Family = 10
	}
	n.Priority, n.Mark, n.Invert, n.Table = r.Priority, r.Mark, r.Invert, r.Table
	if r.Suppress {
		n.SuppressPrefixlen = r.SuppressPrefixlen
	}
	return n
}
