package host_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenvpn/warren/device/host"
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
