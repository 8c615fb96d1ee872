package tunnel

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/device/tun"
	"github.com/warrenvpn/warren/internal/netlab"
	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
	"github.com/warrenvpn/warren/transport"
)

// pmtuTAPSide turns ns, one end of a path MTU lab's underlay, into a site
// in layer 2 mode: an engine on a TAP of MTU 1500 with the lab's probe
// interval, the TAP on a bridge, and a host namespace on the bridge whose
// eth0 (MTU 1500) holds host. It returns the engine's side and the host
// as a tunSide with no engine (root).
func pmtuTAPSide(t *testing.T, ns *netlab.Namespace, host netip.Prefix) (site, h *tunSide) {
	t.Helper()
	site = &tunSide{ns: ns, inner: host}
	site.key, _ = crypto.NewPrivateKey(rand.Reader)
	var tap *tun.TAP
	var udp *transport.UDP
	err := ns.Do(func() error {
		var err error
		if tap, err = tun.OpenTAP("wtap0", 1500, true); err != nil {
			return err
		}
		udp, err = transport.Listen(transport.Options{})
		return err
	})
	if err != nil {
		if tap != nil {
			tap.Close()
		}
		t.Fatal(err)
	}
	site.port = udp.Port()
	site.e = New(tap, udp, Options{PathMTUProbe: pmtuProbeInterval, Layer2: &Layer2{}})
	t.Cleanup(func() {
		if err := site.e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	gw := ns.Handle()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0", MTU: 1500}}
	if err := gw.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	brLink, err := gw.LinkByName("br0")
	if err != nil {
		t.Fatal(err)
	}
	hostNS := netlabtest.NewNamespace(t)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vh0", MTU: 1500, MasterIndex: brLink.Attrs().Index}, PeerName: "eth0"}
	if err := gw.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"wtap0", "vh0", "br0"} {
		link, err := gw.LinkByName(name)
		if err == nil && name == "wtap0" {
			err = gw.LinkSetMaster(link, br)
		}
		if err == nil {
			err = gw.LinkSetUp(link)
		}
		if err != nil {
			t.Fatalf("%s in %s: %v", name, ns.Name(), err)
		}
	}
	eth, err := gw.LinkByName("eth0")
	if err == nil {
		err = gw.LinkSetNsFd(eth, int(nsFd(t, hostNS)))
	}
	if err != nil {
		t.Fatalf("eth0 to %s: %v", hostNS.Name(), err)
	}
	hh := hostNS.Handle()
	if eth, err = hh.LinkByName("eth0"); err != nil {
		t.Fatal(err)
	}
	if err := hh.LinkSetMTU(eth, 1500); err != nil {
		t.Fatal(err)
	}
	if err := hh.AddrAdd(eth, &netlink.Addr{IPNet: prefixNet(host)}); err != nil {
		t.Fatal(err)
	}
	if err := hh.LinkSetUp(eth); err != nil {
		t.Fatal(err)
	}
	// The host forgets the path MTU warren's ICMP teaches it as the
	// engines do theirs.
	sysctl(t, hostNS, "net.ipv4.route.mtu_expires=1")
	if err := hostNS.WaitLocal(host.Addr()); err != nil {
		t.Fatal(err)
	}
	return site, &tunSide{ns: hostNS, inner: host}
}

// hostRouteMTU returns the mtu of `ip route get dst` in ns, 0 when the
// route holds none.
func hostRouteMTU(t *testing.T, ns *netlab.Namespace, dst netip.Addr) int {
	t.Helper()
	out, err := ns.Command(context.Background(), "ip", "route", "get", dst.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("ip route get %v in %s: %v\n%s", dst, ns.Name(), err, out)
	}
	f := strings.Fields(string(out))
	for i := range len(f) - 1 {
		if f[i] == "mtu" {
			var mtu int
			fmt.Sscan(f[i+1], &mtu)
			return mtu
		}
	}
	return 0
}

// TestPathMTUTAPRoot (root, PM1-PM5, T4) is TestPathMTURoot in layer 2
// mode: two sites with Mode = tap (TAPs and bridges of MTU 1500, hosts on
// the bridges at 1500, so frames of 1514 bytes reach warren) over an IPv4
// and an IPv6 underlay through a router whose link toward b has MTU 1280.
// A TCP transfer of 32 MiB (8 MiB under the race detector) from a's host
// to b's completes with a matching checksum; a's warren holds 1280 as b's
// path MTU and counts path_mtu drops, a's host received its ICMP
// fragmentation needed (Icmp InDestUnreachs) and holds the MTU a frame
// over that path leaves (1280 less the outer headers, 32, the frame
// header and the Ethernet header); the router fragmented nothing. Then
// the router's link goes back to 1500 and within ten probe intervals an
// unfragmentable 1422-byte ping (what a frame over a 1500-byte underlay
// leaves, as in TestT4LANMTURoot) crosses from host to host.
func TestPathMTUTAPRoot(t *testing.T) {
	for _, tc := range []struct {
		name  string
		addrs pmtuAddrs
		inner int // 1280 less the outer headers and 32
		wide  int // what a frame over 1500 leaves an IP packet
	}{
		{"IPv4 underlay", pmtuAddrs4, 1280 - 20 - 8 - 32, 1500 - 20 - 8 - 32 - frameHeaderSize - ethHeaderSize},
		{"IPv6 underlay", pmtuAddrs6, 1280 - 40 - 8 - 32, 1500 - 40 - 8 - 32 - frameHeaderSize - ethHeaderSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, nsA, nsB := newPMTUUnderlay(t, tc.addrs)
			var hostA, hostB *tunSide
			l.a, hostA = pmtuTAPSide(t, nsA, netip.MustParsePrefix("198.19.5.1/24"))
			l.b, hostB = pmtuTAPSide(t, nsB, netip.MustParsePrefix("198.19.5.2/24"))
			for _, c := range []struct {
				s, peer *tunSide
				addr    netip.Addr
			}{{l.a, l.b, tc.addrs.b.Addr()}, {l.b, l.a, tc.addrs.a.Addr()}} {
				err := c.s.e.SetConfig(Config{PrivateKey: c.s.key, Peers: []PeerConfig{{
					PublicKey: c.peer.key.PublicKey(),
					Endpoint:  netip.AddrPortFrom(c.addr, c.peer.port),
				}}})
				if err != nil {
					t.Fatal(err)
				}
				if err := c.s.e.Up(); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.router.Handle().LinkSetMTU(l.rb, 1280); err != nil {
				t.Fatal(err)
			}
			size := int64(32 << 20)
			if raceEnabled {
				size = 8 << 20
			}
			icmpBefore := snmp(t, hostA.ns, "snmp", "Icmp", "InDestUnreachs")
			fragsBefore := snmp(t, l.router, "snmp", "Ip", "FragCreates")
			took := pmtuTransfer(t, hostA, hostB, l.a.e, size)
			t.Logf("%d MiB through 1280: %v; drops at a: %v", size>>20, took, l.a.e.DropCounts())
			if outer, inner := l.pathMTU(); outer != 1280 || inner != tc.inner {
				t.Errorf("a's path MTU toward b = %d (inner %d), want 1280 (%d)", outer, inner, tc.inner)
			}
			if got := snmp(t, hostA.ns, "snmp", "Icmp", "InDestUnreachs") - icmpBefore; got == 0 || l.a.e.Drops(DropPathMTU) == 0 {
				t.Errorf("a's host received %d ICMP destination unreachable, a dropped %d frames over the path MTU: want some of each", got, l.a.e.Drops(DropPathMTU))
			}
			if got, want := hostRouteMTU(t, hostA.ns, hostB.inner.Addr()), tc.inner-frameHeaderSize-ethHeaderSize; got != want {
				t.Errorf("a's host holds path MTU %d toward %v, want %d", got, hostB.inner.Addr(), want)
			}
			if got := snmp(t, l.router, "snmp", "Ip", "FragCreates") - fragsBefore; got != 0 {
				t.Errorf("the router made %d fragments, want none: DF is set", got)
			}

			if err := l.router.Handle().LinkSetMTU(l.rb, 1500); err != nil {
				t.Fatal(err)
			}
			// Each ping that fails lets the probe run and the host's
			// lowered path MTU expire.
			args := []string{"-c1", "-W1", "-M", "do", "-s", fmt.Sprint(tc.wide - 28), hostB.inner.Addr().String()}
			for deadline := time.Now().Add(10 * pmtuProbeInterval); ; {
				out, err := hostA.ns.Command(context.Background(), "ping", args...).CombinedOutput()
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					outer, inner := l.pathMTU()
					t.Fatalf("ping %v: %v (a's path MTU toward b %d, inner %d)\n%s", args, err, outer, inner, out)
				}
				time.Sleep(pmtuProbeInterval / 4)
			}
			if outer, _ := l.pathMTU(); outer != 0 && outer != 1500 {
				t.Errorf("a's path MTU toward b = %d after the path widened, want 1500 (its own link) or none", outer)
			}
		})
	}
}
