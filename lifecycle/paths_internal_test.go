package lifecycle

import (
	"testing"
	"time"

	"github.com/warrenvpn/warren/config"
	"github.com/warrenvpn/warren/tunnel"
)

// TestUsePaths: the config's PathMTUProbe, ReresolveAfter and ReresolveMax
// override the options where set (off as a negative duration), and leave
// the options' values, defaults applied, where unset.
func TestUsePaths(t *testing.T) {
	t.Run("unset", func(t *testing.T) {
		tun := newTunnel("wg0", Options{})
		tun.usePaths(&config.Interface{})
		if s := tun.schedule(); s.after != DefaultReresolveAfter || s.max != DefaultReresolveMax {
			t.Errorf("schedule %+v, want the defaults %v and %v", s, DefaultReresolveAfter, DefaultReresolveMax)
		}
		if tun.opts.PathMTUProbe != 0 {
			t.Errorf("PathMTUProbe %v, want 0 (the engine's default, %v)", tun.opts.PathMTUProbe, tunnel.DefaultPathMTUProbe)
		}
	})
	t.Run("set", func(t *testing.T) {
		tun := newTunnel("wg0", Options{ReresolveAfter: time.Second, PathMTUProbe: time.Second})
		tun.usePaths(&config.Interface{PathMTUProbe: -1, ReresolveAfter: 3 * time.Minute, ReresolveMax: 2 * time.Minute})
		if s := tun.schedule(); s.after != 3*time.Minute || s.max != 2*time.Minute {
			t.Errorf("schedule %+v, want 3m and 2m from the config", s)
		}
		if tun.opts.PathMTUProbe != -1 {
			t.Errorf("PathMTUProbe %v, want -1 (off) from the config", tun.opts.PathMTUProbe)
		}
	})
}
