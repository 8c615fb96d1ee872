// Package mactable owns the MAC table of warren's layer 2 mode: which
// Ethernet address was last seen behind which port (the local TAP or one
// peer), with ageing on an injected clock and bounds on the number of
// entries in total and per port.
//
// The table allocates all its entries when it is made: learning, moving and
// expiring an address never grows a map or allocates, so a flood of random
// source addresses leaves memory flat (the table stays at its bound and the
// learning fails with Full).
package mactable

import (
	"fmt"
	"sync"
	"time"
)

// MAC is an Ethernet address.
type MAC [6]byte

// IsGroup reports whether m is a multicast or broadcast address (the I/G
// bit of the first octet, IEEE 802-2014 8.2.2). Group addresses are never
// learned.
func (m MAC) IsGroup() bool { return m[0]&1 != 0 }

// String returns m as six colon-separated lower-case hex octets.
func (m MAC) String() string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}

// Defaults of a Table.
const (
	DefaultAgeing     = 300 * time.Second // an entry unseen this long is gone (Linux bridge's default)
	DefaultMaxEntries = 8192              // entries in total
	DefaultMaxPerPort = 1024              // entries of one port
)

// Result says what Learn did.
type Result uint8

// Results of Learn.
const (
	Refreshed Result = iota // already bound to that port: its age restarts
	Learned                 // a new entry
	Moved                   // the address moved from another port (a migrated VM)
	Full                    // not learned: the table or the port is at its bound
	Group                   // not learned: a group address
)

var resultNames = [...]string{"refreshed", "learned", "moved", "full", "group"}

// String returns the result as a word.
func (r Result) String() string {
	if int(r) < len(resultNames) {
		return resultNames[r]
	}
	return "Result(" + fmt.Sprint(int(r)) + ")"
}

// entry is one binding; entries live in Table.slab and are linked through
// free when unused.
type entry[P comparable] struct {
	mac    MAC
	port   P
	seen   time.Duration
	born   time.Duration
	frames uint64
	free   int32 // next free entry, -1 at the end
}

// Table maps MACs to ports of type P, where the zero P is the local side.
// Its methods are safe for concurrent use; each takes the table's mutex
// briefly (a leaf lock) and none allocates once the ports are known.
type Table[P comparable] struct {
	ageing time.Duration
	max    int
	perMax int

	mu      sync.Mutex // guards the fields below
	index   map[MAC]int32
	slab    []entry[P]
	free    int32
	perPort map[P]int
}

// New returns a table whose entries expire after ageing (0: DefaultAgeing)
// and which holds at most maxEntries entries (0: DefaultMaxEntries), at
// most maxPerPort of one port (0: DefaultMaxPerPort).
func New[P comparable](ageing time.Duration, maxEntries, maxPerPort int) *Table[P] {
	if ageing <= 0 {
		ageing = DefaultAgeing
	}
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	if maxPerPort <= 0 {
		maxPerPort = DefaultMaxPerPort
	}
	t := &Table[P]{
		ageing:  ageing,
		max:     maxEntries,
		perMax:  maxPerPort,
		index:   make(map[MAC]int32, maxEntries),
		slab:    make([]entry[P], maxEntries),
		perPort: make(map[P]int),
	}
	for i := range t.slab {
		t.slab[i].free = int32(i + 1)
	}
	t.slab[len(t.slab)-1].free = -1
	return t
}

// Ageing returns how long an entry lives unseen.
func (t *Table[P]) Ageing() time.Duration { return t.ageing }

// Learn binds m to port at time now and counts a frame on it. It returns
// what it did and, for Moved, the port m was bound to before.
func (t *Table[P]) Learn(m MAC, port P, now time.Duration) (Result, P) {
	return t.LearnFrames(m, port, now, 1)
}

