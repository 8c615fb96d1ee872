package vmlab_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
	"github.com/warrenvpn/warren/internal/vmlab"
	"github.com/warrenvpn/warren/internal/vmlab/vmlabtest"
)

// TestBootSmoke boots a guest, checks that its modules are loaded, that it
// answers commands (also several at once) and that it reaches the host over
// its NIC in both address families.
func TestBootSmoke(t *testing.T) {
	vmlabtest.Require(t)
	ns := netlabtest.NewNamespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	host4, host6 := netip.MustParsePrefix("198.18.200.1/24"), netip.MustParsePrefix("fd00:7761:200::1/64")
	g, err := vmlab.Boot(ctx, vmlab.Config{
		Namespace:  ns,
		TAP:        "vmtap0",
		Modules:    []string{"wireguard", "ipvlan", "dummy", "sch_netem"},
		HostAddrs:  []netip.Prefix{host4, host6},
		GuestAddrs: []netip.Prefix{netip.MustParsePrefix("198.18.200.2/24"), netip.MustParsePrefix("fd00:7761:200::2/64")},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Error(err)
		}
	})
	t.Logf("guest %s booted in %v (%s)", g.Release, g.BootTime.Round(time.Millisecond), g.AccelUsed)

	mods, err := g.Run(ctx, "read", "/proc/modules")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"wireguard", "ipvlan", "dummy", "sch_netem", "virtio_net"} {
		if !strings.Contains(mods, m+" ") {
			t.Errorf("module %s not loaded; /proc/modules:\n%s", m, mods)
		}
	}
	errs := make(chan error, 2)
	for _, dst := range []netip.Addr{host4.Addr(), host6.Addr()} {
		go func() {
			out, err := g.Run(ctx, "ping", dst.String(), "3")
			if err == nil && out != "3/3" {
				t.Errorf("ping %v from the guest: %s answered, want 3/3", dst, out)
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		for _, c := range [][]string{{"link", "show"}, {"read", "/proc/net/dev"}, {"read", "/proc/net/arp"}, {"read", "/proc/net/snmp"}} {
			out, err := g.Run(ctx, c...)
			t.Logf("guest %v: %v\n%s", c, err, out)
		}
		t.Logf("console:\n%s", g.Console())
	}
	if _, err := g.Run(ctx, "no-such-command"); err == nil {
		t.Error("unknown command succeeded")
	}
}
