package link

// Adding a link on Linux:
//  1. Validate the spec, open the namespaces it names and check that the
//     name (and a veth's peer name) is free and that the parent exists.
//  2. Create the link through a netlink handle in its parent's namespace
//     (the current one if it has no parent), placed directly in its target
//     namespace (IFLA_NET_NS_FD); TUN/TAP devices are made by ioctl in the
//     current namespace and then moved.
//  3. Finish per kind (bridge ports and hairpin, ifb redirect, macvtap
//     device node), assign addresses and bring the links up. A failure in
//     this step deletes the new link again.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ingressHandle is the handle of the ingress qdisc (tc's ffff:).
var ingressHandle = netlink.MakeHandle(0xffff, 0)

// Add creates the link spec describes and returns it as List
// would show it. Errors are one line and wrap ErrLinkExists,
// ErrLinkNotFound, ErrNetnsNotFound, ErrKindUnsupported or ErrNotPermitted
// where those apply.
func Add(spec Spec) (Info, error) {
	if err := spec.Validate(); err != nil {
		return Info{}, err
	}
	s, err := openNamespaces()
	if err != nil {
		return Info{}, err
	}
	defer s.close()
	dst, err := s.lookup(spec.Netns)
	if err != nil {
		return Info{}, err
	}
	home, err := s.lookup(spec.ParentNetns)
	if err != nil {
		return Info{}, err
	}
	ch, err := home.handle()
	if err != nil {
		return Info{}, err
	}
	dh, err := dst.handle()
	if err != nil {
		return Info{}, err
	}
	if _, err := dh.LinkByName(spec.Name); err == nil {
		return Info{}, fmt.Errorf("add %s %s: %w in namespace %s", spec.Kind, spec.Name, ErrExists, nsLabel(dst.name))
	}
	peerNS := home
	if spec.Kind == "veth" {
		if peerNS, err = s.lookup(spec.PeerNetns); err != nil {
			return Info{}, err
		}
		ph, err := peerNS.handle()
		if err != nil {
			return Info{}, err
		}
		if _, err := ph.LinkByName(spec.Peer); err == nil {
			return Info{}, fmt.Errorf("add veth %s: peer %s: %w in namespace %s", spec.Name, spec.Peer, ErrExists, nsLabel(peerNS.name))
		}
	}

	attrs := netlink.NewLinkAttrs()
	attrs.Name = spec.Name
	if dst != home {
		attrs.Namespace = netlink.NsFd(int(dst.ns))
	}
	if spec.Parent != "" {
		p, err := ch.LinkByName(spec.Parent)
		if err != nil {
			return Info{}, fmt.Errorf("add %s %s: parent %s: %w in namespace %s", spec.Kind, spec.Name, spec.Parent, ErrNotFound, nsLabel(home.name))
		}
		attrs.ParentIndex = p.Attrs().Index
	}
	link, err := newLink(spec, attrs, peerNS, home)
	if err != nil {
		return Info{}, err
	}
	if err := createLink(s, spec, link, home, dst); err != nil {
		return Info{}, err
	}
	if err := finishLink(s, spec, dst, peerNS); err != nil {
		if l, lerr := dh.LinkByName(spec.Name); lerr == nil {
			dh.LinkDel(l)
		}
		return Info{}, err
	}
	infos, err := s.listIn(dst)
	if err != nil {
		return Info{}, err
	}
	for _, info := range infos {
		if info.Name == spec.Name {
			return info, nil
		}
	}
	return Info{}, fmt.Errorf("add %s %s: created but not listed", spec.Kind, spec.Name)
}

