package link

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/warrenvpn/warren/internal/netlab"
	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
)

// Probe timeouts: a positive probe returns as soon as a datagram arrives; a
// negative one waits the whole time.
const (
	reachTimeout   = 3 * time.Second
	noReachTimeout = time.Second
)

// uniqueLinkName returns a link name that no concurrent test uses, for links
// that pass through the current namespace (TUN/TAP) or name host files
// (/dev/tapN).
func uniqueLinkName(prefix string) string {
	return fmt.Sprintf("%s%06x", prefix, rand.Uint32()&0xffffff)
}

// addTestLink adds spec and deletes it again in t.Cleanup.
func addTestLink(t testing.TB, spec Spec) Info {
	t.Helper()
	info, err := Add(spec)
	if err != nil {
		t.Fatalf("Add(%s %s): %v", spec.Kind, spec.Name, err)
	}
	t.Cleanup(func() {
		err := Delete(spec.Name, spec.Netns)
		if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrNetnsNotFound) {
			t.Errorf("Delete(%s): %v", spec.Name, err)
		}
	})
	return info
}

// listedLink returns the link called name in the listing of namespace ns.
func listedLink(t testing.TB, ns, name string) Info {
	t.Helper()
	links, err := List(ListOptions{Netns: ns})
	if err != nil {
		t.Fatalf("List(%s): %v", ns, err)
	}
	for _, l := range links {
		if l.Name == name {
			return l
		}
	}
	t.Fatalf("List(%s): no link %s in %v", ns, name, links)
	return Info{}
}

// newVethPair creates two namespaces joined by a veth (name in the first,
// peer in the second) with addresses net.1/24 and net.2/24, through Add.
func newVethPair(t testing.TB, name, peer, net string) (a, b *netlab.Namespace, addrA, addrB netip.Prefix) {
	t.Helper()
	a = netlabtest.NewNamespace(t)
	b = netlabtest.NewNamespace(t)
	addrA = netip.MustParsePrefix(net + ".1/24")
	addrB = netip.MustParsePrefix(net + ".2/24")
	addTestLink(t, Spec{Kind: "veth", Name: name, Netns: a.Name(), Address: addrA,
		Peer: peer, PeerNetns: b.Name(), PeerAddress: addrB})
	return a, b, addrA, addrB
}

// udpReach reports whether a UDP datagram sent from src in namespace from
// arrives at dst in namespace to within timeout. It sends every 100 ms so
// that ARP resolution has its chance.
func udpReach(t testing.TB, from, to *netlab.Namespace, src, dst netip.Addr, timeout time.Duration) bool {
	t.Helper()
	var ln *net.UDPConn
	err := to.Do(func() (err error) {
		ln, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 0)))
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s in %s: %v", dst, to.Name(), err)
	}
	defer ln.Close()
	var c *net.UDPConn
	err = from.Do(func() (err error) {
		c, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), ln.LocalAddr().(*net.UDPAddr))
		return err
	})
	if err != nil {
		t.Fatalf("dial from %s in %s: %v", src, from.Name(), err)
	}
	defer c.Close()
	msg := []byte("warren link probe")
	buf := make([]byte, 64)
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		c.Write(msg) // ignore errors: an unresolved neighbour reports EHOSTUNREACH
		ln.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, _, err := ln.ReadFromUDP(buf); err == nil && string(buf[:n]) == string(msg) {
			return true
		}
	}
	return false
}

