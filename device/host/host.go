package host

// Host configuration is applied as a whole desired state, as Tailscale's
// router does. Apply works in these steps, each recorded in the held state as
// soon as the kernel accepts it, so that a failure at any point leaves an
// exact record of what is there:
//
//  1. find the link; set its MTU (remembering the original);
//  2. add the new addresses;
//  3. bring the link up (routes through a down link are refused);
//  4. add the new routes, then the new rules, then set the new sysctls;
//  5. restore the sysctls no longer wanted, delete the rules, routes and
//     addresses no longer wanted, in that order;
//  6. bring the link down and restore its MTU if no longer wanted.
//
// If a step fails, Apply applies the previously held state the same way, so
// a failure half-way changes nothing. Undo applies the empty state.

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"

	"github.com/warrenvpn/warren/config"
)

// Netlink is the set of netlink calls the host configuration makes.
// *netlink.Handle satisfies it as is; devicetest.FakeNetlink is an in-memory
// fake. Use a handle bound to a namespace (netlink.NewHandleAt) in tests.
type Netlink interface {
	LinkByName(name string) (netlink.Link, error)
	LinkSetMTU(link netlink.Link, mtu int) error
	LinkSetUp(link netlink.Link) error
	LinkSetDown(link netlink.Link) error
	AddrAdd(link netlink.Link, addr *netlink.Addr) error
	AddrDel(link netlink.Link, addr *netlink.Addr) error
	RouteAdd(route *netlink.Route) error
	RouteDel(route *netlink.Route) error
	RuleAdd(rule *netlink.Rule) error
	RuleDel(rule *netlink.Rule) error
}

// SysctlFS reads and writes kernel parameters by their sysctl name
// ("net.ipv4.conf.all.src_valid_mark"). ProcSys is the real one.
type SysctlFS interface {
	ReadSysctl(key string) (string, error)
	WriteSysctl(key, value string) error
}

// Linux values used by the host state. They are spelled out so that this file
// builds on every OS.
const (
	familyV4  = 2   // AF_INET
	familyV6  = 10  // AF_INET6
	scopeLink = 253 // RT_SCOPE_LINK
	protoBoot = 3   // RTPROT_BOOT, as `ip route add` sets
	ifaNoDAD  = 0x2 // IFA_F_NODAD

	ip6UserMetric = 1024 // IP6_RT_PRIO_USER

	mainTable = int(config.TableMain) // RT_TABLE_MAIN
)

// State is the host configuration warren wants for its interface. Zero
// fields ask for nothing: MTU 0 leaves the MTU as found, Up false leaves the
// link as found.
type State struct {
	Link      string         // interface name
	MTU       int            // bytes; 0 leaves it
	Up        bool           // bring the link up
	Addresses []netip.Prefix // interface addresses, host bits kept
	Routes    []Route        // routes through Link
	Rules     []Rule         // policy routing rules
	Sysctls   []Sysctl       // kernel parameters
}

// Route is a route to Dst through the link, in table Table.
type Route struct {
	Dst   netip.Prefix
	Table int // 0 means the main table
}

// Rule is a policy routing rule, as `ip rule` shows it.
type Rule struct {
	IPv6              bool
	Priority          int    // 0 lets the kernel choose
	Mark              uint32 // fwmark to match; 0 matches every packet
	Invert            bool   // match packets that do not carry Mark ("not fwmark")
	Table             int    // table to look up
	Suppress          bool   // whether SuppressPrefixlen applies
	SuppressPrefixlen int    // ignore lookup results with a prefix this long or shorter
}

// Sysctl is a kernel parameter and the value wanted for it.
type Sysctl struct {
	Key, Value string
}

// String renders a route as `ip route` would, minus the device.
func (r Route) String() string {
	return fmt.Sprintf("%v table %s", r.Dst, tableName(r.Table))
}

