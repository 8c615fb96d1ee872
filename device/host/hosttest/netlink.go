// Package hosttest provides an in-memory netlink and sysctl file system
// with error injection, the test double for package device/host. It is
// imported only by tests.
package hosttest

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"

	"github.com/warrenvpn/warren/config"
	"github.com/warrenvpn/warren/device/host"
)

// FakeNetlink is an in-memory stand-in for the kernel's links, addresses,
// routes, rules and sysctls. It satisfies host.Netlink and host.SysctlFS,
// answers with the errors the kernel gives (EEXIST on a duplicate add, ESRCH
// or EADDRNOTAVAIL on deleting what is not there, ENODEV for a missing link,
// ENETDOWN for an IPv4 route through a down link), and fails chosen calls on
// demand. Dump renders the whole state as text for golden tests. It is safe
// for concurrent use.
type FakeNetlink struct {
	mu      sync.Mutex // guards everything below
	links   []*fakeLink
	routes  map[string]bool // rendered routes
	rules   map[string]bool // rendered rules
	sysctls map[string]string
	calls   []string // mutating calls, rendered

	failAt  int // index in calls of the call to fail; -1: none
	failErr error
	failOps map[string]error // by method name
}

type fakeLink struct {
	name  string
	index int
	mtu   int
	up    bool
	addrs map[netip.Prefix]bool
}

var (
	_ host.Netlink  = (*FakeNetlink)(nil)
	_ host.SysctlFS = (*FakeNetlink)(nil)
)

// NewFakeNetlink returns an empty fake with the sysctl src_valid_mark at 0.
func NewFakeNetlink() *FakeNetlink {
	return &FakeNetlink{
		routes:  make(map[string]bool),
		rules:   make(map[string]bool),
		sysctls: map[string]string{host.SrcValidMark: "0"},
		failAt:  -1,
		failOps: make(map[string]error),
	}
}

// AddLink creates a link that is down, with the given MTU.
func (f *FakeNetlink) AddLink(name string, mtu int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.links = append(f.links, &fakeLink{name: name, index: len(f.links) + 1, mtu: mtu, addrs: make(map[netip.Prefix]bool)})
}

// DeleteLink removes a link and its addresses and routes, as the kernel does
// when a TUN closes.
func (f *FakeNetlink) DeleteLink(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.links = slices.DeleteFunc(f.links, func(l *fakeLink) bool { return l.name == name })
	for r := range f.routes {
		if strings.Contains(r, " dev "+name+" ") {
			delete(f.routes, r)
		}
	}
}

// FailAt makes the n-th mutating call from now fail with err (n = 0 is the
// next one).
func (f *FakeNetlink) FailAt(n int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failAt, f.failErr = len(f.calls)+n, err
}

// FailOn makes every call of the method op ("RouteAdd", "WriteSysctl", ...)
// fail with err; a nil err clears it.
func (f *FakeNetlink) FailOn(op string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.failOps, op)
	} else {
		f.failOps[op] = err
	}
}

// Calls returns the mutating calls made so far, rendered one per line,
// failed ones included.
func (f *FakeNetlink) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// Dump renders links, addresses, routes, rules and sysctls, sorted, one per
// line.
func (f *FakeNetlink) Dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var lines []string
	for _, l := range f.links {
		state := "down"
		if l.up {
			state = "up"
		}
		lines = append(lines, fmt.Sprintf("link %d %s mtu %d %s", l.index, l.name, l.mtu, state))
		var addrs []string
		for a := range l.addrs {
			addrs = append(addrs, fmt.Sprintf("addr %v dev %s", a, l.name))
		}
		slices.Sort(addrs)
		lines = append(lines, addrs...)
	}
	lines = append(lines, sortedKeys(f.routes)...)
	lines = append(lines, sortedKeys(f.rules)...)
	for _, k := range sortedKeys(f.sysctls) {
		lines = append(lines, fmt.Sprintf("sysctl %s=%s", k, f.sysctls[k]))
	}
	return strings.Join(lines, "\n") + "\n"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// callLocked records a mutating call and returns the injected failure for
// it, if any; f.mu is held.
func (f *FakeNetlink) callLocked(op, arg string) error {
	f.calls = append(f.calls, op+" "+arg)
	if err := f.failOps[op]; err != nil {
		return err
	}
	if len(f.calls)-1 == f.failAt {
		return f.failErr
	}
	return nil
}

// linkLocked finds the link that link names; f.mu is held.
func (f *FakeNetlink) linkLocked(link netlink.Link) (*fakeLink, error) {
	if link == nil {
		return nil, syscall.ENODEV
	}
	for _, l := range f.links {
		if l.index == link.Attrs().Index && l.name == link.Attrs().Name {
			return l, nil
		}
	}
	return nil, syscall.ENODEV
}

func (f *FakeNetlink) linkByIndexLocked(index int) *fakeLink {
	for _, l := range f.links {
		if l.index == index {
			return l
		}
	}
	return nil
}

// LinkByName returns a snapshot of the link, or an error wrapping ENODEV.
func (f *FakeNetlink) LinkByName(name string) (netlink.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range f.links {
		if l.name == name {
			attrs := netlink.LinkAttrs{Name: l.name, Index: l.index, MTU: l.mtu}
			if l.up {
				attrs.Flags = net.FlagUp
			}
			return &netlink.Device{LinkAttrs: attrs}, nil
		}
	}
	return nil, fmt.Errorf("link %s not found: %w", name, syscall.ENODEV)
}