// TestMacvlanModes proves the macvlan modes by traffic. Two macvlans share
// one parent, the end p0 of a veth whose other end p1 is the only port of a
// bridge in another namespace; each macvlan sits in a namespace of its own.
// bridge mode switches between them inside the parent; vepa sends
// everything out, so they meet only if the external bridge reflects frames
// (hairpin); private never lets them meet.
func TestMacvlanModes(t *testing.T) {
	netlabtest.RequireRoot(t)
	tests := []struct {
		mode    string
		hairpin bool
		want    bool
	}{
		{"bridge", false, true},
		{"vepa", true, true},
		{"vepa", false, false},
		{"private", true, false},
		{"private", false, false},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/hairpin=%v", tc.mode, tc.hairpin), func(t *testing.T) {
			t.Parallel()
			host := netlabtest.NewNamespace(t)
			ext := netlabtest.NewNamespace(t)
			a := netlabtest.NewNamespace(t)
			b := netlabtest.NewNamespace(t)
			addTestLink(t, Spec{Kind: "veth", Name: "p0", Netns: host.Name(), Peer: "p1", PeerNetns: ext.Name()})
			addTestLink(t, Spec{Kind: "bridge", Name: "br0", Netns: ext.Name(), Ports: []string{"p1"}, Hairpin: tc.hairpin})
			addrA := netip.MustParsePrefix("198.18.3.1/24")
			addrB := netip.MustParsePrefix("198.18.3.2/24")
			m1 := addTestLink(t, Spec{Kind: "macvlan", Name: "m1", Parent: "p0", ParentNetns: host.Name(),
				Netns: a.Name(), Mode: tc.mode, Address: addrA})
			addTestLink(t, Spec{Kind: "macvlan", Name: "m2", Parent: "p0", ParentNetns: host.Name(),
				Netns: b.Name(), Mode: tc.mode, Address: addrB})

			if m1.Kind != "macvlan" || m1.Mode != tc.mode || m1.Parent != "p0@"+host.Name() || m1.Netns != a.Name() || !m1.Virtual {
				t.Errorf("Add(macvlan m1) = %+v, want kind macvlan, mode %s, parent p0@%s, netns %s, virtual",
					m1, tc.mode, host.Name(), a.Name())
			}
			if p1 := listedLink(t, ext.Name(), "p1"); p1.Master != "br0" || p1.Hairpin == nil || *p1.Hairpin != tc.hairpin {
				t.Errorf("p1 listed with master %q, hairpin %v, want br0, %v", p1.Master, p1.Hairpin, tc.hairpin)
			}

			timeout := reachTimeout
			if !tc.want {
				timeout = noReachTimeout
			}
			if got := udpReach(t, a, b, addrA.Addr(), addrB.Addr(), timeout); got != tc.want {
				t.Errorf("m1 (%s) reaches m2 (%s) = %v, want %v", addrA.Addr(), addrB.Addr(), got, tc.want)
			}
		})
	}
}

// TestVethPeerAcrossNamespaces checks that a veth's peer is resolved by
// index, name and namespace, both ways and within one namespace.
func TestVethPeerAcrossNamespaces(t *testing.T) {
	a, b, addrA, addrB := newVethPair(t, "va", "vb", "198.18.5")
	addTestLink(t, Spec{Kind: "veth", Name: "vc", Netns: a.Name(), Peer: "vd", PeerNetns: a.Name()})

	va, vb := listedLink(t, a.Name(), "va"), listedLink(t, b.Name(), "vb")
	vc, vd := listedLink(t, a.Name(), "vc"), listedLink(t, a.Name(), "vd")
	tests := []struct {
		link Info
		want *Peer
	}{
		{va, &Peer{Index: vb.Index, Name: "vb", Netns: b.Name()}},
		{vb, &Peer{Index: va.Index, Name: "va", Netns: a.Name()}},
		{vc, &Peer{Index: vd.Index, Name: "vd", Netns: a.Name()}},
		{vd, &Peer{Index: vc.Index, Name: "vc", Netns: a.Name()}},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.link.Peer, tc.want); diff != "" {
			t.Errorf("peer of %s (-got +want):\n%s", tc.link.Name, diff)
		}
		// The carrier comes up asynchronously (linkwatch): admin up is what Add promises.
		if tc.link.Kind != "veth" || !tc.link.Virtual || !tc.link.Up || !tc.link.LocallyAdministered {
			t.Errorf("%s listed as %+v, want a veth set up, virtual, locally administered MAC", tc.link.Name, tc.link)
		}
	}

	all, err := List(ListOptions{AllNamespaces: true})
	if err != nil {
		t.Fatalf("List(all): %v", err)
	}
	found := map[string]bool{}
	for _, l := range all {
		if l.Kind == "veth" && (l.Netns == a.Name() || l.Netns == b.Name()) {
			found[l.Netns+"/"+l.Name] = l.Peer != nil && l.Peer.Name != ""
		}
	}
	want := map[string]bool{a.Name() + "/va": true, b.Name() + "/vb": true, a.Name() + "/vc": true, a.Name() + "/vd": true}
	if diff := cmp.Diff(found, want); diff != "" {
		t.Errorf("veths with resolved peers in List(all) (-got +want):\n%s", diff)
	}

	if !udpReach(t, a, b, addrA.Addr(), addrB.Addr(), reachTimeout) {
		t.Errorf("va (%s) does not reach vb (%s)", addrA.Addr(), addrB.Addr())
	}

	// A peer in an unnamed namespace that only a process holds (a
	// container, say) is named after that process.
	sleep := exec.Command("sleep", "60")
	sleep.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := sleep.Start(); err != nil {
		t.Fatalf("start a process in a new namespace: %v", err)
	}
	t.Cleanup(func() { sleep.Process.Kill(); sleep.Wait() })
	pid := sleep.Process.Pid
	ve := &netlink.Veth{LinkAttrs: netlink.NewLinkAttrs(), PeerName: "vf", PeerNamespace: netlink.NsPid(pid)}
	ve.Name = "ve"
	if err := a.Handle().LinkAdd(ve); err != nil {
		t.Fatalf("add veth ve with its peer in process %d's namespace: %v", pid, err)
	}
	if p := listedLink(t, a.Name(), "ve").Peer; p == nil || p.Name != "vf" || p.Netns != fmt.Sprintf("pid:%d", pid) {
		t.Errorf("peer of ve = %+v, want vf in pid:%d", p, pid)
	}
}