// String renders a rule as `ip rule` would.
func (r Rule) String() string {
	var b strings.Builder
	if r.IPv6 {
		b.WriteString("-6")
	} else {
		b.WriteString("-4")
	}
	if r.Priority != 0 {
		fmt.Fprintf(&b, " pref %d", r.Priority)
	}
	if r.Invert {
		b.WriteString(" not")
	}
	if r.Mark != 0 || r.Invert {
		fmt.Fprintf(&b, " fwmark %#x", r.Mark)
	}
	fmt.Fprintf(&b, " lookup %s", tableName(r.Table))
	if r.Suppress {
		fmt.Fprintf(&b, " suppress_prefixlength %d", r.SuppressPrefixlen)
	}
	return b.String()
}

func tableName(t int) string {
	if t == 0 || t == mainTable {
		return "main"
	}
	return fmt.Sprint(t)
}

// String renders the state on several lines, in a stable order.
func (s State) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "link %s mtu %d up %v\n", s.Link, s.MTU, s.Up)
	for _, a := range s.Addresses {
		fmt.Fprintf(&b, "addr %v\n", a)
	}
	for _, r := range s.Routes {
		fmt.Fprintf(&b, "route %v\n", r)
	}
	for _, r := range s.Rules {
		fmt.Fprintf(&b, "rule %v\n", r)
	}
	for _, c := range s.Sysctls {
		fmt.Fprintf(&b, "sysctl %s=%s\n", c.Key, c.Value)
	}
	return b.String()
}

// normalized returns a copy of s with route prefixes masked, tables
// defaulted, lists sorted and duplicates removed, so that equal states
// compare equal. Rules carry their priorities, so their order does not
// matter.
func (s State) normalized() State {
	n := State{Link: s.Link, MTU: s.MTU, Up: s.Up}
	n.Addresses = slices.Clone(s.Addresses)
	slices.SortFunc(n.Addresses, comparePrefix)
	n.Addresses = slices.Compact(n.Addresses)
	for _, r := range s.Routes {
		r.Dst = r.Dst.Masked()
		if r.Table == 0 {
			r.Table = mainTable
		}
		n.Routes = append(n.Routes, r)
	}
	slices.SortFunc(n.Routes, func(a, b Route) int {
		return cmp.Or(comparePrefix(a.Dst, b.Dst), cmp.Compare(a.Table, b.Table))
	})
	n.Routes = slices.Compact(n.Routes)
	for _, r := range s.Rules {
		if r.Table == 0 {
			r.Table = mainTable
		}
		n.Rules = append(n.Rules, r)
	}
	slices.SortFunc(n.Rules, func(a, b Rule) int { return strings.Compare(a.String(), b.String()) })
	n.Rules = slices.Compact(n.Rules)
	// The last value given for a key wins.
	for _, c := range s.Sysctls {
		n.Sysctls = slices.DeleteFunc(n.Sysctls, func(o Sysctl) bool { return o.Key == c.Key })
		n.Sysctls = append(n.Sysctls, c)
	}
	slices.SortFunc(n.Sysctls, func(a, b Sysctl) int { return strings.Compare(a.Key, b.Key) })
	return n
}

// comparePrefix orders IPv4 before IPv6, then by address and length.
func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

// linkBound reports whether s asks for anything on its link.
func (s State) linkBound() bool {
	return s.MTU != 0 || s.Up || len(s.Addresses) > 0 || len(s.Routes) > 0
}

// isEmpty reports whether s asks for nothing at all.
func (s State) isEmpty() bool {
	return !s.linkBound() && len(s.Rules) == 0 && len(s.Sysctls) == 0
}

// Manager applies States through netlink and remembers exactly what it
// changed, so that Undo restores the host as found. Its methods are safe for
// concurrent use.
type Manager struct {
	nl Netlink
	fs SysctlFS // nil: states with sysctls fail

	mu      sync.Mutex          // guards the fields below
	journal func(Journal) error // nil: none; see SetJournal
	held    State               // what this Manager added or set, and nothing else
	orig    struct {
		mtu     int               // link MTU before we set ours; valid if held.MTU != 0
		sysctls map[string]string // values before we wrote ours, by key
	}
}

// NewManager returns a Manager that changes the host through nl and fs. fs may be
// nil if no state will carry sysctls.
func NewManager(nl Netlink, fs SysctlFS) *Manager {
	h := &Manager{nl: nl, fs: fs}
	h.orig.sysctls = make(map[string]string)
	return h
}

