package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warrenvpn/warren/internal/netlab"
	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
)

// The layer 2 sites' subnet, shared by every host at every site; the
// underlay between the gateways is the lab's 198.18.0.0/24.
const (
	l2Bridge = "brl2"
	l2MTU    = 1402 // config.DefaultTAPMTU: the hosts' links match it (hosts at 1500 need MTU = 1500: TestT4LANMTURoot)
)

func l2HostIP(site, k int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, 5, byte(10*site + k + 1)}), 24)
}

func l2HostIP6(site, k int) netip.Prefix {
	return netip.MustParsePrefix(fmt.Sprintf("fd00:7761:5::%d/64", 10*site+k+1))
}

// l2Lab is two sites: gateway namespaces (the lab's A and B) running
// `warren up`, each with two host namespaces on its bridge.
type l2Lab struct {
	*testPair
	hosts [2][2]*netlab.Namespace
}

func newL2Lab(t *testing.T) *l2Lab {
	t.Helper()
	requireTool(t, "ip")
	l := &l2Lab{testPair: newTestPair(t)}
	for s := range 2 {
		for k := range 2 {
			l.hosts[s][k] = netlabtest.NewNamespace(t)
		}
	}
	return l
}

// ip runs ip(8) with args and fails the test on an error.
func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := netlabCommand(args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// attachHosts joins site s's hosts to its gateway's bridge by veth pairs
// and gives them their addresses.
func (l *l2Lab) attachHosts(t *testing.T, s int) {
	t.Helper()
	waitBridge(t, l.ns(s), l.names[s])
	gw := l.ns(s).Name()
	for k, h := range l.hosts[s] {
		port := fmt.Sprintf("vh%d", k)
		ip(t, "-n", gw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", h.Name())
		ip(t, "-n", gw, "link", "set", port, "master", l2Bridge, "up")
		ip(t, "-n", h.Name(), "link", "set", "eth0", "mtu", fmt.Sprint(l2MTU), "up")
		ip(t, "-n", h.Name(), "addr", "add", l2HostIP(s, k).String(), "dev", "eth0")
		ip(t, "-n", h.Name(), "addr", "add", l2HostIP6(s, k).String(), "dev", "eth0", "nodad")
	}
}

// waitBridge waits until the TAP tap in ns is a port of the bridge: the
// TAP is up (waitLink) a moment before warren joins it to the bridge.
func waitBridge(t *testing.T, ns *netlab.Namespace, tap string) {
	t.Helper()
	waitFor(t, "the TAP on the bridge", func() bool {
		br, err := ns.Handle().LinkByName(l2Bridge)
		if err != nil {
			return false
		}
		l, err := ns.Handle().LinkByName(tap)
		return err == nil && l.Attrs().MasterIndex == br.Attrs().Index
	})
}

// tapConfig is site i's config in Mode = tap with Bridge =.
func (l *l2Lab) tapConfig(i int, extra string) string {
	return fmt.Sprintf(`[Interface]
PrivateKey = %s
ListenPort = %d
Mode = tap
Bridge = %s
%s
[Peer]
PublicKey = %s
Endpoint = %s
AllowedIPs = 198.19.5.0/24, fd00:7761:5::/64
`, l.keys[i], 51820+i, l2Bridge, extra, l.keys[1-i].PublicKey(), netip.AddrPortFrom(l.underlay(1-i), uint16(51820+1-i)))
}

// pingUntil pings dst from ns until one answer comes (the first may wait
// for ARP, neighbour discovery and a handshake), for up to 10 s.
func pingUntil(t *testing.T, ns *netlab.Namespace, dst netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rtts, err := demoPing(context.Background(), ns, dst, 1)
		if err == nil && len(rtts) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ping %s from %s: no answer in 10 s (%v)", dst, ns.Name(), err)
		}
	}
}

