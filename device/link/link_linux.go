package link

// Listing links on Linux:
//  1. Open every namespace we can name (the current one, those under
//     /run/netns, those processes live in) and, on demand, one netlink
//     handle in each.
//  2. Dump the links of each namespace through its handle; read sysfs for
//     the physical-or-virtual answer (in a private mount namespace with a
//     fresh sysfs for namespaces other than the current one).
//  3. Resolve cross-namespace references (veth peer, macvlan parent) through
//     IFLA_LINK and IFLA_LINK_NETNSID: the NSID is looked up in the
//     referring namespace against every namespace we know.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where named network namespaces are bind-mounted (ip-netns).
const netnsDir = "/run/netns"

// nsRef is one network namespace List may look at.
type nsRef struct {
	name    string // "" for the current namespace when it has no name
	ns      netns.NsHandle
	ino     uint64
	current bool
	h       *netlink.Handle // opened on demand
}

// nsSet holds every namespace known to one List or Add call, with
// the netlink handles opened in them. close releases them all.
type nsSet struct {
	refs []*nsRef
}

// isNamespace reports whether ns is a namespace file (on nsfs). An entry
// under /run/netns whose bind mount is gone (a crashed `ip netns add`, or a
// mount made in another mount namespace) is a plain empty file: setns on it
// fails with EINVAL, and it names no namespace to list.
func isNamespace(ns netns.NsHandle) bool {
	var st unix.Statfs_t
	return unix.Fstatfs(int(ns), &st) == nil && st.Type == unix.NSFS_MAGIC
}

func nsInode(ns netns.NsHandle) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// openNamespaces opens the current namespace, every namespace named under
// /run/netns and every other namespace a process lives in, deduplicated by
// inode (the current one takes its name if it has one).
func openNamespaces() (*nsSet, error) {
	cur, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("open current network namespace: %w", err)
	}
	ino, err := nsInode(cur)
	if err != nil {
		cur.Close()
		return nil, fmt.Errorf("stat current network namespace: %w", err)
	}
	s := &nsSet{refs: []*nsRef{{ns: cur, ino: ino, current: true}}}
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		s.close()
		return nil, fmt.Errorf("read %s: %w", netnsDir, err)
	}
	for _, e := range entries {
		ns, err := netns.GetFromPath(filepath.Join(netnsDir, e.Name()))
		if err != nil {
			continue // a stale or foreign file: not a namespace we can list
		}
		if !isNamespace(ns) {
			ns.Close()
			continue
		}
		ino, err := nsInode(ns)
		if err != nil {
			ns.Close()
			continue
		}
		if r := s.byInode(ino); r != nil {
			if r.current && r.name == "" {
				r.name = e.Name()
			}
			ns.Close()
			continue
		}
		s.refs = append(s.refs, &nsRef{name: e.Name(), ns: ns, ino: ino})
	}
	s.addProcessNamespaces()
	return s, nil
}

// addProcessNamespaces adds the unnamed namespaces that processes live in
// (containers, for instance), named "pid:N" after the first process found
// in each, so that veth peers inside them resolve.
func (s *nsSet) addProcessNamespaces() {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		path := filepath.Join("/proc", e.Name(), "ns/net")
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil || s.byInode(st.Ino) != nil {
			continue
		}
		ns, err := netns.GetFromPath(path)
		if err != nil {
			continue
		}
		if ino, err := nsInode(ns); err != nil || s.byInode(ino) != nil {
			ns.Close()
			continue
		}
		s.refs = append(s.refs, &nsRef{name: "pid:" + strconv.Itoa(pid), ns: ns, ino: st.Ino})
	}
}

func (s *nsSet) byInode(ino uint64) *nsRef {
	for _, r := range s.refs {
		if r.ino == ino {
			return r
		}
	}
	return nil
}