// State returns what the Manager currently holds: the entries it added and the
// settings it changed.
func (h *Manager) State() State {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.held.normalized()
}

// Apply changes the host from the state held to want and returns the state
// now held. Entries that already existed (an address or route someone else
// added) are left alone and not held, so Undo never removes them; rules are
// the exception, because an identical rule can only be warren's own left
// behind by a crash, so it is adopted and removed on Undo. Applying the same
// state twice makes no change. If Apply fails, it restores the state held
// before, and returns it with the error.
func (h *Manager) Apply(want State) (State, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	want = want.normalized()
	prev := h.held.normalized()
	if want.Link == "" && want.linkBound() {
		return prev, errors.New("host state without a link")
	}
	if err := h.applyLocked(want); err != nil {
		if rerr := h.applyLocked(prev); rerr != nil {
			err = errors.Join(err, fmt.Errorf("restore previous host state: %w", rerr))
		}
		return h.held.normalized(), err
	}
	return h.held.normalized(), nil
}

// Undo removes everything the Manager holds and restores the MTU, link state and
// sysctls it changed. A link deleted meanwhile took its addresses and routes
// with it; that is not an error.
func (h *Manager) Undo() error {
	_, err := h.Apply(State{})
	return err
}

// applyLocked moves the held state towards want, step by step; h.mu is held.
func (h *Manager) applyLocked(want State) error {
	if h.held.Link != "" && want.Link != "" && want.Link != h.held.Link {
		if err := h.applyLocked(State{}); err != nil {
			return err
		}
	}
	name := cmp.Or(want.Link, h.held.Link)
	var link netlink.Link
	if name != "" && (want.linkBound() || h.held.linkBound()) {
		var err error
		link, err = h.nl.LinkByName(name)
		switch {
		case isLinkGone(err) && !want.linkBound():
			// Gone, and with it everything we had put on it.
			h.held.MTU, h.held.Up, h.held.Addresses, h.held.Routes = 0, false, nil, nil
		case err != nil:
			return fmt.Errorf("find link %s: %w", name, err)
		}
	}
	h.held.Link = name
	if link != nil {
		if err := h.setMTULocked(link, want.MTU); err != nil {
			return err
		}
		if err := h.addAddrsLocked(link, want.Addresses); err != nil {
			return err
		}
		if want.Up && !h.held.Up && link.Attrs().Flags&net.FlagUp == 0 {
			if err := h.nl.LinkSetUp(link); err != nil {
				return fmt.Errorf("set %s up: %w", name, err)
			}
			h.held.Up = true
		}
		if err := h.addRoutesLocked(link, want.Routes); err != nil {
			return err
		}
	} else if want.linkBound() {
		return fmt.Errorf("find link %s: %w", name, syscall.ENODEV)
	}
	if err := h.addRulesLocked(want.Rules); err != nil {
		return err
	}
	if err := h.setSysctlsLocked(want.Sysctls); err != nil {
		return err
	}
	if err := h.restoreSysctlsLocked(want.Sysctls); err != nil {
		return err
	}
	if err := h.delRulesLocked(want.Rules); err != nil {
		return err
	}
	if link != nil {
		if err := h.delRoutesLocked(link, want.Routes); err != nil {
			return err
		}
		if err := h.delAddrsLocked(link, want.Addresses); err != nil {
			return err
		}
		if !want.Up && h.held.Up {
			if err := h.nl.LinkSetDown(link); err != nil && !isLinkGone(err) {
				return fmt.Errorf("set %s down: %w", name, err)
			}
			h.held.Up = false
		}
		if want.MTU == 0 && h.held.MTU != 0 {
			if err := h.nl.LinkSetMTU(link, h.orig.mtu); err != nil && !isLinkGone(err) {
				return fmt.Errorf("restore MTU %d on %s: %w", h.orig.mtu, name, err)
			}
			h.held.MTU = 0
		}
	}
	if want.isEmpty() {
		h.held = State{}
	}
	return nil
}

