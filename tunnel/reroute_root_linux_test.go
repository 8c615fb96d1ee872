package tunnel

import (
	"context"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestN11PingDeviceAndMarkRoot (root, N11): `ping -I wt0` reaches b's
// tunnel address, and an address whose route in the main table leaves by
// the underlay goes through the tunnel all the same when ping is bound to
// the device; then a firewall MARK (an nftables route chain) with a rule
// for the mark reroutes pings to that address (from the tunnel's address)
// into the tunnel, and they are answered.
// Each time b's engine counts what arrived, so the path taken is known.
func TestN11PingDeviceAndMarkRoot(t *testing.T) {
	lab, a, b := newTUNLab(t)
	other := netip.MustParseAddr("198.19.3.3") // b's, routed by the underlay in a's main table
	const mark, table = 0x77, 77

	bLink, err := b.ns.Handle().LinkByName("wt0")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.ns.Handle().AddrAdd(bLink, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(other, 32))}); err != nil {
		t.Fatal(err)
	}
	if err := a.e.AddPeer(PeerConfig{PublicKey: b.key.PublicKey(), AllowedIPs: []netip.Prefix{
		netip.PrefixFrom(b.inner.Addr(), 32), netip.PrefixFrom(other, 32),
	}}); err != nil {
		t.Fatal(err)
	}
	if err := a.ns.Handle().RouteAdd(&netlink.Route{Dst: prefixNet(netip.PrefixFrom(other, 32)), Gw: lab.AddrB.Addr().AsSlice()}); err != nil {
		t.Fatal(err)
	}

	// pingVia pings dst from a with args and reports whether b's engine
	// received it through the tunnel; an unanswered ping fails t when the
	// tunnel was crossed.
	pingVia := func(dst netip.Addr, args ...string) bool {
		t.Helper()
		rx := b.e.Stats()[0].RxBytes
		args = append([]string{"-n", "-c1", "-W2"}, append(args, dst.String())...)
		out, err := a.ns.Command(context.Background(), "ping", args...).CombinedOutput()
		crossed := b.e.Stats()[0].RxBytes > rx
		if err != nil && crossed {
			t.Fatalf("ping %v: %v\n%s", args, err, out)
		}
		return crossed
	}
	if !pingVia(b.inner.Addr(), "-I", "wt0") {
		t.Errorf("ping -I wt0 %v did not cross the tunnel", b.inner.Addr())
	}
	if !pingVia(other, "-I", "wt0") {
		t.Errorf("ping -I wt0 %v did not cross the tunnel", other)
	}
	if pingVia(other, "-I", a.inner.Addr().String()) {
		t.Fatalf("ping %v crossed the tunnel before the mark: the control failed", other)
	}

	// nft add table ip t; add chain ip t out { type route hook output priority mangle; }
	// add rule ip t out ip daddr 198.19.3.3 meta mark set 0x77
	c, err := nftables.New(nftables.WithNetNSFd(int(nsFd(t, a.ns))))
	if err != nil {
		t.Fatal(err)
	}
	tb := c.AddTable(&nftables.Table{Name: "warren_test_mark", Family: nftables.TableFamilyIPv4})
	out := c.AddChain(&nftables.Chain{Name: "out", Table: tb, Type: nftables.ChainTypeRoute,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityMangle})
	dst := other.As4()
	c.AddRule(&nftables.Rule{Table: tb, Chain: out, Exprs: []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: dst[:]},
		&expr.Immediate{Register: 1, Data: binary.NativeEndian.AppendUint32(nil, mark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}})
	if err := c.Flush(); err != nil {
		t.Fatalf("nftables in a: %v", err)
	}
	rule := netlink.NewRule()
	rule.Mark, rule.Table, rule.Family = mark, table, unix.AF_INET
	if err := a.ns.Handle().RuleAdd(rule); err != nil {
		t.Fatal(err)
	}
	aLink, err := a.ns.Handle().LinkByName("wt0")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.ns.Handle().RouteAdd(&netlink.Route{Dst: prefixNet(netip.PrefixFrom(other, 32)), LinkIndex: aLink.Attrs().Index, Table: table}); err != nil {
		t.Fatal(err)
	}
	// The source is the tunnel's: rerouting keeps the one the main table
	// chose, the underlay's, which b's source check would drop.
	if !pingVia(other, "-I", a.inner.Addr().String()) {
		t.Errorf("ping %v after the MARK did not cross the tunnel (drops a %v, b %v)", other, a.e.DropCounts(), b.e.DropCounts())
	}
}
