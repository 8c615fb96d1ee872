package tunnel

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestN10UnreachableRoot (root, N10): ping to an address routed into the
// tunnel that no peer's allowed IPs hold gets the engine's ICMP reply,
// "Destination Host Unreachable" (IPv4) or "Address unreachable" (IPv6),
// at once, and the packet is counted as no_route.
func TestN10UnreachableRoot(t *testing.T) {
	_, a, _ := newTUNLab(t)
	h := a.ns.Handle()
	link, err := h.LinkByName("wt0")
	if err != nil {
		t.Fatal(err)
	}
	inner6 := netip.MustParsePrefix("fd00:7761:1::1/64")
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: prefixNet(inner6), Flags: unix.IFA_F_NODAD}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ dst, want string }{
		{"198.19.0.9", "Destination Host Unreachable"},
		{"fd00:7761:1::9", "Address unreachable"},
	} {
		drops := a.e.Drops(DropNoRoute)
		start := time.Now()
		out, err := a.ns.Command(context.Background(), "ping", "-n", "-c1", "-W5", tc.dst).CombinedOutput()
		took := time.Since(start)
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("ping %s: %v, want %q in:\n%s", tc.dst, err, tc.want, out)
		}
		if took > 2*time.Second {
			t.Errorf("ping %s took %v, want the reply at once", tc.dst, took.Round(time.Millisecond))
		}
		if got := a.e.Drops(DropNoRoute) - drops; got == 0 {
			t.Errorf("ping %s: no_route did not count the echo request", tc.dst)
		}
		t.Logf("ping %s: %v\n%s", tc.dst, took.Round(time.Millisecond), out)
	}
}