// setMTULocked sets the link's MTU to mtu unless it has it already.
func (h *Manager) setMTULocked(link netlink.Link, mtu int) error {
	if mtu == 0 || mtu == h.held.MTU {
		return nil
	}
	cur := link.Attrs().MTU
	if h.held.MTU == 0 {
		if cur == mtu {
			return nil // as found: nothing to restore later
		}
		h.orig.mtu = cur
	}
	if err := h.nl.LinkSetMTU(link, mtu); err != nil {
		return fmt.Errorf("set MTU %d on %s: %w", mtu, link.Attrs().Name, err)
	}
	if mtu == h.orig.mtu {
		h.held.MTU = 0 // back to the original
	} else {
		h.held.MTU = mtu
	}
	return nil
}

func (h *Manager) addAddrsLocked(link netlink.Link, want []netip.Prefix) error {
	for _, p := range want {
		if slices.Contains(h.held.Addresses, p) {
			continue
		}
		err := h.nl.AddrAdd(link, toAddr(p))
		if errors.Is(err, syscall.EEXIST) {
			continue // someone else's: not ours to remove
		}
		if err != nil {
			return fmt.Errorf("add address %v to %s: %w", p, link.Attrs().Name, err)
		}
		h.held.Addresses = append(h.held.Addresses, p)
	}
	return nil
}

func (h *Manager) delAddrsLocked(link netlink.Link, want []netip.Prefix) error {
	var kept []netip.Prefix
	for i, p := range h.held.Addresses {
		if slices.Contains(want, p) {
			kept = append(kept, p)
			continue
		}
		err := h.nl.AddrDel(link, toAddr(p))
		if err != nil && !isGone(err) {
			h.held.Addresses = append(kept, h.held.Addresses[i:]...)
			return fmt.Errorf("delete address %v from %s: %w", p, link.Attrs().Name, err)
		}
	}
	h.held.Addresses = kept
	return nil
}

func (h *Manager) addRoutesLocked(link netlink.Link, want []Route) error {
	for _, r := range want {
		if slices.Contains(h.held.Routes, r) {
			continue
		}
		err := h.nl.RouteAdd(toRoute(link, r))
		if errors.Is(err, syscall.EEXIST) {
			continue // the kernel's prefix route or someone else's
		}
		if err != nil {
			return fmt.Errorf("add route %v dev %s: %w", r, link.Attrs().Name, err)
		}
		h.held.Routes = append(h.held.Routes, r)
	}
	return nil
}

func (h *Manager) delRoutesLocked(link netlink.Link, want []Route) error {
	var kept []Route
	for i, r := range h.held.Routes {
		if slices.Contains(want, r) {
			kept = append(kept, r)
			continue
		}
		err := h.nl.RouteDel(toRoute(link, r))
		if err != nil && !isGone(err) {
			h.held.Routes = append(kept, h.held.Routes[i:]...)
			return fmt.Errorf("delete route %v dev %s: %w", r, link.Attrs().Name, err)
		}
	}
	h.held.Routes = kept
	return nil
}

func (h *Manager) addRulesLocked(want []Rule) error {
	for _, r := range want {
		if slices.Contains(h.held.Rules, r) {
			continue
		}
		// Journal first: a crash between the two leaves a journal naming
		// a rule that may not exist, which restoring tolerates.
		h.held.Rules = append(h.held.Rules, r)
		if err := h.writeJournalLocked(); err != nil {
			h.held.Rules = h.held.Rules[:len(h.held.Rules)-1]
			return fmt.Errorf("add rule %v: %w", r, err)
		}
		err := h.nl.RuleAdd(toRule(r))
		if err != nil && !errors.Is(err, syscall.EEXIST) {
			h.held.Rules = h.held.Rules[:len(h.held.Rules)-1]
			return fmt.Errorf("add rule %v: %w", r, err)
		}
	}
	return nil
}

func (h *Manager) delRulesLocked(want []Rule) error {
	var kept []Rule
	for i, r := range h.held.Rules {
		if slices.Contains(want, r) {
			kept = append(kept, r)
			continue
		}
		err := h.nl.RuleDel(toRule(r))
		if err != nil && !isGone(err) {
			h.held.Rules = append(kept, h.held.Rules[i:]...)
			return fmt.Errorf("delete rule %v: %w", r, err)
		}
	}
	h.held.Rules = kept
	return nil
}

