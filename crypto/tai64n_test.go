package crypto

import (
	"testing"
	"time"
)

// TestTAI64N is P15: stamps 10 ms apart compare "not after", 20 ms apart
// "after", because the nanoseconds are whitened to 2^24 ns.
func TestTAI64N(t *testing.T) {
	base := time.Unix(1_700_000_000, 0) // on a 2^24 ns boundary
	tests := []struct {
		name  string
		a, b  time.Time
		after bool // TAI64N(b).After(TAI64N(a))
	}{
		{"same", base, base, false},
		{"10 ms later", base, base.Add(10 * time.Millisecond), false},
		{"16 ms later", base, base.Add(16 * time.Millisecond), false},
		{"20 ms later", base, base.Add(20 * time.Millisecond), true},
		{"1 s later", base, base.Add(time.Second), true},
		{"earlier", base, base.Add(-time.Second), false},
		{"next second, fewer ns", base.Add(900 * time.Millisecond), base.Add(1100 * time.Millisecond), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := TAI64N(tc.b).After(TAI64N(tc.a)); got != tc.after {
				t.Errorf("TAI64N(%v).After(TAI64N(%v)) = %v, want %v", tc.b, tc.a, got, tc.after)
			}
		})
	}
	// Whitening keeps only multiples of 2^24 ns, and Time round-trips
	// seconds.
	ts := TAI64N(base.Add(123456789))
	if got := ts.Time(); got.Unix() != base.Unix() || got.Nanosecond()%(1<<24) != 0 || got.Nanosecond() > 123456789 {
		t.Errorf("TAI64N(...).Time() = %v", got)
	}
	// The wire layout is the TAI64 label (2^62 + 10 + seconds), big-endian.
	ts = TAI64N(time.Unix(0, 0))
	if want := (Timestamp{0x40, 0, 0, 0, 0, 0, 0, 0x0a}); ts != want {
		t.Errorf("TAI64N(epoch) = %x, want %x", ts, want)
	}
}
