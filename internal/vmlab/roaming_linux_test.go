package vmlab_test

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestRO1KernelPeerRoams: the kernel's side moves to a new underlay address
// while the tunnel is up; one packet from it is enough for warren to show and
// use the new endpoint. Then warren's side moves, and the kernel follows it
// (RO1 over IPv4, RO2 over IPv6, with the kernel module as the peer; the
// second half is RO5 seen from the peer). It changes the shared guest's
// eth0, so it does not run in parallel with other tests.
func TestRO1KernelPeerRoams(t *testing.T) {
	l := sharedLab(t)
	for _, tc := range []struct {
		name     string
		c        kernelCase
		hostOld  netip.Prefix
		hostNew  netip.Prefix
		guestOld netip.Prefix
		guestNew netip.Prefix
	}{
		{"ipv4", kernelCase{n: 30, initiate: "kernel"}, host4, netip.MustParsePrefix("198.18.100.4/24"), guest4, netip.MustParsePrefix("198.18.100.3/24")},
		{"ipv6", kernelCase{n: 31, initiate: "kernel", ipv6: true}, host6, netip.MustParsePrefix("fd00:7761:100::4/64"), guest6, netip.MustParsePrefix("fd00:7761:100::3/64")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			k := l.start(t, ctx, tc.c)
			l.pingBothWays(t, ctx, k)
			if t.Failed() {
				return
			}

			// The guest moves: the old address goes, so the kernel's cached
			// source fails its route lookup and the next packet leaves from
			// the new one.
			l.moveGuest(t, ctx, tc.guestOld, tc.guestNew)
			if out, err := l.g.Run(ctx, "ping", k.warrenIn.String(), "1"); err != nil {
				t.Fatalf("ping from the moved guest: %s: %v", out, err)
			}
			wp := l.show(t, k.warrenName).Interfaces[0].Peers[0]
			if want := netip.AddrPortFrom(tc.guestNew.Addr(), uint16(k.port)).String(); wp.Endpoint != want {
				t.Errorf("warren's endpoint for the moved kernel peer = %s, want %s", wp.Endpoint, want)
			}
			if got := l.ping(t, k.guestIn6, 3); got != 3 {
				t.Errorf("ping the moved guest from warren: %d of 3 answered", got)
			}

			// Warren's side moves: its replies leave from the new address
			// and the kernel updates its endpoint.
			l.moveHost(t, tc.hostOld, tc.hostNew)
			if got := l.ping(t, k.guestIn, 2); got != 2 {
				t.Errorf("ping from moved warren: %d of 2 answered", got)
			}
			gp := l.guestShow(t, ctx, k.guestName)
			if want := netip.AddrPortFrom(tc.hostNew.Addr(), uint16(k.port)).String(); gp.Endpoint != want {
				t.Errorf("kernel's endpoint for moved warren = %s, want %s", gp.Endpoint, want)
			}
		})
	}
}

// moveGuest replaces the guest's eth0 address old with new until t ends.
func (l *lab) moveGuest(t *testing.T, ctx context.Context, old, new netip.Prefix) {
	t.Helper()
	l.run(t, ctx, "addr", "del", "eth0", old.String())
	l.run(t, ctx, "addr", "add", "eth0", new.String())
	t.Cleanup(func() {
		ctx := context.Background()
		if out, err := l.g.Run(ctx, "addr", "del", "eth0", new.String()); err != nil {
			t.Errorf("%v: %s", err, out)
		}
		if out, err := l.g.Run(ctx, "addr", "add", "eth0", old.String()); err != nil {
			t.Errorf("%v: %s", err, out)
		}
	})
}

// moveHost replaces the TAP's address old with new until t ends.
func (l *lab) moveHost(t *testing.T, old, new netip.Prefix) {
	t.Helper()
	h := l.ns.Handle()
	link, err := h.LinkByName(labTAP)
	if err != nil {
		t.Fatal(err)
	}
	addr := func(p netip.Prefix) *netlink.Addr {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		return a
	}
	if err := h.AddrDel(link, addr(old)); err != nil {
		t.Fatalf("remove %v from %s: %v", old, labTAP, err)
	}
	if err := h.AddrAdd(link, addr(new)); err != nil {
		t.Fatalf("add %v to %s: %v", new, labTAP, err)
	}
	t.Cleanup(func() {
		if err := h.AddrDel(link, addr(new)); err != nil {
			t.Errorf("remove %v from %s: %v", new, labTAP, err)
		}
		if err := h.AddrAdd(link, addr(old)); err != nil {
			t.Errorf("restore %v on %s: %v", old, labTAP, err)
		}
	})
	if err := l.ns.WaitLocal(new.Addr()); err != nil {
		t.Fatal(err)
	}
}
