package host_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"

	"github.com/warrenvpn/warren/device/host"
	"github.com/warrenvpn/warren/device/host/hosttest"
)

// TestRestoreJournal: a Manager applies a default-route state, "crashes" (its
// TUN and everything on it vanish, rules and sysctls stay), and the journal
// it left restores the host as found (L6: kill -9, then restart).
func TestRestoreJournal(t *testing.T) {
	nl, h := newFakeHost()
	nl.WriteSysctl(host.SrcValidMark, "0")
	before := nl.Dump()
	plan := host.PlanRoutes(host.RouteOptions{Allowed: prefixes("0.0.0.0/0", "::/0")})
	if _, err := h.Apply(host.State{Link: "wg0", Up: true, Addresses: prefixes("198.18.7.1/24"),
		Routes: plan.Routes, Rules: plan.Rules, Sysctls: plan.Sysctls}); err != nil {
		t.Fatal(err)
	}
	j := h.Journal()
	if len(j.Rules) != len(plan.Rules) || len(j.Originals) != 1 || j.Originals[0].Value != "0" {
		t.Fatalf("Journal() = %+v, want %d rules and src_valid_mark's original 0", j, len(plan.Rules))
	}
	// The crash: the TUN goes, with its addresses and routes.
	nl.DeleteLink("wg0")
	nl.AddLink("wg0", 1500)
	if err := host.RestoreJournal(nl, nl, j); err != nil {
		t.Fatalf("RestoreJournal: %v", err)
	}
	if diff := cmp.Diff(nl.Dump(), before); diff != "" {
		t.Errorf("after RestoreJournal (-got +want):\n%s", diff)
	}
	// Restoring twice (a second crash before the journal was removed) is harmless.
	if err := host.RestoreJournal(nl, nl, j); err != nil {
		t.Errorf("RestoreJournal again: %v", err)
	}
	if (host.Journal{}).IsEmpty() != true || j.IsEmpty() {
		t.Errorf("IsEmpty wrong")
	}
}

// crashingNetlink is a fake host that "crashes" (panics with crash{})
// instead of making its mutating call number crashAt (from 0).
type crashingNetlink struct {
	*hosttest.FakeNetlink
	calls, crashAt int
}

type crash struct{}

func (c *crashingNetlink) step() {
	if c.calls == c.crashAt {
		panic(crash{})
	}
	c.calls++
}

func (c *crashingNetlink) LinkSetMTU(l netlink.Link, mtu int) error {
	c.step()
	return c.FakeNetlink.LinkSetMTU(l, mtu)
}
func (c *crashingNetlink) LinkSetUp(l netlink.Link) error {
	c.step()
	return c.FakeNetlink.LinkSetUp(l)
}
func (c *crashingNetlink) AddrAdd(l netlink.Link, a *netlink.Addr) error {
	c.step()
	return c.FakeNetlink.AddrAdd(l, a)
}
func (c *crashingNetlink) RouteAdd(r *netlink.Route) error {
	c.step()
	return c.FakeNetlink.RouteAdd(r)
}
func (c *crashingNetlink) RuleAdd(r *netlink.Rule) error { c.step(); return c.FakeNetlink.RuleAdd(r) }
func (c *crashingNetlink) WriteSysctl(k, v string) error {
	c.step()
	return c.FakeNetlink.WriteSysctl(k, v)
}

// TestJournalBeforeEveryChange (L6, L22: issue 14's crash window): the Manager
// applies a default-route state and is killed before each of its mutating
// calls in turn; the journal written so far restores the host as found,
// every time. The journal is written before the change it covers, so no
// point of the Apply leaves a rule or a sysctl it does not name.
func TestJournalBeforeEveryChange(t *testing.T) {
	plan := host.PlanRoutes(host.RouteOptions{Allowed: prefixes("0.0.0.0/0", "::/0")})
	want := host.State{Link: "wg0", Up: true, MTU: 1420, Addresses: prefixes("198.18.7.1/24", "fd00:7761::1/64"),
		Routes: plan.Routes, Rules: plan.Rules, Sysctls: plan.Sysctls}
	for crashAt := 0; ; crashAt++ {
		nl := &crashingNetlink{FakeNetlink: hosttest.NewFakeNetlink(), crashAt: crashAt}
		nl.AddLink("wg0", 1500)
		nl.FakeNetlink.WriteSysctl(host.SrcValidMark, "0")
		pristine := nl.Dump()
		h := host.NewManager(nl, nl)
		var written host.Journal // what a crash leaves on disk
		h.SetJournal(func(j host.Journal) error { written = j; return nil })
		crashed := func() (crashed bool) {
			defer func() {
				if r := recover(); r != nil {
					if _, ok := r.(crash); !ok {
						panic(r)
					}
					crashed = true
				}
			}()
			if _, err := h.Apply(want); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			return false
		}()
		if !crashed {
			if crashAt < len(plan.Rules)+len(plan.Sysctls) {
				t.Fatalf("Apply made only %d calls, want at least the rules and sysctls", crashAt)
			}
			return
		}
		// The TUN goes with the process, and its addresses and routes
		// with it.
		nl.DeleteLink("wg0")
		nl.AddLink("wg0", 1500)
		nl.crashAt = -1
		if err := host.RestoreJournal(nl, nl, written); err != nil {
			t.Fatalf("crash before call %d: RestoreJournal: %v", crashAt, err)
		}
		if diff := cmp.Diff(nl.Dump(), pristine); diff != "" {
			t.Errorf("crash before call %d, journal %+v: host after RestoreJournal (-got +want):\n%s", crashAt, written, diff)
		}
	}
}

// TestJournalWriteFails: a journal that cannot be written stops the change
// it would cover, and Apply restores the state held before.
func TestJournalWriteFails(t *testing.T) {
	nl, h := newFakeHost()
	nl.WriteSysctl(host.SrcValidMark, "0")
	before := nl.Dump()
	h.SetJournal(func(host.Journal) error { return errors.New("disk full") })
	plan := host.PlanRoutes(host.RouteOptions{Allowed: prefixes("0.0.0.0/0")})
	_, err := h.Apply(host.State{Link: "wg0", Up: true, Routes: plan.Routes, Rules: plan.Rules, Sysctls: plan.Sysctls})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Apply with an unwritable journal = %v, want the journal's error", err)
	}
	if diff := cmp.Diff(nl.Dump(), before); diff != "" {
		t.Errorf("host after the failed Apply (-got +want):\n%s", diff)
	}
}
