package tunnel

import (
	"net/netip"
	"sync"
	"time"
)

// Handshake rate limit per source under load (RELIABILITY D1-D3; the
// kernel's ratelimiter.c): a token bucket of 20 handshakes/s with a burst
// of 5 per IPv4 address or IPv6 /64, at most 65,536 sources, idle entries
// collected after 1 s.
const (
	rateLimitPerSecond = 20
	rateLimitBurst     = 5
	rateLimitMaxKeys   = 1 << 16
	rateLimitIdle      = time.Second
	rateLimitCost      = time.Second / rateLimitPerSecond
	rateLimitMaxTokens = rateLimitCost * rateLimitBurst
)

// rateLimiter is safe for concurrent use; the zero value is ready.
type rateLimiter struct {
	// allowWhenFull allows a source the full table cannot hold instead of
	// refusing it. The cookie limiter sets it: a flood from spoofed
	// sources fills the table, and must not lock a real peer out of its
	// cookie; the queue still bounds the work.
	allowWhenFull bool
	// onFirst, if set, is called (without mu) when a source enters the
	// empty table: the engine's timer goroutine, asleep while nothing is
	// due, then wakes to collect it.
	onFirst func()

	mu      sync.Mutex         // guards the fields below
	buckets map[rateKey]bucket // values, not pointers: a new source allocates nothing but map room
	lastGC  time.Duration
}

// rateKey is an IPv4 address or an IPv6 /64, with its family.
type rateKey struct {
	is6  bool
	addr [8]byte
}

type bucket struct {
	tokens time.Duration
	last   time.Duration
}

func rateKeyOf(a netip.Addr) rateKey {
	a = a.Unmap()
	var k rateKey
	if a.Is4() {
		b := a.As4()
		copy(k.addr[:], b[:])
		return k
	}
	b := a.As16()
	k.is6 = true
	copy(k.addr[:], b[:8])
	return k
}

// allow reports whether src may have one more handshake processed at now.
func (r *rateLimiter) allow(src netip.Addr, now time.Duration) bool {
	k := rateKeyOf(src)
	r.mu.Lock()
	b, ok := r.buckets[k]
	if !ok {
		if len(r.buckets) >= rateLimitMaxKeys {
			r.mu.Unlock()
			return r.allowWhenFull
		}
		if r.buckets == nil {
			r.buckets = make(map[rateKey]bucket)
		}
		r.buckets[k] = bucket{tokens: rateLimitMaxTokens - rateLimitCost, last: now}
		first := len(r.buckets) == 1
		r.mu.Unlock()
		if first && r.onFirst != nil {
			r.onFirst()
		}
		return true
	}
	defer r.mu.Unlock()
	if now > b.last {
		b.tokens = min(b.tokens+now-b.last, rateLimitMaxTokens)
		b.last = now
	}
	allowed := b.tokens >= rateLimitCost
	if allowed {
		b.tokens -= rateLimitCost
	}
	r.buckets[k] = b
	return allowed
}

// collect forgets sources idle for rateLimitIdle, at most once a second.
func (r *rateLimiter) collect(now time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now-r.lastGC < rateLimitIdle {
		return
	}
	r.lastGC = now
	for k, b := range r.buckets {
		if now-b.last >= rateLimitIdle {
			delete(r.buckets, k)
		}
	}
}

func (r *rateLimiter) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.buckets)
}
