package host_test

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenvpn/warren/config"
	"github.com/warrenvpn/warren/device/host"
	"github.com/warrenvpn/warren/device/host/hosttest"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// hostStep is one desired state of the golden sequence.
type hostStep struct {
	name  string
	state host.State
}

// hostSteps is a wg-quick like lifecycle: up with peers, a default route is
// added, both families route everything, routes off and a smaller MTU, down.
func hostSteps() []hostStep {
	withPlan := func(s host.State, opts host.RouteOptions) host.State {
		plan := host.PlanRoutes(opts)
		s.Routes, s.Rules, s.Sysctls = plan.Routes, plan.Rules, plan.Sysctls
		return s
	}
	base := host.State{Link: "wg0", MTU: 1420, Up: true, Addresses: prefixes("198.18.7.1/24", "fd00:7761:7::1/64")}
	return []hostStep{
		{"peers", withPlan(base, host.RouteOptions{Allowed: prefixes("198.18.8.0/24", "fd00:7761:8::/48")})},
		{"default v4", withPlan(base, host.RouteOptions{Allowed: prefixes("198.18.8.0/24", "0.0.0.0/0")})},
		{"default both, new address", withPlan(
			host.State{Link: "wg0", MTU: 1420, Up: true, Addresses: prefixes("198.18.7.2/24", "fd00:7761:7::1/64")},
			host.RouteOptions{Allowed: prefixes("0.0.0.0/0", "::/0")})},
		{"table off, mtu 1280", withPlan(
			host.State{Link: "wg0", MTU: 1280, Up: true, Addresses: prefixes("198.18.7.2/24")},
			host.RouteOptions{Table: config.TableOff, Allowed: prefixes("0.0.0.0/0")})},
		{"down, mtu as found", host.State{Link: "wg0", Addresses: prefixes("198.18.7.2/24")}},
		{"empty", host.State{}},
	}
}

func newFakeHost() (*hosttest.FakeNetlink, *host.Manager) {
	nl := hosttest.NewFakeNetlink()
	nl.AddLink("eth0", 1500)
	nl.AddLink("wg0", 1500)
	return nl, host.NewManager(nl, nl)
}

// TestHostStates is the golden test of C10: each state of the sequence is
// applied, the fake's tables and the calls made are rendered and compared
// with testdata; each state applied twice makes no call; the states applied
// again in random order reach the same tables; Undo restores the start.
func TestHostStates(t *testing.T) {
	nl, h := newFakeHost()
	initial := nl.Dump()
	var golden strings.Builder
	fmt.Fprintf(&golden, "## initial\n%s", initial)
	dumps := make(map[string]string)
	for _, step := range hostSteps() {
		before := len(nl.Calls())
		held, err := h.Apply(step.state)
		if err != nil {
			t.Fatalf("Apply(%s): %v", step.name, err)
		}
		calls := nl.Calls()[before:]
		dumps[step.name] = nl.Dump()
		fmt.Fprintf(&golden, "\n## %s\n-- calls\n%s\n-- tables\n%s-- held\n%s", step.name, strings.Join(calls, "\n"), dumps[step.name], held)

		before = len(nl.Calls())
		again, err := h.Apply(step.state)
		if err != nil {
			t.Fatalf("second Apply(%s): %v", step.name, err)
		}
		if calls := nl.Calls()[before:]; len(calls) != 0 {
			t.Errorf("second Apply(%s) made calls %q, want none", step.name, calls)
		}
		if diff := cmp.Diff(again.String(), held.String()); diff != "" {
			t.Errorf("second Apply(%s) held (-got +want):\n%s", step.name, diff)
		}
	}
	compareGolden(t, "host_states.golden", golden.String())

	steps := hostSteps()
	rng := rand.New(rand.NewPCG(3, 10))
	for i := range 50 {
		step := steps[rng.IntN(len(steps))]
		if _, err := h.Apply(step.state); err != nil {
			t.Fatalf("random Apply #%d (%s): %v", i, step.name, err)
		}
		if diff := cmp.Diff(nl.Dump(), dumps[step.name]); diff != "" {
			t.Fatalf("random Apply #%d (%s) tables (-got +want):\n%s", i, step.name, diff)
		}
	}
	if err := h.Undo(); err != nil {
		t.Fatalf("Undo: %v", err)
	}
	if diff := cmp.Diff(nl.Dump(), initial); diff != "" {
		t.Errorf("after Undo (-got +want):\n%s", diff)
	}
}

// TestHostFailureHalfway covers C10's second half: for every pair of states
// and every call of the change between them, a failure of that call leaves
// the tables and the held state as they were before Apply.
func TestHostFailureHalfway(t *testing.T) {
	errInjected := errors.New("injected")
	steps := hostSteps()
	for _, from := range steps {
		for _, to := range steps {
			for n := 0; ; n++ {
				nl, h := newFakeHost()
				initial := nl.Dump()
				held, err := h.Apply(from.state)
				if err != nil {
					t.Fatalf("Apply(%s): %v", from.name, err)
				}
				want := nl.Dump()
				nl.FailAt(n, errInjected)
				got, err := h.Apply(to.state)
				if err == nil {
					break // n is past the last call
				}
				if !errors.Is(err, errInjected) {
					t.Fatalf("%s -> %s, call %d fails: Apply error %v, want the injected one", from.name, to.name, n, err)
				}
				if diff := cmp.Diff(nl.Dump(), want); diff != "" {
					t.Errorf("%s -> %s, call %d fails: tables (-got +want):\n%s", from.name, to.name, n, diff)
				}
				if diff := cmp.Diff(got.String(), held.String()); diff != "" {
					t.Errorf("%s -> %s, call %d fails: held (-got +want):\n%s", from.name, to.name, n, diff)
				}
				if err := h.Undo(); err != nil {
					t.Fatalf("Undo: %v", err)
				}
				if diff := cmp.Diff(nl.Dump(), initial); diff != "" {
					t.Errorf("%s -> %s, call %d fails, then Undo (-got +want):\n%s", from.name, to.name, n, diff)
				}
			}
		}
	}
}

