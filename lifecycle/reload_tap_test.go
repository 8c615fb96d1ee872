package lifecycle_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenvpn/warren/config"
	"github.com/warrenvpn/warren/lifecycle"
	"github.com/warrenvpn/warren/mactable"
)

// lockedBuffer is a bytes.Buffer the engine's goroutines log to while the
// test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestReconfigureTAP: a reload in Mode = tap applies a peer's new
// AllowedMACs (the engine's side is TestL2SetAllowedMACs in tunnel), and
// refuses to change the Bridge, the MAC ageing, the offloads, the path MTU
// probe or the re-resolution of names with a line that says what to do,
// leaving the configuration as it was.
func TestReconfigureTAP(t *testing.T) {
	var log lockedBuffer
	f := newFakes(-1)
	opts := tapOptions(f, t.TempDir())
	opts.Logger = slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	before := tapConfig(t, "")
	tun, err := lifecycle.Up(t.Context(), before, opts)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	defer tun.Close()

	for _, tc := range []struct {
		name, want string
		change     func(c *config.Config)
	}{
		{"bridge", `Bridge cannot change while ` + testName + ` is up ("" → "br0"): run warren down and up`,
			func(c *config.Config) { c.Interface.Bridge = "br0" }},
		{"ageing", "MACAgeing cannot change while " + testName + " is up (default → 1m0s): run warren down and up",
			func(c *config.Config) { c.Interface.MACAgeing = time.Minute }},
		{"offload", "Offload cannot change while " + testName + " is up (the TAP's offloads are set when it opens): run warren down and up",
			func(c *config.Config) { c.Interface.OffloadOff = true }},
		{"path MTU probe", "PathMTUProbe cannot change while " + testName + " is up (default → off): run warren down and up",
			func(c *config.Config) { c.Interface.PathMTUProbe = -1 }},
		{"re-resolve", "ReresolveAfter and ReresolveMax cannot change while " + testName + " is up (default, default → default, 2m0s): run warren down and up",
			func(c *config.Config) { c.Interface.ReresolveMax = 2 * time.Minute }},
	} {
		cfg := *before
		tc.change(&cfg)
		err := tun.Reconfigure(t.Context(), &cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Reconfigure = %v, want %q", tc.name, err, tc.want)
		}
		if tun.Config() != before {
			t.Errorf("%s: a refused Reconfigure changed the configuration", tc.name)
		}
	}

	after := *before
	after.Peers = append(after.Peers[:0:0], before.Peers...)
	after.Peers[0].AllowedMACs = []mactable.MAC{{2, 0, 0, 0, 0, 2}, {2, 0, 0, 0, 0, 3}}
	after.Interface.Forward = true
	if err := tun.Reconfigure(t.Context(), &after); err != nil {
		t.Fatalf("Reconfigure with new AllowedMACs: %v", err)
	}
	if !strings.Contains(log.String(), `msg="AllowedMACs changed" interface=`+testName+` peers=1`) {
		t.Errorf("no log line for the new AllowedMACs:\n%s", log.String())
	}
	if tun.Config() != &after {
		t.Error("Config() is not the configuration Reconfigure applied")
	}
}
