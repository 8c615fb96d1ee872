//go:build linux

package main

// `warren demo --mode tap`: the demo over layer 2.
//  1. two gateway namespaces joined by a veth pair (the underlay), each
//     running `warren up` with Mode = tap and Bridge = (warren makes the
//     bridge);
//  2. a host namespace on each bridge by a veth pair, both hosts in one
//     IPv4 /24 and one IPv6 /64 and no route between them: only the
//     tunnel's Ethernet joins them;
//  3. pings across, which need ARP and neighbour discovery across the
//     tunnel first; the neighbour entries the hosts learned and site A's
//     MAC table are printed, then a TCP transfer;
//  4. everything removed, also on Ctrl-C.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/warrenvpn/warren/config"
	wgcrypto "github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/internal/netlab"
)

// The TAP demo's LAN, shared by the hosts of both sites.
var demoTAPHosts = [2]struct{ v4, v6 netip.Prefix }{
	{netip.MustParsePrefix("198.19.6.1/24"), netip.MustParsePrefix("fd00:7761:6::1/64")},
	{netip.MustParsePrefix("198.19.6.2/24"), netip.MustParsePrefix("fd00:7761:6::2/64")},
}

const (
	demoBridge = "wdbr0" // in each gateway namespace
	demoHostIf = "eth0"  // in each host namespace
)

func (d *demo) runTAP(ctx context.Context, pings int, size int64) error {
	keys, err := d.newLab()
	if err != nil {
		return err
	}
	underlay := [2]netip.Addr{d.lab.AddrA.Addr(), d.lab.AddrB.Addr()}
	gws := [2]*netlab.Namespace{d.lab.A, d.lab.B}
	d.pickNames()
	start := time.Now()
	if err := d.startBoth(ctx, func(i int) string {
		return demoTAPConfig(keys[i], keys[1-i].PublicKey(), underlay[1-i])
	}); err != nil {
		return err
	}
	for i, gw := range gws {
		if err := d.waitBridged(ctx, gw, d.names[i], d.procs[i]); err != nil {
			return err
		}
	}
	d.step("Mode = tap: each TAP is a port of bridge %s, which warren made in its namespace", demoBridge)
	var macs [2]net.HardwareAddr
	for i, gw := range gws {
		h, err := netlab.NewNamespace("wdemo-h")
		if err != nil {
			return err
		}
		d.hosts = append(d.hosts, h)
		if macs[i], err = attachHost(gw, demoBridge, "vh0", h, demoHostIf, config.DefaultTAPMTU, demoTAPHosts[i].v4, demoTAPHosts[i].v6); err != nil {
			return err
		}
	}
	d.step("host namespaces on the bridges: A %s (%s, %s), B %s (%s, %s), one subnet, no router, MTU %d as the TAPs'",
		macs[0], demoTAPHosts[0].v4.Addr(), demoTAPHosts[0].v6.Addr(), macs[1], demoTAPHosts[1].v4.Addr(), demoTAPHosts[1].v6.Addr(), config.DefaultTAPMTU)
	for i, h := range d.hosts {
		for _, a := range []netip.Addr{demoTAPHosts[i].v4.Addr(), demoTAPHosts[i].v6.Addr()} {
			if err := h.WaitLocal(a); err != nil {
				return err
			}
		}
	}

	if err := d.ping(ctx, d.hosts[0], demoTAPHosts[1].v4.Addr(), demoTAPHosts[1].v6.Addr(), pings, start); err != nil {
		return err
	}
	for _, dst := range []netip.Addr{demoTAPHosts[1].v4.Addr(), demoTAPHosts[1].v6.Addr()} {
		mac, err := neighbour(d.hosts[0], demoHostIf, dst)
		if err != nil {
			return err
		}
		how := "ARP"
		if dst.Is6() {
			how = "neighbour discovery"
		}
		if !bytes.Equal(mac, macs[1]) {
			return fmt.Errorf("host A resolved %s to %s, want host B's %s", dst, mac, macs[1])
		}
		d.step("%s across the tunnel: host A resolved %s to %s, host B's MAC", how, dst, mac)
	}
	if table, err := d.macTable(ctx, gws[0], d.names[0]); err == nil {
		d.step("site A's MAC table (warren show %s):\n%s", d.names[0], table)
	}
	return d.transfer(ctx, d.hosts[0], d.hosts[1], demoTAPHosts[1].v4.Addr(), size)
}

