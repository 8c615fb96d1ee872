package lifecycle_test

import (
	"testing"

	"github.com/warrenvpn/warren/internal/leakcheck"
	"github.com/warrenvpn/warren/lifecycle"
)

// TestCloseWipesConfig (P18): the configuration a tunnel applied keeps our
// private key and the peers' preshared keys for a reload's comparisons and
// SaveConfig; Close zeroes them.
func TestCloseWipesConfig(t *testing.T) {
	leakcheck.Check(t)
	cfg := testConfig(t)
	for i := range cfg.Peers {
		cfg.Peers[i].PresharedKey[0] = 0x5a
	}
	f := newFakes(-1)
	tun, err := lifecycle.Up(t.Context(), cfg, f.options(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	applied := tun.Config()
	if applied.Interface.PrivateKey.IsZero() {
		t.Fatal("the applied configuration has no private key before Close")
	}
	if err := tun.Close(); err != nil {
		t.Fatal(err)
	}
	if !applied.Interface.PrivateKey.IsZero() {
		t.Error("private key not zeroed by Close")
	}
	for i, p := range applied.Peers {
		if !p.PresharedKey.IsZero() {
			t.Errorf("peer %d: preshared key not zeroed by Close", i)
		}
	}
}