// LinkSetMTU sets the MTU.
func (f *FakeNetlink) LinkSetMTU(link netlink.Link, mtu int) error {
	return f.onLink("LinkSetMTU", link, fmt.Sprint(mtu), func(l *fakeLink) error {
		l.mtu = mtu
		return nil
	})
}

// LinkSetUp brings the link up.
func (f *FakeNetlink) LinkSetUp(link netlink.Link) error {
	return f.onLink("LinkSetUp", link, "", func(l *fakeLink) error {
		l.up = true
		return nil
	})
}

// LinkSetDown brings the link down.
func (f *FakeNetlink) LinkSetDown(link netlink.Link) error {
	return f.onLink("LinkSetDown", link, "", func(l *fakeLink) error {
		l.up = false
		return nil
	})
}

// AddrAdd adds an address; EEXIST if present.
func (f *FakeNetlink) AddrAdd(link netlink.Link, addr *netlink.Addr) error {
	p := prefixOf(addr.IPNet)
	return f.onLink("AddrAdd", link, p.String(), func(l *fakeLink) error {
		if l.addrs[p] {
			return syscall.EEXIST
		}
		l.addrs[p] = true
		return nil
	})
}

// AddrDel deletes an address; EADDRNOTAVAIL if absent.
func (f *FakeNetlink) AddrDel(link netlink.Link, addr *netlink.Addr) error {
	p := prefixOf(addr.IPNet)
	return f.onLink("AddrDel", link, p.String(), func(l *fakeLink) error {
		if !l.addrs[p] {
			return syscall.EADDRNOTAVAIL
		}
		delete(l.addrs, p)
		return nil
	})
}

// onLink records a call on link and runs do on it unless a failure is
// injected or the link does not exist.
func (f *FakeNetlink) onLink(op string, link netlink.Link, arg string, do func(*fakeLink) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	name := "?"
	if link != nil {
		name = link.Attrs().Name
	}
	if err := f.callLocked(op, strings.TrimSpace(name+" "+arg)); err != nil {
		return err
	}
	l, err := f.linkLocked(link)
	if err != nil {
		return err
	}
	return do(l)
}

// renderRouteLocked renders a route as Dump shows it; f.mu is held.
func (f *FakeNetlink) renderRouteLocked(r *netlink.Route) (string, *fakeLink) {
	l := f.linkByIndexLocked(r.LinkIndex)
	name := "?"
	if l != nil {
		name = l.name
	}
	table := r.Table
	if table == 0 {
		table = int(config.TableMain)
	}
	return fmt.Sprintf("route %v dev %s table %d", prefixOf(r.Dst), name, table), l
}

// RouteAdd adds a route; EEXIST if present, ENODEV without its link,
// ENETDOWN for IPv4 through a down link.
func (f *FakeNetlink) RouteAdd(r *netlink.Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	key, l := f.renderRouteLocked(r)
	if err := f.callLocked("RouteAdd", key); err != nil {
		return err
	}
	switch {
	case l == nil:
		return syscall.ENODEV
	case !l.up && prefixOf(r.Dst).Addr().Is4():
		return syscall.ENETDOWN
	case f.routes[key]:
		return syscall.EEXIST
	}
	f.routes[key] = true
	return nil
}

// RouteDel deletes a route; ESRCH if absent.
func (f *FakeNetlink) RouteDel(r *netlink.Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	key, _ := f.renderRouteLocked(r)
	if err := f.callLocked("RouteDel", key); err != nil {
		return err
	}
	if !f.routes[key] {
		return syscall.ESRCH
	}
	delete(f.routes, key)
	return nil
}

// renderRule renders a rule as Dump shows it.
func renderRule(r *netlink.Rule) string {
	var b strings.Builder
	fmt.Fprintf(&b, "rule family %d", r.Family)
	if r.Priority >= 0 {
		fmt.Fprintf(&b, " pref %d", r.Priority)
	}
	if r.Invert {
		b.WriteString(" not")
	}
	if r.Mark != 0 {
		fmt.Fprintf(&b, " fwmark %#x", r.Mark)
	}
	fmt.Fprintf(&b, " lookup %d", r.Table)
	if r.SuppressPrefixlen >= 0 {
		fmt.Fprintf(&b, " suppress_prefixlength %d", r.SuppressPrefixlen)
	}
	return b.String()
}

// RuleAdd adds a rule; EEXIST if an identical one exists.
func (f *FakeNetlink) RuleAdd(r *netlink.Rule) error {
	return f.onSet("RuleAdd", f.rules, renderRule(r), true, syscall.EEXIST)
}

// RuleDel deletes a rule; ENOENT if absent.
func (f *FakeNetlink) RuleDel(r *netlink.Rule) error {
	return f.onSet("RuleDel", f.rules, renderRule(r), false, syscall.ENOENT)
}

// onSet records a call, then adds key to or deletes it from set, failing
// with exists (on add) or missing (on delete).
func (f *FakeNetlink) onSet(op string, set map[string]bool, key string, add bool, fail error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.callLocked(op, key); err != nil {
		return err
	}
	if set[key] == add {
		return fail
	}
	if add {
		set[key] = true
	} else {
		delete(set, key)
	}
	return nil
}

// ReadSysctl returns the value of key; ENOENT if the fake has none.
func (f *FakeNetlink) ReadSysctl(key string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.sysctls[key]
	if !ok {
		return "", syscall.ENOENT
	}
	return v, nil
}

// WriteSysctl sets key to value.
func (f *FakeNetlink) WriteSysctl(key, value string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.callLocked("WriteSysctl", key+"="+value); err != nil {
		return err
	}
	f.sysctls[key] = value
	return nil
}

func prefixOf(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	a, _ := netip.AddrFromSlice(n.IP)
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits)
}
