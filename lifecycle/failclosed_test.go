package lifecycle_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/warrenvpn/warren/internal/leakcheck"
	"github.com/warrenvpn/warren/lifecycle"
)

// TestFailOpenWhenAsked (C17): DNS or the full tunnel's nftables table that
// cannot be applied stops Up (TestFailAtEveryStep) unless the config says
// DNSRequired = false or FirewallRequired = false; then Up goes on, and
// Close leaves the host as found without removing what was never applied.
func TestFailOpenWhenAsked(t *testing.T) {
	leakcheck.Check(t)
	for _, tc := range []struct {
		call string // the call that fails
		set  func(c *configOpts)
	}{
		{"dns set", func(c *configOpts) { c.dns = true }},
		{"firewall apply", func(c *configOpts) { c.fw = true }},
	} {
		t.Run(tc.call, func(t *testing.T) {
			cfg := testConfig(t)
			var o configOpts
			tc.set(&o)
			cfg.Interface.DNSOptional, cfg.Interface.FirewallOptional = o.dns, o.fw
			// Find the call's number in a clean run.
			f := newFakes(-1)
			tun, err := lifecycle.Up(t.Context(), cfg, f.options(t.TempDir()))
			if err != nil {
				t.Fatal(err)
			}
			tun.Close()
			i := slices.IndexFunc(f.rec.log(), func(e string) bool { return strings.HasPrefix(e, tc.call) })

			f = newFakes(i)
			pristine := f.nl.Dump()
			dir := t.TempDir()
			tun, err = lifecycle.Up(t.Context(), cfg, f.options(dir))
			if err != nil {
				t.Fatalf("Up with %q failing and the key set to false = %v, want success", tc.call, err)
			}
			if err := tun.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			undo := map[string]string{"dns set": "dns unset", "firewall apply": "firewall remove"}[tc.call]
			if slices.ContainsFunc(f.rec.log(), func(e string) bool { return strings.HasPrefix(e, undo) }) {
				t.Errorf("Close ran %q for what was never applied: %q", undo, f.rec.log())
			}
			checkClean(t, f, dir, pristine)
		})
	}
}

type configOpts struct{ dns, fw bool }
