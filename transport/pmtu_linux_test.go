package transport

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
)

// TestPathMTU (root) sends through a veth link of MTU 1300 in a namespace
// of its own: the socket sends with DF set, a datagram over the link's MTU
// fails with a *PathMTUError carrying 1300, as a GSO run of them does
// (without turning GSO off), and PathMTU reports 1300 for the destination.
func TestPathMTU(t *testing.T) {
	ns := netlabtest.NewNamespace(t)
	h := ns.Handle()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "pmtu0", MTU: 1300}, PeerName: "pmtu1"}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	link, err := h.LinkByName("pmtu0")
	if err != nil {
		t.Fatal(err)
	}
	peer, err := h.LinkByName("pmtu1")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(peer); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetMTU(link, 1300); err != nil { // the request's MTU applies only on recent kernels
		t.Fatal(err)
	}
	for _, p := range []string{"198.18.7.1/24", "fd00:7761:7::1/64"} {
		pfx := netip.MustParsePrefix(p)
		a := &netlink.Addr{IPNet: &net.IPNet{IP: pfx.Addr().AsSlice(), Mask: net.CIDRMask(pfx.Bits(), pfx.Addr().BitLen())}, Flags: unix.IFA_F_NODAD}
		if err := h.AddrAdd(link, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	var u *UDP
	if err := ns.Do(func() (err error) {
		u, err = Listen(Options{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	gsoBefore, _ := u.Offload()
	u.raw.Control(func(fd uintptr) {
		if v, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER); err != nil || v != unix.IP_PMTUDISC_DO {
			t.Errorf("IP_MTU_DISCOVER = %d, %v, want %d", v, err, unix.IP_PMTUDISC_DO)
		}
		if v, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER); err != nil || v != unix.IPV6_PMTUDISC_DO {
			t.Errorf("IPV6_MTU_DISCOVER = %d, %v, want %d", v, err, unix.IPV6_PMTUDISC_DO)
		}
	})
	for _, tc := range []struct {
		ep  netip.AddrPort
		fit int // largest UDP payload through the link, bytes
	}{
		{netip.MustParseAddrPort("198.18.7.2:9"), 1300 - 28},
		{netip.MustParseAddrPort("[fd00:7761:7::2]:9"), 1300 - 48},
	} {
		t.Run(tc.ep.Addr().String(), func(t *testing.T) {
			if mtu, err := u.PathMTU(tc.ep); err != nil || mtu != 1300 {
				t.Errorf("PathMTU(%v) = %d, %v, want 1300", tc.ep, mtu, err)
			}
			if n, err := u.Send([][]byte{make([]byte, tc.fit)}, tc.ep, netip.Addr{}); n != 1 || err != nil {
				t.Errorf("Send of %d bytes = %d, %v, want 1, nil", tc.fit, n, err)
			}
			for _, count := range []int{1, 4} { // 4: a GSO run
				bufs := make([][]byte, count)
				for i := range bufs {
					bufs[i] = make([]byte, tc.fit+1)
				}
				n, err := u.Send(bufs, tc.ep, netip.Addr{})
				var pm *PathMTUError
				if n != 0 || !errors.As(err, &pm) || pm.MTU != 1300 || pm.Endpoint != tc.ep || !errors.Is(err, unix.EMSGSIZE) {
					t.Errorf("Send of %d x %d bytes = %d, %v, want 0 and a PathMTUError of 1300 wrapping EMSGSIZE", count, tc.fit+1, n, err)
				}
			}
		})
	}
	// SendFragmentable lets the kernel fragment datagrams over the path
	// MTU, a run of them too, and sets DF back after.
	for _, ep := range []netip.AddrPort{netip.MustParseAddrPort("198.18.7.2:9"), netip.MustParseAddrPort("[fd00:7761:7::2]:9")} {
		bufs := [][]byte{make([]byte, 1400), make([]byte, 1400), make([]byte, 1400)}
		if n, err := u.SendFragmentable(bufs, ep, netip.Addr{}); n != 3 || err != nil {
			t.Errorf("SendFragmentable of 3 x 1400 bytes to %v = %d, %v, want 3, nil", ep, n, err)
		}
		var pm *PathMTUError
		if n, err := u.Send(bufs[:1], ep, netip.Addr{}); n != 0 || !errors.As(err, &pm) {
			t.Errorf("Send of 1400 bytes to %v after SendFragmentable = %d, %v, want 0 and a PathMTUError", ep, n, err)
		}
	}
	u.raw.Control(func(fd uintptr) {
		if v, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER); err != nil || v != unix.IP_PMTUDISC_DO {
			t.Errorf("after SendFragmentable IP_MTU_DISCOVER = %d, %v, want %d", v, err, unix.IP_PMTUDISC_DO)
		}
		if v, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_DONTFRAG); err != nil || v != 1 {
			t.Errorf("after SendFragmentable IPV6_DONTFRAG = %d, %v, want 1", v, err)
		}
	})

	// More GSO runs over the path MTU than gsoEINVALLimit: a kernel
	// refuses each with EMSGSIZE (this one) or EINVAL (the segment size
	// checked against the path MTU), which says nothing against GSO.
	ep4 := netip.MustParseAddrPort("198.18.7.2:9")
	if !u.overPathMTU(unix.EINVAL, ep4, 1300-28+1) || u.overPathMTU(unix.EINVAL, ep4, 1300-28) || u.overPathMTU(unix.EIO, ep4, 1400) {
		t.Errorf("overPathMTU does not excuse exactly EINVAL for segments over the path MTU")
	}
	for range gsoEINVALLimit + 1 {
		bufs := [][]byte{make([]byte, 1300), make([]byte, 1300)}
		if n, err := u.Send(bufs, ep4, netip.Addr{}); n != 0 || err == nil {
			t.Errorf("Send of 2 x 1300 bytes = %d, %v, want 0 and an error", n, err)
		}
	}
	if gso, _ := u.Offload(); !gso && gsoBefore {
		t.Errorf("GSO turned off by sends over the path MTU")
	}
}
