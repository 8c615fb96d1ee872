package vmlab_test

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// TestIPVLANModes proves the ipvlan modes by traffic, with the links made
// by `warren link add ipvlan` inside the guest (the host kernel has no
// ipvlan). Two ipvlans share the guest's eth0 as parent, each in a
// namespace of its own:
//   - they reach each other in every mode, inside the parent;
//   - l2 answers ARP, so the host on eth0's network reaches an ipvlan's
//     address directly; l3 and l3s do not (the links are NOARP), and the
//     host reaches them only routed through eth0's address;
//   - l3s, unlike l3, takes inbound packets through the parent namespace's
//     IP input path (for its netfilter hooks): the guest's own Ip
//     InReceives counter grows by every routed ping.
//
// It adds links beside eth0 in the shared guest, so it does not run in
// parallel with other tests.
func TestIPVLANModes(t *testing.T) {
	l := sharedLab(t)
	for i, mode := range []string{"l2", "l3", "l3s"} {
		t.Run(mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			addrA := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 100, byte(20 + 10*i + 1)}), 24)
			addrB := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 100, byte(20 + 10*i + 2)}), 24)
			nsA, nsB := "iva"+mode, "ivb"+mode
			for _, w := range []struct {
				ns   string
				addr netip.Prefix
			}{{nsA, addrA}, {nsB, addrB}} {
				l.run(t, ctx, "netns", "add", w.ns)
				t.Cleanup(func() {
					if out, err := l.g.Run(context.Background(), "netns", "del", w.ns); err != nil {
						t.Errorf("%v: %s", err, out)
					}
				})
				l.run(t, ctx, "exec", "/bin/warren", "link", "add", "ipvlan", "iv0", "--parent", "eth0",
					"--mode", mode, "--netns", w.ns, "--address", w.addr.String())
				t.Cleanup(func() {
					if out, err := l.g.Run(context.Background(), "exec", "/bin/warren", "link", "del", "iv0", "--netns", w.ns); err != nil {
						t.Errorf("%v: %s", err, out)
					}
				})
			}
			var links []struct{ Name, Kind, Mode, Parent, Netns string }
			out := l.run(t, ctx, "exec", "/bin/warren", "link", "ls", "--json", "--netns", nsA)
			if err := json.Unmarshal([]byte(out), &links); err != nil {
				t.Fatalf("warren link ls --json: %v\n%s", err, out)
			}
			found := false
			for _, lk := range links {
				if lk.Name == "iv0" {
					found = true
					if lk.Kind != "ipvlan" || lk.Mode != mode || !strings.HasPrefix(lk.Parent, "eth0") {
						t.Errorf("warren link ls: iv0 = %+v, want kind ipvlan, mode %s, parent eth0", lk, mode)
					}
				}
			}
			if !found {
				t.Errorf("warren link ls --netns %s lacks iv0:\n%s", nsA, out)
			}

			// Between the two ipvlans, inside the parent.
			if out, err := l.g.Run(ctx, "in", nsA, "ping", addrB.Addr().String(), "3"); err != nil || out != "3/3" {
				t.Errorf("ping %v from %v: %s answered: %v", addrB.Addr(), addrA.Addr(), out, err)
			}

			// From the host, on the link: ARP answers only in l2.
			direct := l.pingWait(t, addrA.Addr(), 1, 2*time.Second)
			if want := map[string]int{"l2": 1, "l3": 0, "l3s": 0}[mode]; direct != want {
				t.Errorf("ping %v from the host on the link: %d answered, want %d", addrA.Addr(), direct, want)
			}

			// Routed through eth0's address: every mode.
			l.routeVia(t, netip.PrefixFrom(addrA.Addr(), 32), guest4.Addr())
			before, beforeA := l.ipInReceives(t, ctx), l.ipInReceives(t, ctx, "in", nsA)
			const n = 20
			if got := l.pingWait(t, addrA.Addr(), n, 2*time.Second); got != n {
				t.Errorf("ping %v from the host routed via %v: %d of %d answered", addrA.Addr(), guest4.Addr(), got, n)
			}
			delta, deltaA := l.ipInReceives(t, ctx)-before, l.ipInReceives(t, ctx, "in", nsA)-beforeA
			t.Logf("%s: Ip InReceives grew by %d in the guest's own namespace and by %d in the ipvlan's for %d routed pings",
				mode, delta, deltaA, n)
			if mode == "l3s" && (delta < n || deltaA >= n) {
				t.Errorf("l3s: %d pings raised Ip InReceives by %d in the parent's namespace and %d in the ipvlan's; want them through the parent's input path only", n, delta, deltaA)
			}
			if mode != "l3s" && (delta >= n || deltaA < n) {
				t.Errorf("%s: %d pings raised Ip InReceives by %d in the parent's namespace and %d in the ipvlan's; want them handed to the ipvlan directly", mode, n, delta, deltaA)
			}
		})
	}
}

// ipInReceives returns the guest's IPv4 InReceives counter, in its own
// namespace or, with "in", "NS", in NS.
func (l *lab) ipInReceives(t testing.TB, ctx context.Context, in ...string) int {
	t.Helper()
	out := l.run(t, ctx, append(in, "read", "/proc/net/snmp")...)
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Ip:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, name := range names {
			if name == "InReceives" && i < len(f) {
				v, err := strconv.Atoi(f[i])
				if err != nil {
					t.Fatalf("Ip InReceives %q: %v", f[i], err)
				}
				return v
			}
		}
	}
	t.Fatalf("no Ip InReceives in /proc/net/snmp:\n%s", out)
	return 0
}

// routeVia adds a route in the lab namespace until t ends.
func (l *lab) routeVia(t testing.TB, dst netip.Prefix, gw netip.Addr) {
	t.Helper()
	h := l.ns.Handle()
	link, err := h.LinkByName(labTAP)
	if err != nil {
		t.Fatal(err)
	}
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw.AsSlice(),
		Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), dst.Addr().BitLen())}}
	if err := h.RouteAdd(r); err != nil {
		t.Fatalf("route %v via %v: %v", dst, gw, err)
	}
	t.Cleanup(func() {
		if err := h.RouteDel(r); err != nil {
			t.Errorf("remove route %v: %v", dst, err)
		}
		// The failed ARP for a direct ping leaves an entry behind.
		h.NeighDel(&netlink.Neigh{LinkIndex: link.Attrs().Index, IP: dst.Addr().AsSlice()})
	})
}