// newLink builds the netlink value for spec, to be created from home.
func newLink(spec Spec, attrs netlink.LinkAttrs, peerNS, home *nsRef) (netlink.Link, error) {
	switch spec.Kind {
	case "macvlan":
		return &netlink.Macvlan{LinkAttrs: attrs, Mode: macvlanMode(spec.Mode)}, nil
	case "macvtap":
		return &netlink.Macvtap{Macvlan: netlink.Macvlan{LinkAttrs: attrs, Mode: macvlanMode(spec.Mode)}}, nil
	case "ipvlan":
		return &netlink.IPVlan{LinkAttrs: attrs, Mode: ipvlanMode(spec.Mode)}, nil
	case "veth":
		v := &netlink.Veth{LinkAttrs: attrs, PeerName: spec.Peer}
		if peerNS != home {
			v.PeerNamespace = netlink.NsFd(int(peerNS.ns))
		}
		return v, nil
	case "ifb":
		return &netlink.Ifb{LinkAttrs: attrs}, nil
	case "bridge":
		return &netlink.Bridge{LinkAttrs: attrs}, nil
	case "dummy":
		return &netlink.Dummy{LinkAttrs: attrs}, nil
	case "vxlan":
		return &netlink.Vxlan{LinkAttrs: attrs, VxlanId: spec.VNI, Port: spec.Port,
			VtepDevIndex: attrs.ParentIndex, Learning: true}, nil
	case "tun", "tap":
		if spec.Owner < 0 {
			return nil, fmt.Errorf("add %s %s: invalid owner %d", spec.Kind, spec.Name, spec.Owner)
		}
		attrs.Namespace = nil // TUNSETIFF creates in the caller's namespace; moved afterwards
		t := &netlink.Tuntap{LinkAttrs: attrs, Mode: netlink.TUNTAP_MODE_TUN,
			Flags: netlink.TUNTAP_NO_PI, Owner: uint32(spec.Owner)}
		if spec.Kind == "tap" {
			t.Mode = netlink.TUNTAP_MODE_TAP
		}
		if spec.MultiQueue {
			t.Flags |= netlink.TUNTAP_MULTI_QUEUE
		}
		return t, nil
	}
	return nil, fmt.Errorf("unknown link kind %q", spec.Kind)
}

func macvlanMode(s string) netlink.MacvlanMode {
	for m, name := range macvlanModeNames {
		if name == s {
			return m
		}
	}
	return netlink.MACVLAN_MODE_BRIDGE
}

func ipvlanMode(s string) netlink.IPVlanMode {
	for m, name := range ipvlanModeNames {
		if name == s {
			return m
		}
	}
	return netlink.IPVLAN_MODE_L2
}

// createLink makes link in dst through home's handle; a TUN/TAP device is
// made in the current namespace (TUNSETIFF works there) and then moved.
func createLink(s *nsSet, spec Spec, link netlink.Link, home, dst *nsRef) error {
	if _, ok := link.(*netlink.Tuntap); ok {
		if _, err := os.Stat("/dev/net/tun"); err != nil {
			return fmt.Errorf("add %s %s: %w: no /dev/net/tun (%s)", spec.Kind, spec.Name, ErrKindUnsupported, kernelOption(spec.Kind))
		}
		home = s.refs[0]
	}
	h, err := home.handle()
	if err != nil {
		return err
	}
	if err := h.LinkAdd(link); err != nil {
		return addError("add", spec.Kind, spec.Name, err)
	}
	if _, ok := link.(*netlink.Tuntap); ok && dst != home {
		if err := h.LinkSetNsFd(link, int(dst.ns)); err != nil {
			h.LinkDel(link)
			return addError(fmt.Sprintf("move to namespace %s:", nsLabel(dst.name)), spec.Kind, spec.Name, err)
		}
	}
	return nil
}

