package crypto

import "sync"

// Replay window geometry (RFC 6479; the kernel's noise_replay_counter with
// 64-bit words on every architecture).
const (
	replayWordBits   = 64
	replayRingBits   = 8192 // bits in the ring
	replayRingWords  = replayRingBits / replayWordBits
	ReplayWindowSize = replayRingBits - replayWordBits // 8128 counters behind the newest
)

// ReplayWindow rejects data counters already seen or too old: an 8192-bit
// ring of which 8128 bits are a sliding window behind the highest counter
// accepted (RFC 6479). The zero value is an empty window. It is safe for
// concurrent use.
type ReplayWindow struct {
	mu sync.Mutex // guards the fields below
	// next is the highest counter accepted plus one; 0 while empty. The +1
	// lets counter 0 be told apart from the empty state, as in the kernel.
	next uint64
	ring [replayRingWords]uint64
}

// Accept reports whether counter is new and inside the window, and if so
// records it. Counters at or past RejectAfterMessages are never accepted.
// Call it only after the packet authenticated.
func (w *ReplayWindow) Accept(counter uint64) bool {
	if counter >= RejectAfterMessages {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acceptLocked(counter)
}

// AcceptBatch is Accept for each counters[i] whose ok[i] is true, in order
// and under one acquisition of the lock: ok[i] becomes Accept(counters[i]).
// Entries with ok[i] false are skipped and stay false. ok must be at least
// as long as counters.
func (w *ReplayWindow) AcceptBatch(counters []uint64, ok []bool) {
	ok = ok[:len(counters)]
	w.mu.Lock()
	for i, c := range counters {
		if ok[i] {
			ok[i] = c < RejectAfterMessages && w.acceptLocked(c)
		}
	}
	w.mu.Unlock()
}

// acceptLocked is Accept for a counter below RejectAfterMessages; w.mu
// must be held.
func (w *ReplayWindow) acceptLocked(counter uint64) bool {
	c := counter + 1
	if c+ReplayWindowSize < w.next {
		return false // too old
	}
	word := c / replayWordBits
	if c > w.next {
		// Move the window forward, clearing the words it passes (at most
		// the whole ring).
		cur := w.next / replayWordBits
		top := min(word-cur, replayRingWords)
		for i := uint64(1); i <= top; i++ {
			w.ring[(cur+i)%replayRingWords] = 0
		}
		w.next = c
	}
	bit := uint64(1) << (c % replayWordBits)
	idx := word % replayRingWords
	old := w.ring[idx]
	w.ring[idx] = old | bit
	return old&bit == 0
}

// Reset empties the window.
func (w *ReplayWindow) Reset() {
	w.mu.Lock()
	w.next = 0
	clear(w.ring[:])
	w.mu.Unlock()
}
