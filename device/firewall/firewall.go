package firewall

import (
	"fmt"
	"net/netip"
	"strings"
)

// Rules describe warren's table for one interface.
type Rules struct {
	Interface string         // the tunnel's interface
	Addresses []netip.Prefix // the tunnel's addresses; the prefix length is ignored
	FwMark    uint32         // the mark of the tunnel's own UDP packets
	IPv4      bool           // whether IPv4 has a default route through the tunnel
	IPv6      bool           // whether IPv6 has a default route through the tunnel
}

// TableName is the name of warren's table for interface iface, in each
// family.
func TableName(iface string) string { return "warren-" + iface }

// IsEmpty reports whether r asks for no table at all.
func (r Rules) IsEmpty() bool { return !r.IPv4 && !r.IPv6 }

// family is one address family's part of the table.
type family struct {
	name  string       // "ip" or "ip6", as nft names it
	addrs []netip.Addr // the tunnel's addresses of the family
}

// families splits r by family, IPv4 first.
func (r Rules) families() []family {
	var out []family
	for _, f := range []struct {
		name string
		on   bool
		is4  bool
	}{{"ip", r.IPv4, true}, {"ip6", r.IPv6, false}} {
		if !f.on {
			continue
		}
		fam := family{name: f.name}
		for _, p := range r.Addresses {
			if a := p.Addr().Unmap(); a.Is4() == f.is4 && !fam.has(a) {
				fam.addrs = append(fam.addrs, a)
			}
		}
		out = append(out, fam)
	}
	return out
}

func (f family) has(a netip.Addr) bool {
	for _, b := range f.addrs {
		if a == b {
			return true
		}
	}
	return false
}

// String renders the rules in nft's syntax, as `nft list table` would show
// them (for logs and tests).
func (r Rules) String() string {
	var b strings.Builder
	for _, f := range r.families() {
		fmt.Fprintf(&b, "table %s %s {\n", f.name, TableName(r.Interface))
		b.WriteString("\tchain preraw { type filter hook prerouting priority -300;\n")
		for _, a := range f.addrs {
			fmt.Fprintf(&b, "\t\tiifname != %q %s daddr %s fib saddr type != local drop\n", r.Interface, f.name, a)
		}
		b.WriteString("\t}\n")
		b.WriteString("\tchain premangle { type filter hook prerouting priority -150;\n")
		b.WriteString("\t\tmeta l4proto udp meta mark set ct mark\n\t}\n")
		b.WriteString("\tchain postmangle { type filter hook postrouting priority -150;\n")
		fmt.Fprintf(&b, "\t\tmeta l4proto udp mark %#x ct mark set mark\n\t}\n}\n", r.FwMark)
	}
	return b.String()
}