// finishLink does what Add does after creating the link: bridge ports,
// ifb redirect, macvtap device node, addresses and link state.
func finishLink(s *nsSet, spec Spec, dst, peerNS *nsRef) error {
	dh, err := dst.handle()
	if err != nil {
		return err
	}
	link, err := dh.LinkByName(spec.Name)
	if err != nil {
		return fmt.Errorf("add %s %s: created link not found: %w", spec.Kind, spec.Name, err)
	}
	switch spec.Kind {
	case "bridge":
		if err := enslavePorts(dh, link, spec); err != nil {
			return err
		}
	case "ifb":
		if spec.RedirectFrom != "" {
			if err := redirectIngress(dh, spec.RedirectFrom, link); err != nil {
				return fmt.Errorf("add ifb %s: %w", spec.Name, err)
			}
		}
	case "macvtap":
		if err := ensureTapNode(dst, link); err != nil {
			return fmt.Errorf("add macvtap %s: %w", spec.Name, err)
		}
	}
	if err := upWithAddress(dh, link, spec.Address); err != nil {
		return fmt.Errorf("add %s %s: %w", spec.Kind, spec.Name, err)
	}
	if spec.Kind == "veth" {
		ph, err := peerNS.handle()
		if err != nil {
			return err
		}
		peer, err := ph.LinkByName(spec.Peer)
		if err != nil {
			return fmt.Errorf("add veth %s: peer %s not found: %w", spec.Name, spec.Peer, err)
		}
		if err := upWithAddress(ph, peer, spec.PeerAddress); err != nil {
			return fmt.Errorf("add veth %s: peer %s: %w", spec.Name, spec.Peer, err)
		}
	}
	return nil
}

// upWithAddress assigns addr to link (when valid) and sets it up.
func upWithAddress(h *netlink.Handle, link netlink.Link, addr netip.Prefix) error {
	if addr.IsValid() {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(),
			Mask: net.CIDRMask(addr.Bits(), addr.Addr().BitLen())}}
		if err := h.AddrAdd(link, a); err != nil {
			return addError("address "+addr.String()+" on", "", link.Attrs().Name, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return addError("set up", "", link.Attrs().Name, err)
	}
	return nil
}

// enslavePorts puts the spec's ports on bridge br, with hairpin if asked.
func enslavePorts(h *netlink.Handle, br netlink.Link, spec Spec) error {
	for _, name := range spec.Ports {
		port, err := h.LinkByName(name)
		if err != nil {
			return fmt.Errorf("add bridge %s: port %s: %w", spec.Name, name, ErrNotFound)
		}
		if err := h.LinkSetMaster(port, br); err != nil {
			if errors.Is(err, unix.EBUSY) {
				return fmt.Errorf("add bridge %s: port %s is busy (enslaved elsewhere or the parent of a macvlan/macvtap)", spec.Name, name)
			}
			return addError("enslave port "+name+" to", "bridge", spec.Name, err)
		}
		if spec.Hairpin {
			if err := h.LinkSetHairpin(port, true); err != nil {
				return addError("hairpin on port "+name+" of", "bridge", spec.Name, err)
			}
		}
		if err := h.LinkSetUp(port); err != nil {
			return addError("set up port "+name+" of", "bridge", spec.Name, err)
		}
	}
	return nil
}

// redirectIngress sends every frame entering the device named from to ifb:
// an ingress qdisc on from (kept if one exists) and a match-all u32 filter
// with a mirred egress redirect (tc's "action mirred egress redirect dev").
func redirectIngress(h *netlink.Handle, from string, ifb netlink.Link) error {
	dev, err := h.LinkByName(from)
	if err != nil {
		return fmt.Errorf("redirect from %s: %w", from, ErrNotFound)
	}
	q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: dev.Attrs().Index, Handle: ingressHandle, Parent: netlink.HANDLE_INGRESS}}
	if err := h.QdiscAdd(q); err != nil && !errors.Is(err, unix.EEXIST) {
		return addError("ingress qdisc on", "ingress", from, err)
	}
	f := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: dev.Attrs().Index, Parent: ingressHandle,
			Priority: 1, Protocol: unix.ETH_P_ALL},
		Actions: []netlink.Action{netlink.NewMirredAction(ifb.Attrs().Index)},
	}
	if err := h.FilterAdd(f); err != nil {
		return addError("redirect filter on", "mirred", from, err)
	}
	return nil
}