// lookup returns the namespace with the given name ("" is the current one).
func (s *nsSet) lookup(name string) (*nsRef, error) {
	if name == "" {
		return s.refs[0], nil
	}
	for _, r := range s.refs {
		if r.name == name {
			return r, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrNetnsNotFound, name)
}

// handle returns a netlink handle bound to r's namespace.
func (r *nsRef) handle() (*netlink.Handle, error) {
	if r.h != nil {
		return r.h, nil
	}
	var h *netlink.Handle
	var err error
	if r.current {
		h, err = netlink.NewHandle() // no setns, which needs CAP_SYS_ADMIN
	} else {
		h, err = netlink.NewHandleAt(r.ns)
	}
	if errors.Is(err, unix.EPERM) || err != nil && strings.Contains(err.Error(), "operation not permitted") {
		return nil, fmt.Errorf("enter namespace %s: %w", nsLabel(r.name), errNoSysAdmin)
	}
	if err != nil {
		return nil, fmt.Errorf("netlink in namespace %s: %w", nsLabel(r.name), err)
	}
	r.h = h
	return h, nil
}

func (s *nsSet) close() {
	for _, r := range s.refs {
		if r.h != nil {
			r.h.Close()
		}
		r.ns.Close()
	}
}

// byNSID finds the namespace that from's namespace knows by nsid
// (IFLA_LINK_NETNSID), or nil.
func (s *nsSet) byNSID(from *nsRef, nsid int) *nsRef {
	h, err := from.handle()
	if err != nil {
		return nil
	}
	for _, r := range s.refs {
		if id, err := h.GetNetNsIdByFd(int(r.ns)); err == nil && id == nsid {
			return r
		}
	}
	return nil
}

func nsLabel(name string) string {
	if name == "" {
		return "(current)"
	}
	return name
}

// errNoSysAdmin reports that entering another namespace was refused.
var errNoSysAdmin = errors.New("operation not permitted: root or CAP_SYS_ADMIN needed")

// List lists the links of the namespaces opts selects, in namespace
// order and then by index. With AllNamespaces, a namespace that cannot be
// listed (without root, for instance) is left out and its error joined to
// the returned one, so links may come back together with an error.
func List(opts ListOptions) ([]Info, error) {
	s, err := openNamespaces()
	if err != nil {
		return nil, err
	}
	defer s.close()
	targets := s.refs[:1]
	if opts.AllNamespaces {
		targets = s.refs
	} else if opts.Netns != "" {
		r, err := s.lookup(opts.Netns)
		if err != nil {
			return nil, err
		}
		targets = []*nsRef{r}
	}
	var out []Info
	var errs []error
	var refused []string // namespaces we may not enter
	for _, r := range targets {
		infos, err := s.listIn(r)
		switch {
		case err == nil:
			out = append(out, infos...)
		case !opts.AllNamespaces:
			return nil, err
		case errors.Is(err, errNoSysAdmin):
			refused = append(refused, nsLabel(r.name))
		default:
			errs = append(errs, err)
		}
	}
	if len(refused) > 0 {
		errs = append(errs, fmt.Errorf("namespaces %s not listed: %w", strings.Join(refused, ", "), errNoSysAdmin))
	}
	return out, errors.Join(errs...)
}

// linkList dumps the links of h's namespace, retrying an interrupted dump
// and then accepting its partial result.
func linkList(h *netlink.Handle) ([]netlink.Link, error) {
	var links []netlink.Link
	var err error
	for range 3 {
		links, err = h.LinkList()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if errors.Is(err, netlink.ErrDumpInterrupted) {
		err = nil
	}
	return links, err
}

// listIn lists the links of one namespace.
func (s *nsSet) listIn(r *nsRef) ([]Info, error) {
	h, err := r.handle()
	if err != nil {
		return nil, err
	}
	links, err := linkList(h)
	if err != nil {
		return nil, fmt.Errorf("list links in namespace %s: %w", nsLabel(r.name), err)
	}
	byIndex := make(map[int]netlink.Link, len(links))
	for _, l := range links {
		byIndex[l.Attrs().Index] = l
	}
	sys := readSysfsFor(r, links)
	infos := make([]Info, 0, len(links))
	for _, l := range links {
		infos = append(infos, s.describe(r, h, l, byIndex, sys[l.Attrs().Name]))
	}
	slices.SortFunc(infos, func(a, b Info) int { return a.Index - b.Index })
	return infos, nil
}

// linkKind returns the kind Info reports for l.
func linkKind(l netlink.Link) string {
	a := l.Attrs()
	switch t := l.(type) {
	case *netlink.Tuntap:
		if t.Mode == netlink.TUNTAP_MODE_TAP {
			return "tap"
		}
		return "tun"
	case *netlink.Device:
		if a.Flags&unix.IFF_LOOPBACK != 0 || a.EncapType == "loopback" {
			return "loopback"
		}
		return "device"
	}
	return l.Type()
}

var macvlanModeNames = map[netlink.MacvlanMode]string{
	netlink.MACVLAN_MODE_PRIVATE:  "private",
	netlink.MACVLAN_MODE_VEPA:     "vepa",
	netlink.MACVLAN_MODE_BRIDGE:   "bridge",
	netlink.MACVLAN_MODE_PASSTHRU: "passthru",
	netlink.MACVLAN_MODE_SOURCE:   "source",
}

var ipvlanModeNames = map[netlink.IPVlanMode]string{
	netlink.IPVLAN_MODE_L2:  "l2",
	netlink.IPVLAN_MODE_L3:  "l3",
	netlink.IPVLAN_MODE_L3S: "l3s",
}

// describe builds the Info of l, found in r's namespace through h.
func (s *nsSet) describe(r *nsRef, h *netlink.Handle, l netlink.Link, byIndex map[int]netlink.Link, sys sysfsClass) Info {
	a := l.Attrs()
	info := Info{
		Name:                a.Name,
		Index:               a.Index,
		Netns:               r.name,
		Kind:                linkKind(l),
		MAC:                 a.HardwareAddr.String(),
		LocallyAdministered: isLocallyAdministered(a.HardwareAddr),
		MTU:                 a.MTU,
		State:               a.OperState.String(),
		Up:                  a.Flags&unix.IFF_UP != 0,
	}
	if !info.Up {
		info.State = "down"
	}
	if sys.found {
		info.Virtual, info.Why = sys.virtual, sys.why
	} else {
		info.Virtual, info.Why = classifyByKind(info.Kind)
	}
	if m, ok := byIndex[a.MasterIndex]; ok && a.MasterIndex != 0 {
		info.Master = m.Attrs().Name
		if m.Type() == "bridge" {
			if pi, err := h.LinkGetProtinfo(l); err == nil {
				hp := pi.Hairpin
				info.Hairpin = &hp
			}
		}
	}
	switch t := l.(type) {
	case *netlink.Veth:
		if a.ParentIndex != 0 {
			peer := &Peer{Index: a.ParentIndex}
			peer.Name, peer.Netns = s.resolve(r, a.ParentIndex, a.NetNsID, byIndex)
			info.Peer = peer
		}
	case *netlink.Macvlan:
		info.Mode = macvlanModeNames[t.Mode]
		info.Parent = s.resolveParent(r, a, byIndex)
	case *netlink.Macvtap:
		info.Mode = macvlanModeNames[t.Mode]
		info.Parent = s.resolveParent(r, a, byIndex)
		if sys.tapDevice != "" {
			info.TapDevice = "/dev/" + sys.tapDevice
		} else {
			info.TapDevice = fmt.Sprintf("/dev/tap%d", a.Index)
		}
	case *netlink.IPVlan:
		info.Mode = ipvlanModeNames[t.Mode]
		info.Parent = s.resolveParent(r, a, byIndex)
	case *netlink.Tuntap:
		info.TUN = &TUNInfo{
			Type:       info.Kind,
			MultiQueue: t.Flags&netlink.TUNTAP_MULTI_QUEUE != 0,
			Owner:      int(t.Owner),
			Persistent: !t.NonPersist,
			Queues:     t.Queues,
		}
	case *netlink.Vxlan:
		info.VXLAN = &VXLANInfo{VNI: t.VxlanId, Port: t.Port}
		if t.VtepDevIndex != 0 {
			if p, ok := byIndex[t.VtepDevIndex]; ok {
				info.Parent = p.Attrs().Name
			}
		}
	}
	return info
}

// resolveParent names the lower device of a macvlan-like link, as
// NAME@NETNS when it lives in another namespace.
func (s *nsSet) resolveParent(r *nsRef, a *netlink.LinkAttrs, byIndex map[int]netlink.Link) string {
	if a.ParentIndex == 0 {
		return ""
	}
	name, ns := s.resolve(r, a.ParentIndex, a.NetNsID, byIndex)
	if ns != r.name {
		return fmt.Sprintf("%s@%s", name, nsLabel(ns))
	}
	return name
}

// resolve names link index in the namespace that r knows by nsid (-1: r's
// own namespace). An unknown namespace is reported as "nsid:N" and an
// unknown link with an empty name.
func (s *nsSet) resolve(r *nsRef, index, nsid int, byIndex map[int]netlink.Link) (name, netnsName string) {
	if nsid < 0 {
		if l, ok := byIndex[index]; ok {
			return l.Attrs().Name, r.name
		}
		return "", r.name
	}
	other := s.byNSID(r, nsid)
	if other == nil {
		return "", fmt.Sprintf("nsid:%d", nsid)
	}
	h, err := other.handle()
	if err != nil {
		return "", other.name
	}
	l, err := h.LinkByIndex(index)
	if err != nil {
		return "", other.name
	}
	return l.Attrs().Name, other.name
}

// readSysfsFor reads sysfs for the links of r's namespace: /sys itself when
// it shows this namespace, else a fresh sysfs mounted in a private mount
// namespace on a throwaway thread. It returns nil if sysfs cannot be read.
func readSysfsFor(r *nsRef, links []netlink.Link) map[string]sysfsClass {
	if r.current && sysfsMatches("/sys", links) {
		return readSysfs("/sys", links)
	}
	var out map[string]sysfsClass
	err := inPrivateSysfs(r.ns, func(root string) {
		if sysfsMatches(root, links) {
			out = readSysfs(root, links)
		}
	})
	if err != nil {
		return nil
	}
	return out
}

// sysfsMatches reports whether the sysfs at root shows the given links
// (same names with the same indexes), that is, whether it was mounted for
// their namespace.
func sysfsMatches(root string, links []netlink.Link) bool {
	for _, l := range links {
		b, err := os.ReadFile(filepath.Join(root, "class/net", l.Attrs().Name, "ifindex"))
		if err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(l.Attrs().Index) {
			return false
		}
	}
	return true
}

// inPrivateSysfs runs f on a locked thread that has joined ns in a private
// mount namespace with a fresh sysfs on /sys. The thread is never unlocked,
// so the runtime discards it when f returns.
func inPrivateSysfs(ns netns.NsHandle, f func(root string)) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread's state is private
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			errc <- fmt.Errorf("unshare mount namespace: %w", err)
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
			errc <- fmt.Errorf("make mounts private: %w", err)
			return
		}
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		if err := unix.Mount("sysfs", "/sys", "sysfs", 0, ""); err != nil {
			errc <- fmt.Errorf("mount sysfs: %w", err)
			return
		}
		f("/sys")
		errc <- nil
	}()
	return <-errc
}

// readSysfs classifies each link from the sysfs mounted at root.
func readSysfs(root string, links []netlink.Link) map[string]sysfsClass {
	out := make(map[string]sysfsClass, len(links))
	for _, l := range links {
		name := l.Attrs().Name
		dir := filepath.Join(root, "class/net", name)
		resolved, err := filepath.EvalSymlinks(dir)
		if err != nil {
			continue
		}
		resolved = strings.TrimPrefix(resolved, root)
		var subsystem, busDevice string
		if dev, err := filepath.EvalSymlinks(filepath.Join(dir, "device")); err == nil {
			busDevice = filepath.Base(dev)
			if sub, err := filepath.EvalSymlinks(filepath.Join(dir, "device/subsystem")); err == nil {
				subsystem = filepath.Base(sub)
			}
		}
		c := classifySysfs(name, "/sys"+resolved, subsystem, busDevice)
		if taps, _ := filepath.Glob(filepath.Join(dir, "macvtap", "tap*")); len(taps) > 0 {
			c.tapDevice = filepath.Base(taps[0])
			if b, err := os.ReadFile(filepath.Join(taps[0], "dev")); err == nil {
				c.tapDevNum = strings.TrimSpace(string(b))
			}
		}
		out[name] = c
	}
	return out
}
