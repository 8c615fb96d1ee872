package vmlab_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestBootSmoke checks the shared guest: its modules are loaded, it answers
// commands (several at once) and it reaches the host over its NIC in both
// address families.
func TestBootSmoke(t *testing.T) {
	l := sharedLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Logf("guest %s booted in %v (%s)", l.g.Release, l.g.BootTime.Round(time.Millisecond), l.g.AccelUsed)

	mods := l.run(t, ctx, "read", "/proc/modules")
	for _, m := range []string{"wireguard", "ipvlan", "dummy", "sch_netem", "virtio_net"} {
		if !strings.Contains(mods, m+" ") {
			t.Errorf("module %s not loaded; /proc/modules:\n%s", m, mods)
		}
	}
	errs := make(chan error, 2)
	for _, dst := range []netip.Addr{host4.Addr(), host6.Addr()} {
		go func() {
			out, err := l.g.Run(ctx, "ping", dst.String(), "3")
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
	if got := l.ping(t, guest4.Addr(), 2); got != 2 {
		t.Errorf("ping %v from the host: %d of 2 answered", guest4.Addr(), got)
	}
	if _, err := l.g.Run(ctx, "no-such-command"); err == nil {
		t.Error("unknown command succeeded")
	}
	if t.Failed() {
		for _, c := range [][]string{{"link", "show"}, {"read", "/proc/net/dev"}, {"read", "/proc/net/arp"}} {
			out, err := l.g.Run(ctx, c...)
			t.Logf("guest %v: %v\n%s", c, err, out)
		}
		t.Logf("console:\n%s", l.g.Console())
	}
}