func (h *Manager) setSysctlsLocked(want []Sysctl) error {
	for _, c := range want {
		if slices.Contains(h.held.Sysctls, c) {
			continue
		}
		if h.fs == nil {
			return fmt.Errorf("set sysctl %s: no sysctl access", c.Key)
		}
		i := slices.IndexFunc(h.held.Sysctls, func(o Sysctl) bool { return o.Key == c.Key })
		if i < 0 {
			cur, err := h.fs.ReadSysctl(c.Key)
			if err != nil {
				return fmt.Errorf("read sysctl %s: %w", c.Key, err)
			}
			if cur == c.Value {
				continue // as found: nothing to restore later
			}
			h.orig.sysctls[c.Key] = cur
		}
		// Journal first, as for rules: restoring a value never written
		// writes back what is there.
		var prev Sysctl
		if i >= 0 {
			prev = h.held.Sysctls[i]
			h.held.Sysctls[i] = c
		} else {
			h.held.Sysctls = append(h.held.Sysctls, c)
		}
		undo := func() {
			if i >= 0 {
				h.held.Sysctls[i] = prev
			} else {
				h.held.Sysctls = h.held.Sysctls[:len(h.held.Sysctls)-1]
				delete(h.orig.sysctls, c.Key)
			}
		}
		if err := h.writeJournalLocked(); err != nil {
			undo()
			return fmt.Errorf("set sysctl %s=%s: %w", c.Key, c.Value, err)
		}
		if err := h.fs.WriteSysctl(c.Key, c.Value); err != nil {
			undo()
			return fmt.Errorf("set sysctl %s=%s: %w", c.Key, c.Value, err)
		}
	}
	return nil
}

func (h *Manager) restoreSysctlsLocked(want []Sysctl) error {
	var kept []Sysctl
	for i, c := range h.held.Sysctls {
		if slices.ContainsFunc(want, func(o Sysctl) bool { return o.Key == c.Key }) {
			kept = append(kept, c)
			continue
		}
		orig := h.orig.sysctls[c.Key]
		if err := h.fs.WriteSysctl(c.Key, orig); err != nil {
			h.held.Sysctls = append(kept, h.held.Sysctls[i:]...)
			return fmt.Errorf("restore sysctl %s=%s: %w", c.Key, orig, err)
		}
		delete(h.orig.sysctls, c.Key)
	}
	h.held.Sysctls = kept
	return nil
}

// isLinkGone reports whether err says the link does not exist.
func isLinkGone(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, syscall.ENODEV)
}

// isGone reports whether a delete failed because the entry is already gone.
func isGone(err error) bool {
	return isLinkGone(err) || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESRCH) ||
		errors.Is(err, syscall.EADDRNOTAVAIL)
}

func toIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func toAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: toIPNet(p)}
	if p.Addr().Is6() {
		a.Flags = ifaNoDAD // usable at once; TUN links skip DAD anyway
	}
	return a
}

func toRoute(link netlink.Link, r Route) *netlink.Route {
	nr := &netlink.Route{
		LinkIndex: link.Attrs().Index,
		Dst:       toIPNet(r.Dst),
		Table:     r.Table,
		Scope:     scopeLink,
		Protocol:  protoBoot,
	}
	if r.Dst.Addr().Is6() {
		// The metric IPv6 gives routes added without one. Naming it makes
		// the delete match our route, not the kernel's prefix route for
		// the same destination (metric 256), which a metric of 0 would.
		nr.Priority = ip6UserMetric
	}
	return nr
}

func toRule(r Rule) *netlink.Rule {
	n := netlink.NewRule()
	n.Family = familyV4
	if r.IPv6 {
		n.Family = familyV6
	}
	if r.Priority != 0 {
		n.Priority = r.Priority
	}
	n.Mark = r.Mark
	n.Invert = r.Invert
	n.Table = r.Table
	if r.Suppress {
		n.SuppressPrefixlen = r.SuppressPrefixlen
	}
	return n
}