// TestHostForeignEntries checks that what was there before is left alone:
// an address and a route someone else added survive Undo, and a sysctl
// already at the wanted value is not written; an identical rule (left by a
// crashed warren) is adopted and removed.
func TestHostForeignEntries(t *testing.T) {
	nl, h := newFakeHost()
	link, err := nl.LinkByName("wg0")
	if err != nil {
		t.Fatal(err)
	}
	plan := host.PlanRoutes(host.RouteOptions{Allowed: prefixes("0.0.0.0/0", "198.18.8.0/24")})
	state := host.State{Link: "wg0", Up: true, Addresses: prefixes("198.18.7.1/24"), Routes: plan.Routes, Rules: plan.Rules, Sysctls: plan.Sysctls}
	nl.LinkSetUp(link)
	if err := nl.AddrAdd(link, netlinkAddr("198.18.7.1/24")); err != nil {
		t.Fatal(err)
	}
	if err := nl.RouteAdd(netlinkRoute(link, "198.18.8.0/24")); err != nil {
		t.Fatal(err)
	}
	nl.WriteSysctl(host.SrcValidMark, "1")
	nl.LinkSetDown(link)
	// The crashed run's rule: exactly what the plan asks for.
	if err := nl.RuleAdd(ruleOf(plan.Rules[0])); err != nil {
		t.Fatal(err)
	}
	held, err := h.Apply(state)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	wantHeld := host.State{Link: "wg0", Up: true, Routes: plan.Routes[1:], Rules: []host.Rule{plan.Rules[1], plan.Rules[0]}}
	if diff := cmp.Diff(held.String(), wantHeld.String()); diff != "" {
		t.Errorf("held (-got +want):\n%s", diff)
	}
	if err := h.Undo(); err != nil {
		t.Fatalf("Undo: %v", err)
	}
	want := "link 1 eth0 mtu 1500 down\n" +
		"link 2 wg0 mtu 1500 down\n" +
		"addr 198.18.7.1/24 dev wg0\n" +
		"route 198.18.8.0/24 dev wg0 table 254\n" +
		"sysctl net.ipv4.conf.all.src_valid_mark=1\n"
	if diff := cmp.Diff(nl.Dump(), want); diff != "" {
		t.Errorf("after Undo (-got +want):\n%s", diff)
	}
}

// TestHostLinkGone: the TUN closed before Undo took its addresses and
// routes; Undo still removes the rules and restores the sysctl.
func TestHostLinkGone(t *testing.T) {
	nl, h := newFakeHost()
	initial := strings.ReplaceAll(nl.Dump(), "link 2 wg0 mtu 1500 down\n", "")
	steps := hostSteps()
	if _, err := h.Apply(steps[2].state); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	nl.DeleteLink("wg0")
	if err := h.Undo(); err != nil {
		t.Fatalf("Undo: %v", err)
	}
	if diff := cmp.Diff(nl.Dump(), initial); diff != "" {
		t.Errorf("after Undo (-got +want):\n%s", diff)
	}
	if held := h.State(); held.String() != (host.State{}).String() {
		t.Errorf("held after Undo = %v, want empty", held)
	}
}

func TestHostErrors(t *testing.T) {
	tests := []struct {
		name  string
		state host.State
		fail  string
		want  error
	}{
		{"no link", host.State{Link: "wg9", Up: true}, "", syscall.ENODEV},
		{"route refused", host.State{Link: "wg0", Up: true, Routes: []host.Route{{Dst: netip.MustParsePrefix("10.0.0.0/8")}}}, "RouteAdd", syscall.EPERM},
		{"sysctl refused", host.State{Sysctls: []host.Sysctl{{Key: host.SrcValidMark, Value: "1"}}}, "WriteSysctl", syscall.EROFS},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nl, h := newFakeHost()
			initial := nl.Dump()
			if tc.fail != "" {
				nl.FailOn(tc.fail, tc.want)
			}
			held, err := h.Apply(tc.state)
			if !errors.Is(err, tc.want) {
				t.Errorf("Apply() error = %v, want %v", err, tc.want)
			}
			if held.String() != (host.State{}).String() {
				t.Errorf("held after failure = %v, want empty", held)
			}
			if diff := cmp.Diff(nl.Dump(), initial); diff != "" {
				t.Errorf("tables after failure (-got +want):\n%s", diff)
			}
		})
	}
	if _, err := host.NewManager(hosttest.NewFakeNetlink(), nil).Apply(host.State{Routes: []host.Route{{}}}); err == nil {
		t.Errorf("Apply of a state without a link succeeded")
	}
}

func compareGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(got, string(want)); diff != "" {
		t.Errorf("%s (-got +want):\n%s", path, diff)
	}
}
