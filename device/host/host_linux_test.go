package host_test

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/warrenvpn/warren/device/host"
	"github.com/warrenvpn/warren/device/tun"
	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
)

// dumpTables renders the links, addresses, routes (all tables) and rules of
// the namespace behind h, sorted, as `ip` dumps would show them. An
// interrupted dump is retried, then accepted. It leaves out what the kernel
// adds on its own and at its own pace once a link is up (IPv6 link-local
// addresses, the local table), which warren never touches.
func dumpTables(t *testing.T, h *netlink.Handle) string {
	t.Helper()
	var lines []string
	retry := func(what string, f func() error) {
		err := f()
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			err = f()
		}
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			t.Fatalf("dump %s: %v", what, err)
		}
	}
	var links []netlink.Link
	retry("links", func() (err error) { links, err = h.LinkList(); return err })
	names := make(map[int]string)
	for _, l := range links {
		a := l.Attrs()
		names[a.Index] = a.Name
		lines = append(lines, fmt.Sprintf("link %s mtu %d flags %v", a.Name, a.MTU, a.Flags))
	}
	var addrs []netlink.Addr
	retry("addresses", func() (err error) { addrs, err = h.AddrList(nil, netlink.FAMILY_ALL); return err })
	for _, a := range addrs {
		if a.IP.IsLinkLocalUnicast() {
			continue
		}
		lines = append(lines, fmt.Sprintf("addr %v dev %s", a.IPNet, names[a.LinkIndex]))
	}
	var routes []netlink.Route
	retry("routes", func() (err error) {
		routes, err = h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		return err
	})
	for _, r := range routes {
		if r.Table == unix.RT_TABLE_LOCAL || (r.Dst != nil && r.Dst.IP.IsLinkLocalUnicast()) {
			continue
		}
		lines = append(lines, fmt.Sprintf("route %v dev %s table %d proto %d scope %d type %d metric %d", r.Dst, names[r.LinkIndex], r.Table, r.Protocol, r.Scope, r.Type, r.Priority))
	}
	var rules []netlink.Rule
	retry("rules", func() (err error) { rules, err = h.RuleList(netlink.FAMILY_ALL); return err })
	for _, r := range rules {
		lines = append(lines, fmt.Sprintf("rule family %d pref %d invert %v mark %#x table %d suppress %d", r.Family, r.Priority, r.Invert, r.Mark, r.Table, r.SuppressPrefixlen))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n") + "\n"
}