// LearnFrames is Learn for a run of n frames from m at time now, counted
// at once: what n calls of Learn would do, taking the lock once.
func (t *Table[P]) LearnFrames(m MAC, port P, now time.Duration, n uint64) (Result, P) {
	var zero P
	if m.IsGroup() {
		return Group, zero
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if i, ok := t.index[m]; ok {
		e := &t.slab[i]
		old := e.port
		expired := now-e.seen >= t.ageing
		if old == port {
			if expired {
				e.born, e.frames = now, 0
			}
			e.seen = now
			e.frames += n
			if expired {
				return Learned, zero
			}
			return Refreshed, zero
		}
		if t.perPort[port] >= t.perMax {
			if expired {
				t.removeLocked(i)
			}
			return Full, zero
		}
		t.perPort[old]--
		t.perPort[port]++
		e.port, e.born, e.seen, e.frames = port, now, now, n
		if expired {
			return Learned, zero
		}
		return Moved, old
	}
	if t.perPort[port] >= t.perMax {
		return Full, zero
	}
	if t.free < 0 {
		t.sweepLocked(now)
		if t.free < 0 {
			return Full, zero
		}
	}
	i := t.free
	e := &t.slab[i]
	t.free = e.free
	*e = entry[P]{mac: m, port: port, seen: now, born: now, frames: n, free: -1}
	t.index[m] = i
	t.perPort[port]++
	return Learned, zero
}

// Lookup returns the port m is bound to at time now, counting a frame on
// the entry. A group address, an unknown one or an expired one reports
// false.
func (t *Table[P]) Lookup(m MAC, now time.Duration) (P, bool) {
	return t.LookupFrames(m, now, 1)
}

// LookupFrames is Lookup for a run of n frames to m at time now, counted
// at once.
func (t *Table[P]) LookupFrames(m MAC, now time.Duration, n uint64) (P, bool) {
	var zero P
	if m.IsGroup() {
		return zero, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	i, ok := t.index[m]
	if !ok {
		return zero, false
	}
	e := &t.slab[i]
	if now-e.seen >= t.ageing {
		return zero, false
	}
	e.frames += n
	return e.port, true
}

// CountFrames counts n more frames on m's entry if m is bound to port:
// frames of a run whose Learn or Lookup the caller did once, for its first.
func (t *Table[P]) CountFrames(m MAC, port P, n uint64) {
	if m.IsGroup() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if i, ok := t.index[m]; ok && t.slab[i].port == port {
		t.slab[i].frames += n
	}
}

// Sweep removes the entries expired at now and returns how many.
func (t *Table[P]) Sweep(now time.Duration) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sweepLocked(now)
}

// sweepLocked is Sweep; t.mu must be held.
func (t *Table[P]) sweepLocked(now time.Duration) int {
	n := 0
	for _, i := range t.index {
		if now-t.slab[i].seen >= t.ageing {
			t.removeLocked(i)
			n++
		}
	}
	return n
}

// removeLocked frees entry i; t.mu must be held.
func (t *Table[P]) removeLocked(i int32) {
	e := &t.slab[i]
	delete(t.index, e.mac)
	t.perPort[e.port]-- // kept at 0: a port's key is made once
	*e = entry[P]{free: t.free}
	t.free = i
}

// RemovePort removes every entry of port (a peer that was removed).
func (t *Table[P]) RemovePort(port P) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, i := range t.index {
		if t.slab[i].port == port {
			t.removeLocked(i)
		}
	}
	delete(t.perPort, port)
}

// Remove removes the entry of m, if any, and reports whether there was one.
func (t *Table[P]) Remove(m MAC) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, ok := t.index[m]
	if ok {
		t.removeLocked(i)
	}
	return ok
}

// Len returns the number of entries, expired ones not yet swept included.
func (t *Table[P]) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.index)
}

// Entry is one binding as Entries reports it.
type Entry[P comparable] struct {
	MAC    MAC
	Port   P             // the zero P: local
	Age    time.Duration // since the address was last seen
	Frames uint64        // frames learned from or sent to it since it was bound
}

// Entries returns the live entries at now, in no particular order.
func (t *Table[P]) Entries(now time.Duration) []Entry[P] {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Entry[P], 0, len(t.index))
	for _, i := range t.index {
		e := &t.slab[i]
		if now-e.seen >= t.ageing {
			continue
		}
		out = append(out, Entry[P]{MAC: e.mac, Port: e.port, Age: now - e.seen, Frames: e.frames})
	}
	return out
}
