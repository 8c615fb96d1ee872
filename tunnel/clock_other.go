//go:build !linux

package tunnel

import "time"

// Now reads the monotonic clock; boot time is Linux-only.
func (systemClock) Now() time.Duration { return monotonicNow() }
