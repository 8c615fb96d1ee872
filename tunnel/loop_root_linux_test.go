package tunnel

import (
	"context"
	"crypto/rand"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/internal/netlab"
)

// linkPackets returns the packets received and sent on the link name in
// ns.
func linkPackets(t *testing.T, ns *netlab.Namespace, name string) uint64 {
	t.Helper()
	link, err := ns.Handle().LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	st := link.Attrs().Statistics
	return st.RxPackets + st.TxPackets
}

// settles fails t unless the link name in ns carries at most limit
// packets in 1 s after a 0.5 s pause, and the engine e still runs: what a
// loop must come to once the packets in it are gone.
func settles(t *testing.T, ns *netlab.Namespace, name string, e *Engine, limit uint64) {
	t.Helper()
	time.Sleep(500 * time.Millisecond)
	before := linkPackets(t, ns, name)
	time.Sleep(time.Second)
	if got := linkPackets(t, ns, name) - before; got > limit {
		t.Errorf("%s carried %d packets in 1 s, want at most %d: the engine spins (drops %v)", name, got, limit, e.DropCounts())
	}
	if err := e.Err(); err != nil {
		t.Fatalf("engine failed: %v", err)
	}
}

// hostRoute adds a route to addr through the link name in ns and returns
// a function that removes it.
func hostRoute(t *testing.T, ns *netlab.Namespace, addr netip.Addr, name string) func() {
	t.Helper()
	link, err := ns.Handle().LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	r := &netlink.Route{Dst: prefixNet(netip.PrefixFrom(addr, addr.BitLen())), LinkIndex: link.Attrs().Index, Scope: unix.RT_SCOPE_LINK}
	if err := ns.Handle().RouteAdd(r); err != nil {
		t.Fatalf("route %v dev %s: %v", addr, name, err)
	}
	removed := false
	del := func() {
		if !removed {
			removed = true
			if err := ns.Handle().RouteDel(r); err != nil {
				t.Errorf("remove route %v dev %s: %v", addr, name, err)
			}
		}
	}
	t.Cleanup(del)
	return del
}

// TestN7EndpointIntoOwnTunnelRoot (root, N7): with a session up, a's
// route to b's endpoint is pointed into a's own tunnel and b's allowed IPs
// take the endpoint's address, as a careless full tunnel without a fwmark
// does. Pings then loop (each round wraps the datagram once more until it
// no longer fits the tunnel), but the loop ends: within 0.5 s the tunnel
// device falls quiet and the engine runs on; once the route is gone, pings
// pass again.
func TestN7EndpointIntoOwnTunnelRoot(t *testing.T) {
	lab, a, b := newTUNLab(t)
	if !innerPing(a, b, 5*time.Second) {
		t.Fatalf("no session before the loop (drops %v)", a.e.DropCounts())
	}
	endpoint := lab.AddrB.Addr()
	allowed := []netip.Prefix{netip.PrefixFrom(b.inner.Addr(), 32)}
	if err := a.e.AddPeer(PeerConfig{PublicKey: b.key.PublicKey(), AllowedIPs: append(allowed, netip.PrefixFrom(endpoint, 32))}); err != nil {
		t.Fatal(err)
	}
	unroute := hostRoute(t, a.ns, endpoint, "wt0")
	before := linkPackets(t, a.ns, "wt0")
	a.ns.Command(context.Background(), "ping", "-n", "-q", "-c5", "-i0.05", "-W0.5", b.inner.Addr().String()).Run()
	looped := linkPackets(t, a.ns, "wt0") - before
	if looped < 50 {
		t.Fatalf("5 pings made %d packets on wt0: no loop, the test proves nothing", looped)
	}
	settles(t, a.ns, "wt0", a.e, 3)
	t.Logf("5 pings made %d packets on wt0 before the loop ended; drops %v", looped, a.e.DropCounts())

	unroute()
	if err := a.e.AddPeer(PeerConfig{PublicKey: b.key.PublicKey(), AllowedIPs: allowed}); err != nil {
		t.Fatal(err)
	}
	if !innerPing(a, b, 5*time.Second) {
		t.Errorf("no ping once the loop is gone (drops %v)", a.e.DropCounts())
	}
}

// TestN8EndpointThroughRemovedPeerRoot (root, N8): a's peer c has its
// endpoint in b's allowed IPs, routed into the tunnel, so that c is
// reached only through b. Once b is removed, c's handshakes go into the
// tunnel to no peer: each is dropped as no_route and answered with host
// unreachable (N10), the engine runs on, and the tunnel carries no more
// than c's retries, one every 5 s. About 7 s, c's retry timer.
func TestN8EndpointThroughRemovedPeerRoot(t *testing.T) {
	_, a, b := newTUNLab(t)
	var (
		cKey, _   = crypto.NewPrivateKey(rand.Reader)
		cEndpoint = netip.MustParseAddrPort("198.19.7.7:51820")
		cInner    = netip.MustParseAddr("198.19.8.8")
	)
	if err := a.e.AddPeer(PeerConfig{PublicKey: b.key.PublicKey(), AllowedIPs: []netip.Prefix{
		netip.PrefixFrom(b.inner.Addr(), 32), netip.PrefixFrom(cEndpoint.Addr(), 24).Masked(),
	}}); err != nil {
		t.Fatal(err)
	}
	if err := a.e.AddPeer(PeerConfig{PublicKey: cKey.PublicKey(), Endpoint: cEndpoint, AllowedIPs: []netip.Prefix{netip.PrefixFrom(cInner, 32)}}); err != nil {
		t.Fatal(err)
	}
	hostRoute(t, a.ns, cEndpoint.Addr(), "wt0")
	hostRoute(t, a.ns, cInner, "wt0")
	if !innerPing(a, b, 5*time.Second) {
		t.Fatalf("a cannot reach b (drops %v)", a.e.DropCounts())
	}
	bRx := b.e.Stats()[0].RxBytes
	a.ns.Command(context.Background(), "ping", "-n", "-q", "-c1", "-W0.5", cInner.String()).Run()
	if got := b.e.Stats()[0].RxBytes - bRx; got == 0 {
		t.Fatalf("c's handshake did not go through b's tunnel")
	}

	if !a.e.RemovePeer(b.key.PublicKey()) {
		t.Fatal("a has no peer b")
	}
	// c's next initiation leaves on its retry timer, 5 s after the first.
	noRoute := a.e.Drops(DropNoRoute)
	for deadline := time.Now().Add(7 * time.Second); a.e.Drops(DropNoRoute) == noRoute; {
		if time.Now().After(deadline) {
			t.Fatalf("c's handshake retry after b's removal was not dropped as no_route (drops %v)", a.e.DropCounts())
		}
		time.Sleep(50 * time.Millisecond)
	}
	settles(t, a.ns, "wt0", a.e, 4)
	t.Logf("after b's removal: drops %v", a.e.DropCounts())
}
