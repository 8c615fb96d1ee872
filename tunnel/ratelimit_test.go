package tunnel

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// TestRateLimiter covers D1 and D2 with a fake clock: 5 allowed, the 6th
// denied; +50 ms one more; +100 ms two more; another source is allowed
// throughout; IPv6 sources share a bucket per /64.
func TestRateLimiter(t *testing.T) {
	for _, tc := range []struct {
		name, src, same, other string // same shares src's bucket
	}{
		{"IPv4", "198.18.1.1", "198.18.1.1", "198.18.1.2"},
		{"IPv6", "fd00:7761::1", "fd00:7761::ffff:1", "fd00:7761:0:1::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r rateLimiter
			now := time.Hour
			src, other, same := netip.MustParseAddr(tc.src), netip.MustParseAddr(tc.other), netip.MustParseAddr(tc.same)
			var got []bool
			step := func(d time.Duration, n int) {
				now += d
				for i := range n {
					a := src
					if i%2 == 1 {
						a = same
					}
					got = append(got, r.allow(a, now))
				}
				if !r.allow(other, now) {
					t.Errorf("other source denied at %v", now)
				}
			}
			step(0, 6)
			step(50*time.Millisecond, 2)
			step(100*time.Millisecond, 3)
			want := []bool{true, true, true, true, true, false, true, false, true, true, false}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("verdicts %v, want %v", got, want)
			}
		})
	}
}

// TestRateLimiterBounded covers D3: 65,536 sources fill the table; one more
// is denied; idle entries are collected after 1 s.
func TestRateLimiterBounded(t *testing.T) {
	var r rateLimiter
	now := time.Hour
	for i := range rateLimitMaxKeys {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if !r.allow(a, now) {
			t.Fatalf("source %d denied", i)
		}
	}
	if r.allow(netip.MustParseAddr("198.18.0.1"), now) {
		t.Error("source past the cap allowed")
	}
	r.collect(now + rateLimitIdle)
	if n := r.len(); n != 0 {
		t.Errorf("%d entries after collection", n)
	}
	if !r.allow(netip.MustParseAddr("198.18.0.1"), now+rateLimitIdle) {
		t.Error("new source denied after collection")
	}
}
