package tunnel

import "time"

// Clock is the one time source of the engine: every timer and expiry reads
// it. Implementations must be safe for concurrent use.
type Clock interface {
	// Now returns the time elapsed since a fixed origin, including time the
	// system spent suspended (CLOCK_BOOTTIME on Linux). It never goes back.
	Now() time.Duration
	// Wall returns the wall-clock time; it is used only for the TAI64N
	// timestamps of handshake initiations.
	Wall() time.Time
}

// SystemClock returns the production clock: boot time (counting suspend)
// on Linux, the monotonic clock elsewhere.
func SystemClock() Clock { return systemClock{} }

type systemClock struct{}

func (systemClock) Wall() time.Time { return time.Now() }

var processStart = time.Now()

// monotonicNow is the fallback when boot time is unavailable.
func monotonicNow() time.Duration { return time.Since(processStart) }