// TestL2TwoSites: two sites in Mode = tap share one IPv4 /24 and one IPv6
// /64; every host pings every other, and 32 MiB cross over TCP with a
// matching SHA-256. Site A's bridge exists before and stays after; site
// B's is made by warren and removed on the way down.
func TestL2TwoSites(t *testing.T) {
	l := newL2Lab(t)
	ip(t, "-n", l.ns(0).Name(), "link", "add", l2Bridge, "type", "bridge")
	ip(t, "-n", l.ns(0).Name(), "link", "set", l2Bridge, "up")
	l.up(t, 0, l.tapConfig(0, "Address = 198.19.5.200/24"))
	l.up(t, 1, l.tapConfig(1, ""))
	for s := range 2 {
		l.attachHosts(t, s)
	}
	if got := linkAddrs(t, l.ns(0), l2Bridge); !strings.Contains(got, "198.19.5.200/24") {
		t.Errorf("site A's bridge has addresses %q, want 198.19.5.200/24", got)
	}
	for s := range 2 {
		for k := range 2 {
			for ds := range 2 {
				for dk := range 2 {
					if s == ds && k == dk {
						continue
					}
					pingUntil(t, l.hosts[s][k], l2HostIP(ds, dk).Addr())
					pingUntil(t, l.hosts[s][k], l2HostIP6(ds, dk).Addr())
				}
			}
		}
	}
	// warren show lists the MAC table, local hosts and the other site's,
	// and wg show still reads the interface.
	if out := l.show(t, 0); !strings.Contains(out, "mac table:") {
		t.Errorf("warren show has no MAC table:\n%s", out)
	}
	local, remote := 0, 0
	for _, m := range l.showMACs(t, 0) {
		if m.Peer == "local" {
			local++
		} else if m.Peer == l.keys[1].PublicKey().String() {
			remote++
		}
	}
	if local < 2 || remote < 2 {
		t.Errorf("site A's MAC table has %d local and %d remote entries, want at least 2 each", local, remote)
	}
	if wg, err := exec.LookPath("wg"); err == nil {
		if out := l.show(t, 0, wg, "show"); !strings.Contains(out, "latest handshake") {
			t.Errorf("wg show on a TAP-mode interface:\n%s", out)
		}
	}
	gbps, _, err := demoTransfer(context.Background(), l.hosts[0][0], l.hosts[1][1], l2HostIP(1, 1).Addr(), 32<<20)
	if err != nil {
		t.Fatalf("32 MiB from site A to site B: %v", err)
	}
	t.Logf("32 MiB over TCP between sites at %.2f Gbit/s", gbps)
	gbps, _, err = demoTransfer(context.Background(), l.hosts[1][0], l.hosts[0][1], l2HostIP6(0, 1).Addr(), 32<<20)
	if err != nil {
		t.Fatalf("32 MiB over IPv6 from site B to site A: %v", err)
	}
	t.Logf("32 MiB over TCP/IPv6 the other way at %.2f Gbit/s", gbps)

	l.stopAll(t)
	if _, err := l.ns(0).Handle().LinkByName(l2Bridge); err != nil {
		t.Errorf("site A's own bridge is gone after warren stopped: %v", err)
	} else if got := linkAddrs(t, l.ns(0), l2Bridge); strings.Contains(got, "198.19.5.200") {
		t.Errorf("site A's bridge keeps warren's address after it stopped: %q", got)
	}
	if _, err := l.ns(1).Handle().LinkByName(l2Bridge); err == nil {
		t.Errorf("site B's bridge, made by warren, is still there after it stopped")
	}
}

// stopAll stops every tunnel of the lab with SIGTERM (each must exit
// cleanly within a second), so that their logs can be read.
func (l *l2Lab) stopAll(t *testing.T) {
	t.Helper()
	for _, pr := range l.procs {
		stopProc(t, pr)
	}
}

// linkAddrs returns `ip -br addr show dev link` in ns.
func linkAddrs(t *testing.T, ns *netlab.Namespace, link string) string {
	t.Helper()
	out, err := netlabCommand("-n", ns.Name(), "-br", "addr", "show", "dev", link).CombinedOutput()
	if err != nil {
		t.Fatalf("ip addr show %s: %v\n%s", link, err, out)
	}
	return string(out)
}

