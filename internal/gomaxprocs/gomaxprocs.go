// Package gomaxprocs sets how many threads may run Go code at once
// (GOMAXPROCS) by what the process's own CPU use shows it needs.
//
// The data path runs to completion: each pipeline has a goroutine per
// direction. When a pipeline's work fits in one core, a second P makes
// the Go scheduler wake a second thread, often on another core, for each
// small batch of the quiet direction (a TCP flow's ACKs), where with one P
// that direction waits until the busy one parks and is then handled in one
// batch on the same thread. On the 2-core bench machine one P moved 15-25 %
// more single-stream TCP at 10-15 % less CPU per byte, and nothing measured
// worse. A process whose work does not fit needs every core, so the
// Governor keeps Low Ps (one per pipeline and crypto helper) while the
// process uses less than that many cores, and gives it High (the cores)
// as soon as it uses nearly all of them.
package gomaxprocs

import (
	"context"
	"log/slog"
	"time"
)

// Defaults of a Governor's thresholds.
const (
	DefaultInterval = time.Second
	// upShare: at Low Ps, a process busy this share of Low cores for
	// upWindows windows in a row gets High Ps.
	upShare   = 0.9
	upWindows = 2
	// downShare: at High Ps, a process busy at most this share of Low
	// cores for downWindows windows in a row goes back to Low. Below
	// upShare, and over more windows, so that it does not swing: the same
	// work costs more CPU at High Ps than at Low.
	downShare   = 0.75
	downWindows = 5
)

// Governor moves GOMAXPROCS between Low and High by the process's CPU use.
type Governor struct {
	Low, High int
	// Interval is the window over which CPU use is measured; 0 means
	// DefaultInterval.
	Interval time.Duration
	// CPU returns the CPU time the process has used so far (user and
	// system, all threads).
	CPU func() (time.Duration, error)
	// Set sets GOMAXPROCS (runtime.GOMAXPROCS).
	Set func(n int)
	Log *slog.Logger // nil: no log

	cur        int
	up, down   int // windows in a row past the up or down threshold
	lastCPU    time.Duration
	lastWindow time.Time
}

// Run sets Low and then adjusts every Interval until ctx ends. It does
// nothing when High is not above Low.
func (g *Governor) Run(ctx context.Context) {
	if g.High <= g.Low || g.Low < 1 {
		return
	}
	interval := g.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	g.cur = g.Low
	g.Set(g.cur)
	g.lastCPU, _ = g.CPU()
	g.lastWindow = time.Now()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			cpu, err := g.CPU()
			if err != nil {
				continue
			}
			busy := (cpu - g.lastCPU).Seconds() / now.Sub(g.lastWindow).Seconds()
			g.lastCPU, g.lastWindow = cpu, now
			if n, changed := g.Observe(busy); changed {
				g.Set(n)
				if g.Log != nil {
					g.Log.Debug("GOMAXPROCS changed", "gomaxprocs", n, "busy_cores", busy)
				}
			}
		}
	}
}

// Observe takes the cores the process kept busy over the last window and
// returns the Ps it should have, and whether that changed.
func (g *Governor) Observe(busy float64) (int, bool) {
	if g.cur == 0 {
		g.cur = g.Low
	}
	low := float64(g.Low)
	switch g.cur {
	case g.Low:
		if busy < upShare*low {
			g.up = 0
			return g.cur, false
		}
		if g.up++; g.up < upWindows {
			return g.cur, false
		}
		g.up, g.cur = 0, g.High
	default:
		if busy > downShare*low {
			g.down = 0
			return g.cur, false
		}
		if g.down++; g.down < downWindows {
			return g.cur, false
		}
		g.down, g.cur = 0, g.Low
	}
	return g.cur, true
}
