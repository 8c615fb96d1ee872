package tunnel

import (
	"context"
	"net/netip"
	"strconv"
	"testing"

	"github.com/vishvananda/netlink"
)

// TestN4RouteMTURoot (root, N4): a's route to b's endpoint has MTU 1400,
// below what the tunnel's 1420 needs outside (1480). The first full-sized
// ping meets EMSGSIZE and lowers b's limit to 1340 (PM2); from then on a
// 1335-byte packet, which padding to a multiple of 16 would make 1344
// (1404 outside), is padded only to the limit and crosses, as does one of
// exactly 1340, and the transport refuses nothing more. warren cannot see
// the route an inner packet took, as the kernel's WireGuard does: the
// route that bounds its datagrams is the outer one, learnt this way.
func TestN4RouteMTURoot(t *testing.T) {
	lab, a, b := newTUNLab(t)
	link, err := a.ns.Handle().LinkByName(lab.LinkA)
	if err != nil {
		t.Fatal(err)
	}
	endpoint := netip.PrefixFrom(lab.AddrB.Addr(), 32)
	if err := a.ns.Handle().RouteAdd(&netlink.Route{Dst: prefixNet(endpoint), LinkIndex: link.Attrs().Index, MTU: 1400}); err != nil {
		t.Fatal(err)
	}
	// ping sends one unfragmentable echo request of size bytes in all and
	// reports whether it was answered.
	ping := func(size int) bool {
		args := []string{"-n", "-c1", "-W1", "-M", "do", "-s", strconv.Itoa(size - 28), b.inner.Addr().String()}
		return a.ns.Command(context.Background(), "ping", args...).Run() == nil
	}
	ping(1420)
	if inner := a.e.peerList()[0].pmtu.inner.Load(); inner != 1340 {
		t.Fatalf("b's limit at a = %d after a 1420-byte ping over a 1400-byte route, want 1340 (drops %v)", inner, a.e.DropCounts())
	}
	sendErrors := a.e.Drops(DropSendError)
	for _, size := range []int{1335, 1340, 1000} {
		if !ping(size) {
			t.Errorf("a %d-byte ping was not answered under the 1340-byte limit (drops %v)", size, a.e.DropCounts())
		}
	}
	if got := a.e.Drops(DropSendError) - sendErrors; got != 0 {
		t.Errorf("%d datagrams refused by the 1400-byte route after the limit was learnt: padding went past it", got)
	}
}