// TestIFBRedirect checks that traffic entering a device is counted on the
// IFB it is redirected to, and that deleting the IFB removes the redirect
// (a redirect to a deleted device would drop the traffic).
func TestIFBRedirect(t *testing.T) {
	x, y, addrX, addrY := newVethPair(t, "x0", "y0", "198.18.6")
	info := addTestLink(t, Spec{Kind: "ifb", Name: "ifbx", Netns: x.Name(), RedirectFrom: "x0"})
	if info.Kind != "ifb" || !info.Virtual {
		t.Errorf("Add(ifb) = %+v, want kind ifb, virtual", info)
	}

	h := x.Handle()
	stats := func() (rx, tx uint64) {
		t.Helper()
		l, err := h.LinkByName("ifbx")
		if err != nil {
			t.Fatalf("LinkByName(ifbx): %v", err)
		}
		s := l.Attrs().Statistics
		return s.RxPackets, s.TxPackets
	}
	rx0, tx0 := stats()
	const n = 20
	for i := range n {
		if !udpReach(t, y, x, addrY.Addr(), addrX.Addr(), reachTimeout) {
			t.Fatalf("datagram %d from y0 did not arrive on x0", i)
		}
	}
	rx1, tx1 := stats()
	if rx1-rx0 < n || tx1-tx0 < n {
		t.Errorf("ifbx counted rx %d, tx %d packets for %d datagrams into x0, want at least %d each", rx1-rx0, tx1-tx0, n, n)
	}

	if err := Delete("ifbx", x.Name()); err != nil {
		t.Fatalf("Delete(ifbx): %v", err)
	}
	x0, err := h.LinkByName("x0")
	if err != nil {
		t.Fatalf("LinkByName(x0): %v", err)
	}
	if filters, err := h.FilterList(x0, ingressHandle); err == nil && len(filters) > 0 {
		t.Errorf("after deleting the ifb, x0 keeps ingress filters %v", filters)
	}
	if !udpReach(t, y, x, addrY.Addr(), addrX.Addr(), reachTimeout) {
		t.Errorf("after deleting the ifb, traffic into x0 no longer arrives")
	}
}

