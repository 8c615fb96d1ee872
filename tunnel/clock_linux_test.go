package tunnel

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSystemClock checks that the production clock tracks boot time and
// never goes back.
func TestSystemClock(t *testing.T) {
	c := SystemClock()
	prev := c.Now()
	for range 1000 {
		now := c.Now()
		if now < prev {
			t.Fatalf("clock went back from %v to %v", prev, now)
		}
		prev = now
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		t.Skip("no CLOCK_BOOTTIME:", err)
	}
	if d := time.Duration(ts.Nano()) - c.Now(); d < -time.Second || d > time.Second {
		t.Errorf("clock differs from boot time by %v", d)
	}
}

// BenchmarkSystemClock shows the cost of Now on the packet path.
func BenchmarkSystemClock(b *testing.B) {
	c := SystemClock()
	for b.Loop() {
		c.Now()
	}
}
