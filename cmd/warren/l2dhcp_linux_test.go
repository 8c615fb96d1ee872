package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/warrenvpn/warren/internal/netlab"
	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
)

// dhcpClientScript stands in for dhclient-script: it only puts the
// address on the interface and records it, so that the test cannot touch
// the host's resolv.conf.
const dhcpClientScript = `#!/bin/sh
case "$reason" in
PREINIT) ip link set dev "$interface" up ;;
BOUND|RENEW|REBIND|REBOOT)
	ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface"
	echo "$reason $new_ip_address" >>"$0.log" ;;
esac
exit 0
`

// TestL2DHCP: a real dnsmasq serving DHCP on site A's bridge gives an
// address to dhclient on a host at site B, across the tunnel (DHCP's
// broadcasts and the unspecified source pass the sender check); the lease
// is in dnsmasq's lease file under the client's MAC, the address is on the
// client's interface, and the client reaches site A's bridge with it.
func TestL2DHCP(t *testing.T) {
	dnsmasq := requireTool(t, "dnsmasq")
	dhclient := requireTool(t, "dhclient")
	l := &l2Lab{testPair: newTestPair(t)}
	server := netip.MustParsePrefix("198.19.5.1/24")
	l.up(t, 0, l.tapConfig(0, "Address = "+server.String()))
	l.up(t, 1, l.tapConfig(1, ""))
	waitBridge(t, l.ns(0), l.names[0])
	waitBridge(t, l.ns(1), l.names[1])
	if err := l.ns(0).WaitLocal(server.Addr()); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	leases := filepath.Join(dir, "dnsmasq.leases")
	srv := l.ns(0).Command(context.Background(), dnsmasq,
		"--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--user=root", "--group=root",
		"--pid-file="+filepath.Join(dir, "dnsmasq.pid"), "--dhcp-leasefile="+leases,
		"--interface="+l2Bridge, "--bind-interfaces", "--dhcp-authoritative", "--no-ping", "--log-dhcp", "--log-facility=-",
		"--dhcp-range=198.19.5.100,198.19.5.120,255.255.255.0,2m")
	var srvLog syncBuffer
	srv.Stdout, srv.Stderr = &srvLog, &srvLog
	startUntilEnd(t, srv, "dnsmasq", &srvLog)

	client := netlabtest.NewNamespace(t)
	mac, err := attachHost(l.ns(1), l2Bridge, "vh0", client, "eth0", l2MTU)
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "dhclient-script")
	if err := os.WriteFile(script, []byte(dhcpClientScript), 0o700); err != nil {
		t.Fatal(err)
	}
	clientLease := filepath.Join(dir, "dhclient.leases")
	cli := client.Command(context.Background(), dhclient, "-d", "-1", "-v", "-4",
		"-sf", script, "-lf", clientLease, "-pf", filepath.Join(dir, "dhclient.pid"), "eth0")
	var cliLog syncBuffer
	cli.Stdout, cli.Stderr = &cliLog, &cliLog
	startUntilEnd(t, cli, "dhclient", &cliLog)

	var got netip.Prefix
	deadline := time.Now().Add(30 * time.Second)
	for !got.IsValid() {
		if time.Now().After(deadline) {
			t.Fatalf("no address from DHCP on site B's host in 30 s\ndhclient:\n%s\ndnsmasq:\n%s\ndrops A %v, B %v",
				cliLog.String(), srvLog.String(), l.showDrops(t, 0), l.showDrops(t, 1))
		}
		got = dhcpAddr(t, client, "eth0")
		time.Sleep(50 * time.Millisecond)
	}
	if lo, hi := netip.MustParseAddr("198.19.5.100"), netip.MustParseAddr("198.19.5.120"); got.Bits() != 24 || got.Addr().Less(lo) || hi.Less(got.Addr()) {
		t.Errorf("site B's host got %v, want one of dnsmasq's range 198.19.5.100-120/24", got)
	}
	// dnsmasq's side: its lease file names the client's MAC and address
	// (it is written just after the ACK).
	want := fmt.Sprintf("%s %s", mac, got.Addr())
	waitFor(t, "the lease in dnsmasq's lease file", func() bool {
		b, _ := os.ReadFile(leases)
		return strings.Contains(string(b), want)
	})
	// The client's side: its lease file holds the same address.
	if b, _ := os.ReadFile(clientLease); !strings.Contains(string(b), "fixed-address "+got.Addr().String()+";") {
		t.Errorf("dhclient's lease file lacks fixed-address %s:\n%s", got.Addr(), b)
	}
	pingUntil(t, client, server.Addr())
	t.Logf("site B's host %s got %v from dnsmasq at site A", mac, got)
}

// startUntilEnd starts cmd and stops it (SIGTERM, then SIGKILL) when the
// test ends, logging its output if the test failed.
func startUntilEnd(t *testing.T, cmd *exec.Cmd, name string, out *syncBuffer) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s:\n%s", name, out.String())
		}
	})
}

// dhcpAddr returns the IPv4 address on link in ns, if any.
func dhcpAddr(t *testing.T, ns *netlab.Namespace, link string) netip.Prefix {
	t.Helper()
	l, err := ns.Handle().LinkByName(link)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := ns.Handle().AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
			bits, _ := a.Mask.Size()
			return netip.PrefixFrom(ip, bits)
		}
	}
	return netip.Prefix{}
}