// TestAddLinkErrors checks the one-line errors of Add and Delete.
func TestAddLinkErrors(t *testing.T) {
	ns := netlabtest.NewNamespace(t)
	addTestLink(t, Spec{Kind: "veth", Name: "e0", Netns: ns.Name(), Peer: "e1", PeerNetns: ns.Name()})
	tests := []struct {
		name     string
		spec     Spec
		wantIs   error
		wantText string
	}{
		{"dummy missing", Spec{Kind: "dummy", Name: "d0", Netns: ns.Name()}, ErrKindUnsupported, "CONFIG_DUMMY"},
		{"missing parent", Spec{Kind: "macvlan", Name: "m0", Netns: ns.Name(), Parent: "nope0", ParentNetns: ns.Name()},
			ErrNotFound, "parent nope0"},
		{"name in use", Spec{Kind: "bridge", Name: "e0", Netns: ns.Name()}, ErrExists, "e0"},
		{"veth peer in use", Spec{Kind: "veth", Name: "e2", Peer: "e1", Netns: ns.Name(), PeerNetns: ns.Name()},
			ErrExists, "peer e1"},
		{"missing netns", Spec{Kind: "bridge", Name: "br0", Netns: "wlk-no-such-ns"}, ErrNetnsNotFound, "wlk-no-such-ns"},
		{"missing port", Spec{Kind: "bridge", Name: "br0", Netns: ns.Name(), Ports: []string{"nope0"}},
			ErrNotFound, "port nope0"},
		{"missing redirect source", Spec{Kind: "ifb", Name: "ifb9", Netns: ns.Name(), RedirectFrom: "nope0"},
			ErrNotFound, "nope0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Add(tc.spec)
			if !errors.Is(err, tc.wantIs) || !strings.Contains(err.Error(), tc.wantText) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Add(%+v) = %v, want one line wrapping %v and naming %q", tc.spec, err, tc.wantIs, tc.wantText)
			}
			if _, err := ns.Handle().LinkByName(tc.spec.Name); err == nil && tc.spec.Name != "e0" {
				t.Errorf("failed Add left %s behind", tc.spec.Name)
			}
		})
	}

	t.Run("ipvlan", func(t *testing.T) {
		spec := Spec{Kind: "ipvlan", Name: "ipv0", Netns: ns.Name(), Parent: "e0", ParentNetns: ns.Name()}
		_, err := Add(spec)
		if err == nil {
			Delete(spec.Name, spec.Netns) // this kernel has ipvlan
			return
		}
		if !errors.Is(err, ErrKindUnsupported) || !strings.Contains(err.Error(), "CONFIG_IPVLAN") {
			t.Errorf("Add(ipvlan) = %v, want %v naming CONFIG_IPVLAN", err, ErrKindUnsupported)
		}
	})

	t.Run("delete missing", func(t *testing.T) {
		if err := Delete("nope0", ns.Name()); !errors.Is(err, ErrNotFound) {
			t.Errorf("Delete(nope0) = %v, want %v", err, ErrNotFound)
		}
	})

	t.Run("no CAP_NET_ADMIN", func(t *testing.T) {
		// Drop CAP_NET_ADMIN on one locked thread (capabilities are per
		// thread); the thread is discarded afterwards.
		errc := make(chan error, 1)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lost a capability
			if err := dropCapability(unix.CAP_NET_ADMIN); err != nil {
				errc <- fmt.Errorf("drop CAP_NET_ADMIN: %w", err)
				return
			}
			_, err := Add(Spec{Kind: "bridge", Name: "br9", Netns: ns.Name()})
			errc <- err
		}()
		err := <-errc
		if !errors.Is(err, ErrNotPermitted) || !strings.Contains(err.Error(), "CAP_NET_ADMIN") {
			t.Errorf("Add without CAP_NET_ADMIN = %v, want %v", err, ErrNotPermitted)
		}
		if _, err := ns.Handle().LinkByName("br9"); err == nil {
			t.Errorf("br9 was created without CAP_NET_ADMIN")
		}
	})
}

// dropCapability removes capability c from the calling thread's effective
// set.
func dropCapability(c int) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	data[c/32].Effective &^= 1 << (c % 32)
	return unix.Capset(&hdr, &data[0])
}

// TestTUNTAPInNamespace checks TUN and TAP creation (made in the current
// namespace, then moved) with owner, multi-queue and persistence.
func TestTUNTAPInNamespace(t *testing.T) {
	ns := netlabtest.NewNamespace(t)
	tests := []struct {
		kind       string
		owner      int
		multiQueue bool
	}{
		{"tun", 0, false},
		{"tun", 1000, true},
		{"tap", 65534, false},
	}
	for _, tc := range tests {
		name := uniqueLinkName("wlk" + tc.kind)
		info := addTestLink(t, Spec{Kind: tc.kind, Name: name, Netns: ns.Name(), Owner: tc.owner, MultiQueue: tc.multiQueue})
		want := &TUNInfo{Type: tc.kind, MultiQueue: tc.multiQueue, Owner: tc.owner, Persistent: true}
		if diff := cmp.Diff(info.TUN, want, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Queues" }, cmp.Ignore())); diff != "" {
			t.Errorf("Add(%s %s).TUN (-got +want):\n%s", tc.kind, name, diff)
		}
		if info.Kind != tc.kind || !info.Virtual || info.Netns != ns.Name() {
			t.Errorf("Add(%s %s) = %+v, want kind %s, virtual, netns %s", tc.kind, name, info, tc.kind, ns.Name())
		}
		if _, err := netlink.LinkByName(name); err == nil {
			t.Errorf("%s %s left behind in the current namespace", tc.kind, name)
		}
	}
}