// demoTAPConfig is one gateway's config: no address of its own, the
// hosts' subnet as the peer's allowed IPs (in Mode = tap they check the
// senders inside frames; no route is installed).
func demoTAPConfig(key wgcrypto.PrivateKey, peer wgcrypto.PublicKey, peerUnderlay netip.Addr) string {
	return fmt.Sprintf(`[Interface]
PrivateKey = %s
ListenPort = %d
Mode = tap
Bridge = %s

[Peer]
PublicKey = %s
AllowedIPs = %s, %s
Endpoint = %s
`, key, demoPort, demoBridge, peer, demoTAPHosts[0].v4.Masked(), demoTAPHosts[0].v6.Masked(),
		netip.AddrPortFrom(peerUnderlay, demoPort))
}

// waitBridged waits until the TAP name in ns is a port of demoBridge (it
// is up a moment before warren joins it), or the process fails.
func (d *demo) waitBridged(ctx context.Context, ns *netlab.Namespace, name string, p *demoProc) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		br, err1 := ns.Handle().LinkByName(demoBridge)
		l, err2 := ns.Handle().LinkByName(name)
		if err1 == nil && err2 == nil && l.Attrs().MasterIndex == br.Attrs().Index && l.Attrs().Flags&net.FlagUp != 0 {
			return nil
		}
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("warren up in %s exited: %v\n%s", ns.Name(), err, p.log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not join bridge %s in %s within 10 s\n%s", name, demoBridge, ns.Name(), p.log)
}

// attachHost joins host to bridge in gw by a veth pair (port in gw,
// hostIf in host), gives hostIf the addresses (IPv6 without duplicate
// address detection) and the MTU (0: the kernel's default), brings both
// ends up and returns hostIf's MAC.
func attachHost(gw *netlab.Namespace, bridge, port string, host *netlab.Namespace, hostIf string, mtu int, addrs ...netip.Prefix) (net.HardwareAddr, error) {
	br, err := gw.Handle().LinkByName(bridge)
	if err != nil {
		return nil, fmt.Errorf("bridge %s in %s: %w", bridge, gw.Name(), err)
	}
	hostNS, err := netns.GetFromName(host.Name())
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", host.Name(), err)
	}
	defer hostNS.Close()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: port, MasterIndex: br.Attrs().Index, MTU: mtu},
		PeerName:      hostIf,
		PeerNamespace: netlink.NsFd(hostNS),
	}
	if err := gw.Handle().LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("add veth %s in %s: %w", port, gw.Name(), err)
	}
	p, err := gw.Handle().LinkByName(port)
	if err == nil {
		err = gw.Handle().LinkSetUp(p)
	}
	if err != nil {
		return nil, fmt.Errorf("veth %s up in %s: %w", port, gw.Name(), err)
	}
	h := host.Handle()
	l, err := h.LinkByName(hostIf)
	if err != nil {
		return nil, fmt.Errorf("find %s in %s: %w", hostIf, host.Name(), err)
	}
	if mtu > 0 {
		// The peer end takes the MTU of the request only on recent kernels.
		if err := h.LinkSetMTU(l, mtu); err != nil {
			return nil, fmt.Errorf("MTU %d on %s in %s: %w", mtu, hostIf, host.Name(), err)
		}
	}
	for _, a := range addrs {
		na := &netlink.Addr{IPNet: &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())}}
		if a.Addr().Is6() {
			na.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(l, na); err != nil {
			return nil, fmt.Errorf("add %s to %s in %s: %w", a, hostIf, host.Name(), err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		return nil, fmt.Errorf("%s up in %s: %w", hostIf, host.Name(), err)
	}
	return l.Attrs().HardwareAddr, nil
}

// neighbour returns the MAC of dst in the neighbour table of link in ns.
func neighbour(ns *netlab.Namespace, link string, dst netip.Addr) (net.HardwareAddr, error) {
	l, err := ns.Handle().LinkByName(link)
	if err != nil {
		return nil, err
	}
	family := netlink.FAMILY_V4
	if dst.Is6() {
		family = netlink.FAMILY_V6
	}
	neighs, err := ns.Handle().NeighList(l.Attrs().Index, family)
	if err != nil {
		return nil, fmt.Errorf("neighbours of %s in %s: %w", link, ns.Name(), err)
	}
	for _, n := range neighs {
		if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == dst && len(n.HardwareAddr) == 6 {
			return n.HardwareAddr, nil
		}
	}
	return nil, fmt.Errorf("no neighbour entry for %s on %s in %s", dst, link, ns.Name())
}

// macTable returns the MAC table lines of `warren show name` in ns.
func (d *demo) macTable(ctx context.Context, ns *netlab.Namespace, name string) (string, error) {
	out, err := ns.Command(ctx, d.exe, "show", name).Output()
	if err != nil {
		return "", err
	}
	_, table, ok := strings.Cut(string(out), "mac table:")
	if !ok {
		return "", fmt.Errorf("warren show %s has no MAC table", name)
	}
	table, _, _ = strings.Cut(table, "\n\n") // the peers follow
	return "    mac table:" + strings.TrimRight(table, "\n"), nil
}