// TestHostApplyRoot applies a wg-quick like state with default routes to a
// TUN in a namespace, checks the kernel's view and routing decisions, then
// checks that Undo leaves links, addresses, routes, rules and the sysctl as
// found (the host side of L6), and that a failure half-way changes nothing.
func TestHostApplyRoot(t *testing.T) {
	netlabtest.RequireRoot(t)
	ns := netlabtest.NewNamespace(t)
	var tn *tun.TUN
	if err := ns.Do(func() (err error) { tn, err = tun.OpenTUN("wg0", 1500); return err }); err != nil {
		t.Fatalf("OpenTUN: %v", err)
	}
	t.Cleanup(func() { tn.Close() })
	nl := ns.Handle()
	sys := host.ProcSys{}
	readMark := func() (v string) {
		t.Helper()
		if err := ns.Do(func() (err error) { v, err = sys.ReadSysctl(host.SrcValidMark); return err }); err != nil {
			t.Fatal(err)
		}
		return v
	}
	before, markBefore := dumpTables(t, nl), readMark()

	plan := host.PlanRoutes(host.RouteOptions{
		// 198.18.9.0/24 is also the address's prefix route: the kernel's,
		// so it is left alone. fd00:7761:9::/64 is too, but IPv6 keeps
		// both, at metrics 256 (kernel) and 1024 (ours).
		Allowed: prefixes("198.18.9.0/24", "fd00:7761:9::/64", "198.18.10.0/24", "fd00:7761:10::/48", "0.0.0.0/0", "::/0"),
	})
	state := host.State{
		Link: "wg0", MTU: 1420, Up: true,
		Addresses: prefixes("198.18.9.1/24", "fd00:7761:9::1/64"),
		Routes:    plan.Routes, Rules: plan.Rules, Sysctls: plan.Sysctls,
	}
	m := host.NewManager(nl, sys)
	apply := func(s host.State) (held host.State, err error) {
		err = ns.Do(func() error { held, err = m.Apply(s); return err })
		return held, err
	}
	undo := func() {
		t.Helper()
		if err := ns.Do(m.Undo); err != nil {
			t.Fatalf("Undo: %v", err)
		}
	}
	t.Cleanup(func() { ns.Do(m.Undo) })

	held, err := apply(state)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if slices.ContainsFunc(held.Routes, func(r host.Route) bool { return r.Dst.String() == "198.18.9.0/24" }) {
		t.Errorf("held the kernel's prefix route: %v", held)
	}
	applied := dumpTables(t, nl)
	for _, want := range []string{
		"link wg0 mtu 1420 flags up|pointtopoint|multicast",
		"addr 198.18.9.1/24 dev wg0",
		"addr fd00:7761:9::1/64 dev wg0",
		"route 198.18.10.0/24 dev wg0 table 254 proto 3 scope 253 type 1 metric 0",
		"route fd00:7761:9::/64 dev wg0 table 254 proto 3 scope 0 type 1 metric 1024",
		"route fd00:7761:9::/64 dev wg0 table 254 proto 2 scope 0 type 1 metric 256",
		"route fd00:7761:10::/48 dev wg0 table 254",
		"route 0.0.0.0/0 dev wg0 table 51820",
		"route ::/0 dev wg0 table 51820",
		"rule family 2 pref 32764 invert false mark 0x0 table 254 suppress 0",
		"rule family 2 pref 32765 invert true mark 0xca6c table 51820 suppress -1",
		"rule family 10 pref 32764 invert false mark 0x0 table 254 suppress 0",
		"rule family 10 pref 32765 invert true mark 0xca6c table 51820 suppress -1",
	} {
		if !strings.Contains(applied, want) {
			t.Errorf("tables after Apply lack %q:\n%s", want, applied)
		}
	}
	if v := readMark(); v != "1" {
		t.Errorf("%s = %s after Apply, want 1", host.SrcValidMark, v)
	}

	// Routing decisions: unmarked traffic to anywhere goes into the tunnel;
	// traffic carrying the fwmark (the tunnel's own UDP) does not.
	link, err := nl.LinkByName("wg0")
	if err != nil {
		t.Fatal(err)
	}
	for _, dst := range []string{"192.0.2.1", "2001:db8::1"} {
		routes, err := nl.RouteGet(net.ParseIP(dst))
		if err != nil || len(routes) == 0 || routes[0].LinkIndex != link.Attrs().Index {
			t.Errorf("route get %s = %v, %v; want via wg0", dst, routes, err)
		}
		routes, err = nl.RouteGetWithOptions(net.ParseIP(dst), &netlink.RouteGetOptions{Mark: plan.FwMark})
		if err == nil && len(routes) > 0 && routes[0].LinkIndex == link.Attrs().Index {
			t.Errorf("route get %s mark %#x = via wg0, want no route through the tunnel", dst, plan.FwMark)
		}
	}

	if _, err := apply(state); err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	if diff := cmp.Diff(dumpTables(t, nl), applied); diff != "" {
		t.Errorf("second Apply changed the tables (-got +want):\n%s", diff)
	}

	undo()
	if diff := cmp.Diff(dumpTables(t, nl), before); diff != "" {
		t.Errorf("after Undo (-got +want):\n%s", diff)
	}
	if v := readMark(); v != markBefore {
		t.Errorf("%s = %s after Undo, want %s", host.SrcValidMark, v, markBefore)
	}

	// A failure at the last step (an unknown sysctl) undoes the rest.
	bad := state
	bad.Sysctls = append(slices.Clone(state.Sysctls), host.Sysctl{Key: "net.ipv4.conf.all.warren_no_such_key", Value: "1"})
	if held, err := apply(bad); err == nil || len(held.Routes) != 0 {
		t.Errorf("Apply with a bad sysctl = %v, %v; want an error and nothing held", held, err)
	}
	if diff := cmp.Diff(dumpTables(t, nl), before); diff != "" {
		t.Errorf("after a failed Apply (-got +want):\n%s", diff)
	}
	if v := readMark(); v != markBefore {
		t.Errorf("%s = %s after a failed Apply, want %s", host.SrcValidMark, v, markBefore)
	}
}