// TestListCurrentNamespace checks the physical-or-virtual answer for the
// links of the namespace the test runs in against sysfs: a link is physical
// exactly when /sys/class/net/NAME/device exists. It needs no root.
func TestListCurrentNamespace(t *testing.T) {
	links, err := List(ListOptions{})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(links) == 0 {
		t.Fatal("List: no links, want at least lo")
	}
	for _, l := range links {
		_, err := os.Stat(filepath.Join("/sys/class/net", l.Name, "device"))
		if physical := err == nil; l.Virtual == physical || l.Why == "" {
			t.Errorf("%s: virtual %v (%s), but /sys/class/net/%s/device exists = %v", l.Name, l.Virtual, l.Why, l.Name, physical)
		}
		if l.Name == "lo" && (l.Kind != "loopback" || !l.Virtual) {
			t.Errorf("lo listed as %+v, want a virtual loopback", l)
		}
		if l.Peer != nil && l.Kind != "veth" {
			t.Errorf("%s (%s) has a peer %+v", l.Name, l.Kind, l.Peer)
		}
	}
}

func TestAddError(t *testing.T) {
	tests := []struct {
		name     string
		kind     string
		err      error
		wantIs   error
		wantText string
	}{
		{"eperm", "veth", unix.EPERM, ErrNotPermitted, "add veth x: operation not permitted: root or CAP_NET_ADMIN needed"},
		{"eacces", "bridge", unix.EACCES, ErrNotPermitted, "add bridge x: operation not permitted"},
		{"tun ioctl eperm", "tun", errors.New("Tuntap IOCTL TUNSETIFF failed [0], errno operation not permitted"),
			ErrNotPermitted, "add tun x: operation not permitted"},
		{"eexist", "bridge", unix.EEXIST, ErrExists, "add bridge x: name already in use"},
		{"tun busy", "tap", errors.New("Tuntap IOCTL TUNSETIFF failed [0], errno device or resource busy"),
			ErrExists, "add tap x: name already in use"},
		{"ipvlan", "ipvlan", unix.EOPNOTSUPP, ErrKindUnsupported, "add ipvlan x: link kind not supported by this kernel: built without CONFIG_IPVLAN"},
		{"dummy extack", "dummy", fmt.Errorf("%w: Unknown device type", unix.EOPNOTSUPP), ErrKindUnsupported, "built without CONFIG_DUMMY"},
		{"unknown kind", "frob", unix.EOPNOTSUPP, ErrKindUnsupported, "add frob x: link kind not supported by this kernel (operation not supported)"},
		{"other", "veth", unix.EINVAL, nil, "add veth x: invalid argument"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := addError("add", tc.kind, "x", tc.err)
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("addError(%v) = %v, want it to wrap %v", tc.err, err, tc.wantIs)
			}
			if !strings.HasPrefix(err.Error(), tc.wantText) && !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("addError(%v) = %q, want %q", tc.err, err, tc.wantText)
			}
		})
	}
}

// TestListAllNamespacesWithoutSysAdmin checks that namespaces that cannot
// be entered are left out with one error line, while the rest is listed.
func TestListAllNamespacesWithoutSysAdmin(t *testing.T) {
	ns := netlabtest.NewNamespace(t)
	type result struct {
		links []Info
		err   error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread lost a capability
		if err := dropCapability(unix.CAP_SYS_ADMIN); err != nil {
			done <- result{err: fmt.Errorf("drop CAP_SYS_ADMIN: %w", err)}
			return
		}
		links, err := List(ListOptions{AllNamespaces: true})
		done <- result{links, err}
	}()
	r := <-done
	if !errors.Is(r.err, errNoSysAdmin) || !strings.Contains(r.err.Error(), ns.Name()) || strings.Contains(r.err.Error(), "\n") {
		t.Errorf("List(all) without CAP_SYS_ADMIN: error %v, want one line naming %s and wrapping %v", r.err, ns.Name(), errNoSysAdmin)
	}
	var sawLo bool
	for _, l := range r.links {
		sawLo = sawLo || l.Name == "lo" && l.Netns != ns.Name()
		if l.Netns == ns.Name() {
			t.Errorf("List(all) without CAP_SYS_ADMIN listed %s in %s", l.Name, ns.Name())
		}
	}
	if !sawLo {
		t.Errorf("List(all) without CAP_SYS_ADMIN did not list the current namespace's lo")
	}
}