// removeRedirects deletes the ingress filters of h's namespace that
// redirect to ifindex, and an ingress qdisc left without filters, so that
// deleting an IFB does not leave a redirect to nowhere (which drops).
func removeRedirects(h *netlink.Handle, ifindex int) error {
	links, err := linkList(h)
	if err != nil {
		return err
	}
	var errs []error
	for _, l := range links {
		filters, err := h.FilterList(l, ingressHandle)
		if err != nil || len(filters) == 0 {
			continue
		}
		left := len(filters)
		for _, f := range filters {
			u, ok := f.(*netlink.U32)
			if !ok || u.RedirIndex != ifindex {
				continue
			}
			if err := h.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("delete redirect on %s: %w", l.Attrs().Name, err))
				continue
			}
			left--
		}
		if left == 0 {
			q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
				LinkIndex: l.Attrs().Index, Handle: ingressHandle, Parent: netlink.HANDLE_INGRESS}}
			if err := h.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
				errs = append(errs, fmt.Errorf("delete ingress qdisc on %s: %w", l.Attrs().Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// ensureTapNode creates a macvtap's /dev/tapN character device when no
// device manager (udev) did.
func ensureTapNode(r *nsRef, link netlink.Link) error {
	c := readSysfsFor(r, []netlink.Link{link})[link.Attrs().Name]
	if c.tapDevice == "" || c.tapDevNum == "" {
		return nil // sysfs unreadable: leave the node to udev
	}
	path := filepath.Join("/dev", c.tapDevice)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	major, minor, ok := parseDevNum(c.tapDevNum)
	if !ok {
		return fmt.Errorf("bad device number %q for %s", c.tapDevNum, c.tapDevice)
	}
	if err := unix.Mknod(path, unix.S_IFCHR|0o600, int(unix.Mkdev(major, minor))); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("create %s: %w", path, err)
	}
	return nil
}

// removeTapNode removes /dev/tapN if it is the character device devNum.
func removeTapNode(tapDevice, devNum string) {
	major, minor, ok := parseDevNum(devNum)
	if tapDevice == "" || !ok {
		return
	}
	path := filepath.Join("/dev", tapDevice)
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(major, minor) {
		return
	}
	os.Remove(path)
}

// Delete deletes the link called name in the named namespace ("" is
// the current one). Deleting an IFB also removes the redirects to it;
// deleting a macvtap removes the /dev/tapN node of its own.
func Delete(name, netnsName string) error {
	s, err := openNamespaces()
	if err != nil {
		return err
	}
	defer s.close()
	r, err := s.lookup(netnsName)
	if err != nil {
		return err
	}
	h, err := r.handle()
	if err != nil {
		return err
	}
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("delete %s in namespace %s: %w", name, nsLabel(r.name), ErrNotFound)
	}
	var tap sysfsClass
	switch link.Type() {
	case "macvtap":
		tap = readSysfsFor(r, []netlink.Link{link})[name]
	case "ifb":
		if err := removeRedirects(h, link.Attrs().Index); err != nil {
			return fmt.Errorf("delete ifb %s: %w", name, err)
		}
	}
	if err := h.LinkDel(link); err != nil {
		return addError("delete", linkKind(link), name, err)
	}
	removeTapNode(tap.tapDevice, tap.tapDevNum)
	return nil
}

// addError turns a netlink error into one line that names the cause a user
// can act on: privileges, a name in use, or a kind missing from the kernel.
func addError(op, kind, name string, err error) error {
	what := strings.TrimSpace(op + " " + kind + " " + name)
	msg := err.Error()
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES),
		strings.Contains(msg, "operation not permitted"), strings.Contains(msg, "permission denied"):
		return fmt.Errorf("%s: %w", what, ErrNotPermitted)
	case errors.Is(err, unix.EEXIST), strings.Contains(msg, "device or resource busy") && (kind == "tun" || kind == "tap"):
		return fmt.Errorf("%s: %w", what, ErrExists)
	case errors.Is(err, unix.EOPNOTSUPP), strings.Contains(msg, "not supported"),
		strings.Contains(msg, "Unknown device type"):
		if opt := kernelOption(kind); opt != "" {
			return fmt.Errorf("%s: %w: built without %s", what, ErrKindUnsupported, opt)
		}
		return fmt.Errorf("%s: %w (%v)", what, ErrKindUnsupported, err)
	}
	return fmt.Errorf("%s: %v", what, err)
}