// showDrops returns the drop counters of `warren show --json` for side i.
func (l *l2Lab) showDrops(t *testing.T, i int) map[string]uint64 {
	t.Helper()
	out := l.show(t, i, l.exe, "show", "--json")
	var doc struct {
		Interfaces []struct {
			Drops map[string]uint64 `json:"drops"`
		} `json:"interfaces"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Interfaces) != 1 {
		t.Fatalf("warren show --json: %v\n%s", err, out)
	}
	return doc.Interfaces[0].Drops
}

// showMACs returns the MAC table of `warren show --json` for side i.
func (l *l2Lab) showMACs(t *testing.T, i int) []macJSON {
	t.Helper()
	out := l.show(t, i, l.exe, "show", "--json")
	var doc showJSON
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Interfaces) != 1 {
		t.Fatalf("warren show --json: %v\n%s", err, out)
	}
	return doc.Interfaces[0].MACs
}

// TestT3ModeMismatchRoot: a TAP-mode warren and a TUN-mode warren try to
// talk: neither writes anything garbled to its adapter, both count the
// drops, and each logs one line saying what to change.
func TestT3ModeMismatchRoot(t *testing.T) {
	l := newL2Lab(t)
	l.up(t, 0, l.tapConfig(0, ""))
	tun := fmt.Sprintf(`[Interface]
PrivateKey = %s
ListenPort = 51821
Address = 198.19.5.201/24

[Peer]
PublicKey = %s
Endpoint = %s
AllowedIPs = 198.19.5.0/24
`, l.keys[1], l.keys[0].PublicKey(), netip.AddrPortFrom(l.underlay(0), 51820))
	l.up(t, 1, tun)
	l.attachHosts(t, 0)
	// Each attempt goes unanswered: one of each is enough.
	demoPing(context.Background(), l.ns(1), l2HostIP(0, 0).Addr(), 1)                     // IP packets to the TAP side
	demoPing(context.Background(), l.hosts[0][0], netip.MustParseAddr("198.19.5.201"), 1) // ARP frames to the TUN side
	waitFor(t, "drops on both sides", func() bool {
		return l.showDrops(t, 0)["mode_mismatch"] > 0 && l.showDrops(t, 1)["frame_error"] > 0
	})
	// The TUN side wrote nothing to its TUN: its host saw no packet from
	// the peer (rx on the TUN counts what warren wrote).
	if n := linkRxPackets(t, l.ns(1), l.names[1]); n != 0 {
		t.Errorf("the TUN side wrote %d packets to its TUN, want 0", n)
	}
	if n := linkRxPackets(t, l.ns(0), l.names[0]); n != 0 {
		t.Errorf("the TAP side wrote %d frames to its TAP, want 0", n)
	}
	l.stopAll(t)
	logs := l.logs()
	for _, want := range []string{
		"peer sends IP packets, not Ethernet frames: it runs in TUN mode; set Mode = tap in its [Interface], or Mode = tun here",
		"peer sends Ethernet frames: it runs in TAP mode; set Mode = tun in its [Interface], or Mode = tap here",
	} {
		if n := strings.Count(logs, want); n != 1 {
			t.Errorf("%q logged %d times, want 1\n%s", want, n, logs)
		}
	}
}

// linkRxPackets returns the packets the host received on link in ns: what
// warren wrote to its adapter.
func linkRxPackets(t *testing.T, ns *netlab.Namespace, link string) uint64 {
	t.Helper()
	l, err := ns.Handle().LinkByName(link)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Statistics.RxPackets
}

// netlabCommand is ip(8) with args, run in warren's own namespace (the
// args name the lab's namespaces with -n).
func netlabCommand(args ...string) *exec.Cmd { return exec.Command("ip", args...) }

// TestT3WireGuardGoRoot: a TAP-mode warren and Debian's wireguard-go in
// TUN mode complete handshakes, but wireguard-go writes none of warren's
// frames to its TUN (not IP: dropped), and warren writes none of
// wireguard-go's IP packets to its TAP, counting them and logging once.
func TestT3WireGuardGoRoot(t *testing.T) {
	wggo := requireTool(t, "wireguard-go")
	wg := requireTool(t, "wg")
	l := newL2Lab(t)
	l.up(t, 0, l.tapConfig(0, ""))
	l.attachHosts(t, 0)

	ns, name := l.ns(1), l.names[1]
	startWireGuardGo(t, ns, wggo, name)
	keyFile := filepath.Join(l.dir, "b.key")
	if err := os.WriteFile(keyFile, []byte(l.keys[1].String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) {
		t.Helper()
		if out, err := ns.Command(context.Background(), args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	run(wg, "set", name, "private-key", keyFile, "listen-port", "51821",
		"peer", l.keys[0].PublicKey().String(), "allowed-ips", "198.19.5.0/24",
		"endpoint", netip.AddrPortFrom(l.underlay(0), 51820).String())
	run("ip", "addr", "add", "198.19.5.201/24", "dev", name)
	run("ip", "link", "set", name, "up")
	before := linkRxPackets(t, ns, name)

	demoPing(context.Background(), l.hosts[0][0], netip.MustParseAddr("198.19.5.201"), 1) // ARP frames to wireguard-go
	demoPing(context.Background(), ns, l2HostIP(0, 0).Addr(), 1)                          // IP packets to warren
	waitFor(t, "warren's mode_mismatch drops", func() bool { return l.showDrops(t, 0)["mode_mismatch"] > 0 })
	if out := l.show(t, 1, wg, "show"); !strings.Contains(out, "latest handshake") {
		t.Errorf("wireguard-go has no session with warren:\n%s", out)
	}
	if n := linkRxPackets(t, ns, name) - before; n != 0 {
		t.Errorf("wireguard-go wrote %d packets to its TUN, want 0", n)
	}
	if n := linkRxPackets(t, l.ns(0), l.names[0]); n != 0 {
		t.Errorf("warren wrote %d frames to its TAP, want 0", n)
	}
	l.stopAll(t)
	const want = "peer sends IP packets, not Ethernet frames: it runs in TUN mode; set Mode = tap in its [Interface], or Mode = tun here"
	if n := strings.Count(l.logs(), want); n != 1 {
		t.Errorf("%q logged %d times, want 1\n%s", want, n, l.logs())
	}
}

// TestT1SpoofingRoot: site A allows only host B0's MAC from site B: B0
// reaches A's host, B1 does not, its frames are counted as spoofed and
// its MAC is never bound at A.
func TestT1SpoofingRoot(t *testing.T) {
	l := newL2Lab(t)
	l.up(t, 0, l.tapConfig(0, ""))
	l.up(t, 1, l.tapConfig(1, ""))
	l.attachHosts(t, 0)
	l.attachHosts(t, 1)
	// Restart A with B0's MAC as the only one B may send from.
	b0, err := l.hosts[1][0].Handle().LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	b1, err := l.hosts[1][1].Handle().LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	stopProc(t, l.procs[0])
	l.procs = l.procs[1:]
	ip(t, "-n", l.ns(0).Name(), "link", "add", l2Bridge, "type", "bridge")
	ip(t, "-n", l.ns(0).Name(), "link", "set", l2Bridge, "up")
	for k := range 2 {
		ip(t, "-n", l.ns(0).Name(), "link", "set", fmt.Sprintf("vh%d", k), "master", l2Bridge)
	}
	l.up(t, 0, l.tapConfig(0, "")+"AllowedMACs = "+b0.Attrs().HardwareAddr.String()+"\n")

	pingUntil(t, l.hosts[1][0], l2HostIP(0, 0).Addr())
	if rtts, _ := demoPing(context.Background(), l.hosts[1][1], l2HostIP(0, 0).Addr(), 1); len(rtts) != 0 {
		t.Errorf("host B1, whose MAC is not in AllowedMACs, reached site A")
	}
	if n := l.showDrops(t, 0)["spoofed_mac"]; n == 0 {
		t.Errorf("spoofed_mac = 0 at site A, want B1's frames counted")
	}
	for _, e := range l.showMACs(t, 0) {
		if e.MAC == b1.Attrs().HardwareAddr.String() {
			t.Errorf("B1's MAC is bound at site A: %+v", e)
		}
	}
}
