package main

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/warrenvpn/warren/internal/netlab"
	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
)

// TestT4LANMTURoot: two sites whose TAPs have the LAN's MTU (MTU = 1500)
// and whose hosts keep theirs (1500), over an underlay of 1500 bytes that
// carries 1440 bytes of plaintext (IPv4). A 1500-byte ping with DF from a
// host at site A gets "fragmentation needed" back through the TAP (the
// first such frame teaches warren the path, every later one is answered),
// the host's kernel then holds the path MTU a frame leaves (1440 - 4 - 14
// = 1422) toward the other site's host, and IPv6 likewise learns it from
// "packet too big". A TCP transfer from site B, whose first full-sized
// segments teach its warren the path, completes with a matching checksum
// and leaves the sender holding 1422 too; so does one over IPv6 from A.
func TestT4LANMTURoot(t *testing.T) {
	ping := requireTool(t, "ping")
	l := &l2Lab{testPair: newTestPair(t)}
	for i := range 2 {
		l.up(t, i, l.tapConfig(i, "MTU = 1500"))
	}
	var hosts [2]*netlab.Namespace
	for s := range 2 {
		waitBridge(t, l.ns(s), l.names[s])
		hosts[s] = netlabtest.NewNamespace(t)
		if _, err := attachHost(l.ns(s), l2Bridge, "vh0", hosts[s], "eth0", 1500, l2HostIP(s, 0), l2HostIP6(s, 0)); err != nil {
			t.Fatal(err)
		}
	}
	for s, h := range hosts {
		for _, a := range []netip.Addr{l2HostIP(s, 0).Addr(), l2HostIP6(s, 0).Addr()} {
			if err := h.WaitLocal(a); err != nil {
				t.Fatal(err)
			}
		}
	}
	dst, dst6 := l2HostIP(1, 0).Addr(), l2HostIP6(1, 0).Addr()
	pingUntil(t, hosts[0], dst) // ARP, the handshake
	pingUntil(t, hosts[0], dst6)

	// TCP from site B with full-sized segments: site B's warren learns the
	// path from the first, answers the next, and the transfer completes.
	from := l2HostIP(0, 0).Addr()
	gbps, _, err := demoTransfer(context.Background(), hosts[1], hosts[0], from, 8<<20)
	if err != nil {
		t.Fatalf("8 MiB over TCP from site B's host to %s: %v", from, err)
	}
	t.Logf("8 MiB from site B's host at %.2f Gbit/s", gbps)
	if got := routeMTU(t, hosts[1], from); got != "1422" {
		t.Errorf("site B's host holds path MTU %q toward %s after TCP, want 1422", got, from)
	}

	// 1500 bytes with DF from site A: 1472 bytes of ICMP data.
	out, _ := hosts[0].Command(context.Background(), ping, "-c", "4", "-i", "0.2", "-W", "1", "-M", "do", "-s", "1472", dst.String()).CombinedOutput()
	if !strings.Contains(string(out), "mtu = 1422") && !strings.Contains(string(out), "mtu=1422") {
		t.Errorf("a 1500-byte ping with DF got no fragmentation needed with MTU 1422:\n%s", out)
	}
	if got := routeMTU(t, hosts[0], dst); got != "1422" {
		t.Errorf("site A's host holds path MTU %q toward %s, want 1422", got, dst)
	}
	out, _ = hosts[0].Command(context.Background(), ping, "-6", "-c", "4", "-i", "0.2", "-W", "1", "-M", "do", "-s", "1452", dst6.String()).CombinedOutput()
	if got := routeMTU(t, hosts[0], dst6); got != "1422" {
		t.Errorf("site A's host holds path MTU %q toward %s, want 1422 (packet too big)\n%s", got, dst6, out)
	}
	for s := range 2 {
		if d := l.showDrops(t, s); d["path_mtu"] == 0 {
			t.Errorf("site %d counts no path_mtu drops: %v", s, d)
		}
	}
	gbps, _, err = demoTransfer(context.Background(), hosts[0], hosts[1], dst6, 8<<20)
	if err != nil {
		t.Fatalf("8 MiB over TCP/IPv6 from site A's host to %s: %v", dst6, err)
	}
	t.Logf("8 MiB over IPv6 from site A's host at %.2f Gbit/s", gbps)
}

// routeMTU returns the mtu of `ip route get dst` in ns ("" when the route
// has none: no path MTU learnt).
func routeMTU(t *testing.T, ns *netlab.Namespace, dst netip.Addr) string {
	t.Helper()
	out, err := netlabCommand("-n", ns.Name(), "route", "get", dst.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("ip route get %s: %v\n%s", dst, err, out)
	}
	f := strings.Fields(string(out))
	for i := range len(f) - 1 {
		if f[i] == "mtu" {
			return f[i+1]
		}
	}
	return ""
}
