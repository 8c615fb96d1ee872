package firewall_test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/warrenvpn/warren/device/firewall"
	"github.com/warrenvpn/warren/internal/netlab"
	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
)

// nsFD opens the namespace's file, for nftables.
func nsFD(t *testing.T, ns *netlab.Namespace) int {
	t.Helper()
	f, err := os.Open("/var/run/netns/" + ns.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return int(f.Fd())
}

// pingOnce reports whether a probe of three pings 0.2 s apart from ns to
// dst gets any answer within 2 s of the last (the first may wait for
// neighbour discovery).
func pingOnce(t *testing.T, ns *netlab.Namespace, dst netip.Addr) bool {
	t.Helper()
	if _, err := exec.LookPath("ping"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ping not installed (CI=true: a missing tool is a failure)")
		}
		t.Skip("ping not installed")
	}
	return ns.Command(context.Background(), "ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "2", dst.String()).Run() == nil
}

// TestCVE201914899Probe (N13): a host with a tunnel address (here on a veth
// link, as the test needs no tunnel) answers a ping for it sent over the
// underlay by a neighbour; with warren's table it does not, and once the
// table is removed it does again. The table and the tunnel address are in
// namespace A; the probe comes from B through the lab's veth.
func TestCVE201914899Probe(t *testing.T) {
	lab := netlabtest.NewLab(t, 0)
	const iface = "wtfw0"
	tunAddr := netip.MustParsePrefix("198.19.0.1/24")
	tunAddr6 := netip.MustParsePrefix("fd00:7761:19::1/64")
	h := lab.A.Handle()
	// A veth pair stands for the TUN (this kernel may lack dummy links).
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: iface}, PeerName: iface + "p"}); err != nil {
		t.Fatal(err)
	}
	if peer, err := h.LinkByName(iface + "p"); err == nil {
		h.LinkSetUp(peer)
	}
	link, err := h.LinkByName(iface)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []netip.Prefix{tunAddr, tunAddr6} {
		ipn := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
		if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipn, Flags: 0x2 /* nodad */}); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	// B reaches the tunnel addresses through A's underlay address.
	for _, r := range []struct {
		dst netip.Prefix
		gw  netip.Addr
	}{{netip.PrefixFrom(tunAddr.Addr(), 32), lab.AddrA.Addr()}, {netip.PrefixFrom(tunAddr6.Addr(), 128), lab.Addr6A.Addr()}} {
		dst := &net.IPNet{IP: r.dst.Addr().AsSlice(), Mask: net.CIDRMask(r.dst.Bits(), r.dst.Addr().BitLen())}
		if err := lab.B.Handle().RouteAdd(&netlink.Route{Dst: dst, Gw: r.gw.AsSlice()}); err != nil {
			t.Fatal(err)
		}
	}
	if err := lab.A.WaitLocal(tunAddr6.Addr()); err != nil {
		t.Fatal(err)
	}

	nft := firewall.New(nsFD(t, lab.A))
	rules := firewall.Rules{Interface: iface, Addresses: []netip.Prefix{tunAddr, tunAddr6}, FwMark: 51820, IPv4: true, IPv6: true}
	t.Cleanup(func() { nft.Remove(firewall.TableName(iface)) })

	for _, dst := range []netip.Addr{tunAddr.Addr(), tunAddr6.Addr()} {
		if !pingOnce(t, lab.B, dst) {
			t.Fatalf("without warren's table, a ping from the underlay to %s gets no answer: the probe proves nothing", dst)
		}
	}
	if err := nft.Apply(rules); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	tables, err := nft.Tables()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ip warren-" + iface, "ip6 warren-" + iface} {
		if !slices.Contains(tables, want) {
			t.Errorf("tables after Apply = %q, want %q among them", tables, want)
		}
	}
	// Applying again replaces the table; it does not fail or double it.
	if err := nft.Apply(rules); err != nil {
		t.Fatalf("Apply again: %v", err)
	}
	for _, dst := range []netip.Addr{tunAddr.Addr(), tunAddr6.Addr()} {
		if pingOnce(t, lab.B, dst) {
			t.Errorf("with warren's table, a ping from the underlay to %s is answered (CVE-2019-14899)", dst)
		}
	}
	// The tunnel's own interface still reaches its address: the drop is
	// only for other interfaces. (Locally sourced traffic is never
	// dropped: fib saddr type local.)
	if !pingOnce(t, lab.A, tunAddr.Addr()) {
		t.Errorf("with warren's table, A cannot ping its own tunnel address")
	}
	if err := nft.Remove(firewall.TableName(iface)); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if err := nft.Remove(firewall.TableName(iface)); err != nil {
		t.Errorf("Remove of a table already gone: %v", err)
	}
	if tables, _ := nft.Tables(); len(tables) != 0 {
		t.Errorf("tables after Remove = %q, want none", tables)
	}
	for _, dst := range []netip.Addr{tunAddr.Addr(), tunAddr6.Addr()} {
		if !pingOnce(t, lab.B, dst) {
			t.Errorf("after Remove, a ping from the underlay to %s gets no answer", dst)
		}
	}
}
