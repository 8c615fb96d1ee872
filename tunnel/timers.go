package tunnel

// The timers of whitepaper section 6 and RELIABILITY "Timers", after
// wireguard-go's timers.go, as deadlines on each peer:
//
//  1. Every event (data sent, data received, handshake initiated, ...)
//     arms or disarms deadlines under peer.mu.
//  2. Arming a deadline earlier than the peer's entry in the engine's
//     timer heap (timerQueue) pushes a new entry; a later one, the common
//     case on the data path, costs a comparison. Disarming leaves the entry.
//     So the heap holds, for every peer with an armed deadline, an entry
//     no later than that deadline, and a peer without one costs nothing.
//  3. Engine.Tick pops the due entries. An entry that is no longer its
//     peer's (a newer, earlier one replaced it) is skipped; otherwise Tick
//     collects the peer's expired deadlines under peer.handshake and
//     peer.mu (a give-up or key expiry clears the peer's handshakes),
//     clears them and pushes the peer's next deadline, if any.
//  4. With the locks released it performs the actions: send a keepalive,
//     send an initiation, give up, wipe keys.
//
// timerLoop sleeps until the earliest entry is due (woken when an earlier
// one is pushed), at most once per TickInterval, so an idle engine does not
// wake at all. All times are Clock.Now values, so a fake clock drives
// everything.

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// deadline is one timer of a peer; the zero value is disarmed. Arm it with
// peer.armLocked, which keeps the timer heap in step.
type deadline struct {
	at  time.Duration
	set bool
}

func (d *deadline) disarm() { d.set = false }

// expired reports whether d is armed and due at now, and disarms it if so.
func (d *deadline) expired(now time.Duration) bool {
	if !d.set || now < d.at {
		return false
	}
	d.set = false
	return true
}

// peerTimers is guarded by peer.mu.
type peerTimers struct {
	retransmitHandshake  deadline
	sendKeepalive        deadline
	newHandshake         deadline
	zeroKeyMaterial      deadline
	persistentKeepalive  deadline
	needAnotherKeepalive bool
	attempts             int           // retransmissions of the current handshake
	lastInitiation       time.Duration // Clock.Now of the last initiation sent
	initiated            bool          // lastInitiation is valid
	lastMinuteHandshake  bool          // the receive-side rekey at 165 s happened
	// logDue says Tick has something to log about the peer (a confirmed
	// responder handshake, a changed endpoint): the peer is queued at 0.
	logDue bool
	// queued says the timer heap holds an entry for the peer at queuedAt,
	// no later than any armed deadline; other entries of the peer are stale.
	queued   bool
	queuedAt time.Duration
	// rng is the peer's jitter generator (splitmix64), seeded from the
	// engine's on first use, so that arming a timer takes no shared lock.
	rng uint64
}

// armLocked arms d, a deadline of p.timers, at at. p.mu must be held.
func (p *peer) armLocked(d *deadline, at time.Duration) {
	d.at, d.set = at, true
	p.queueLocked(at)
}

// queueLocked makes sure the timer heap visits p by at: it pushes an entry
// only if p has none that early, so that re-arming a deadline later, as
// every packet does, takes no shared lock. p.mu must be held.
func (p *peer) queueLocked(at time.Duration) {
	t := &p.timers
	if t.queued && t.queuedAt <= at {
		return
	}
	t.queued, t.queuedAt = true, at
	p.e.timerq.push(p, at)
}

// requeueLocked queues p for its earliest armed deadline, if any, after
// Tick visited it. p.mu must be held.
func (p *peer) requeueLocked() {
	t := &p.timers
	at, ok := time.Duration(0), t.logDue
	for _, d := range [...]*deadline{&t.retransmitHandshake, &t.sendKeepalive, &t.newHandshake, &t.zeroKeyMaterial, &t.persistentKeepalive} {
		if d.set && (!ok || d.at < at) {
			at, ok = d.at, true
		}
	}
	if ok {
		p.queueLocked(at)
	}
}

// jitterLocked returns a random duration in [0, RekeyTimeoutJitter) in
// whole milliseconds. Jitter needs no secrecy. p.mu must be held.
func (p *peer) jitterLocked() time.Duration {
	t := &p.timers
	if t.rng == 0 {
		t.rng = p.e.jitterSeed()
	}
	t.rng += 0x9e3779b97f4a7c15
	z := t.rng
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	z ^= z >> 31
	return time.Duration(z%uint64(RekeyTimeoutJitter/time.Millisecond)) * time.Millisecond
}

// jitterSeed returns a seed for a peer's jitter generator, from the
// generator the engine seeded once from the injected source (tests are
// deterministic).
func (e *Engine) jitterSeed() uint64 {
	e.jitter.Lock()
	defer e.jitter.Unlock()
	return e.jitter.r.Uint64() | 1
}

// timer events; p.mu must be held for each.

func (p *peer) timersDataSentLocked(now time.Duration) {
	if !p.timers.newHandshake.set {
		p.armLocked(&p.timers.newHandshake, now+KeepaliveTimeout+RekeyTimeout+p.jitterLocked())
	}
}

func (p *peer) timersDataReceivedLocked(now time.Duration) {
	if !p.timers.sendKeepalive.set {
		p.armLocked(&p.timers.sendKeepalive, now+KeepaliveTimeout)
	} else {
		p.timers.needAnotherKeepalive = true
	}
}

func (p *peer) timersAnySentLocked() { p.timers.sendKeepalive.disarm() }

// timersAnyReceivedLocked follows every authenticated packet, after the
// receive path updated p.endpoint: a changed endpoint queues p for Tick to
// log the roam.
func (p *peer) timersAnyReceivedLocked() {
	p.timers.newHandshake.disarm()
	if p.endpoint != p.loggedEndpoint {
		p.logDueLocked()
	}
}

// logDueLocked queues p for Tick to log its events at once. p.mu must be
// held.
func (p *peer) logDueLocked() {
	if !p.timers.logDue {
		p.timers.logDue = true
		p.queueLocked(0)
	}
}

func (p *peer) timersHandshakeInitiatedLocked(now time.Duration) {
	p.armLocked(&p.timers.retransmitHandshake, now+RekeyTimeout+p.jitterLocked())
}

func (p *peer) timersHandshakeCompleteLocked() {
	p.timers.retransmitHandshake.disarm()
	p.timers.attempts = 0
	p.timers.lastMinuteHandshake = false
	p.lastHandshake = p.e.clock.Wall()
	p.handshakes.Add(1)
	// The initiator's completion is logged by consumeResponse, which
	// clears this; a responder's, confirmed on the receive path, by Tick.
	p.responderDone = true
	p.logDueLocked()
}

func (p *peer) timersSessionDerivedLocked(now time.Duration) {
	p.armLocked(&p.timers.zeroKeyMaterial, now+ZeroKeyMaterialTime)
}

func (p *peer) timersTraversalLocked(now time.Duration) {
	if p.keepalive > 0 {
		p.armLocked(&p.timers.persistentKeepalive, now+p.keepalive)
	}
}

// timersStopLocked disarms everything. An entry p has in the heap becomes
// stale and is skipped when due.
func (p *peer) timersStopLocked() { p.timers = peerTimers{} }

// timerAction is what an expired deadline asks for.
type timerAction uint8

const (
	actRetransmit timerAction = 1 << iota
	actGiveUp
	actKeepalive
	actNewHandshake
	actZeroKeys
	actPersistentKeepalive
)

// expireLocked collects the actions due at now. p.handshake and p.mu must
// be held.
func (p *peer) expireLocked(now time.Duration) timerAction {
	var a timerAction
	t := &p.timers
	if t.retransmitHandshake.expired(now) {
		if t.attempts > maxRetransmits {
			// Give up (L16): no more keepalives, staged packets purged and
			// the key material wiped 540 s from now unless already due.
			a |= actGiveUp
			t.sendKeepalive.disarm()
			p.purgeStagedLocked()
			p.abandonInitiationLocked() // P10: a late response finds nothing
			if !t.zeroKeyMaterial.set {
				p.armLocked(&t.zeroKeyMaterial, now+ZeroKeyMaterialTime)
			}
		} else {
			t.attempts++
			a |= actRetransmit
		}
	}
	if t.sendKeepalive.expired(now) {
		a |= actKeepalive
		if t.needAnotherKeepalive {
			t.needAnotherKeepalive = false
			p.armLocked(&t.sendKeepalive, now+KeepaliveTimeout)
		}
	}
	if t.newHandshake.expired(now) {
		a |= actNewHandshake
	}
	if t.zeroKeyMaterial.expired(now) {
		a |= actZeroKeys
	}
	if t.persistentKeepalive.expired(now) && p.keepalive > 0 {
		a |= actPersistentKeepalive
	}
	return a
}

// Tick runs every timer that is due at the clock's current time. The timer
// goroutine calls it when the earliest deadline is due; with a negative
// TickInterval the caller does (tests on a fake clock). Ticks are
// serialised.
func (e *Engine) Tick() {
	now := e.clock.Now()
	e.limiter.collect(now)
	e.cookieLimiter.collect(now)
	q := &e.timerq
	q.tick.Lock()
	defer q.tick.Unlock()
	q.ticks++
	q.due = q.popDue(now, q.due[:0])
	for _, d := range q.due {
		e.runTimers(d.p, d.at, now)
	}
	clear(q.due) // keep no removed peer alive
}

// runTimers runs p's timers due at now, Tick having popped p's entry at
// at.
func (e *Engine) runTimers(p *peer, at, now time.Duration) {
	p.handshake.Lock()
	p.mu.Lock()
	if !p.timers.queued || p.timers.queuedAt != at || p.removed {
		// Stale: p was queued again earlier, or stopped, since.
		p.mu.Unlock()
		p.handshake.Unlock()
		return
	}
	p.timers.queued = false
	p.timers.logDue = false
	a := p.expireLocked(now)
	if a&actZeroKeys != 0 {
		p.wipeLocked()
	}
	ev := p.logEventsLocked()
	p.requeueLocked()
	p.mu.Unlock()
	p.handshake.Unlock()
	if ev.any() {
		e.logPeerEvents(p, ev, now)
	}
	if a == 0 {
		return
	}
	if a&actRetransmit != 0 {
		p.sendInitiation(true)
	}
	if a&actNewHandshake != 0 {
		p.sendInitiation(false)
	}
	if a&(actKeepalive|actPersistentKeepalive) != 0 {
		p.keepalives.Add(1)
		p.sendKeepalive()
	}
	if a&actGiveUp != 0 && p.failLog.allow(now) {
		e.log.Info("handshake failed: no response, giving up until there is traffic",
			"peer", shortKey(p.publicKey), "endpoint", p.currentEndpoint(), "attempts", maxRetransmits+2)
	}
}

// maxTimerSleep bounds the timer goroutine's sleep while a deadline is
// armed. Go's timers run on the monotonic clock, which stops during a
// suspend while Clock.Now (boot time) does not: after a resume, a deadline
// that fell due in the suspend runs within this (L11). With no deadline
// armed the goroutine sleeps until one is.
const maxTimerSleep = time.Second

// timerLoop runs Tick when a deadline is due, until Close: at most once per
// TickInterval, and not at all while no deadline is armed. It also collects
// the handshake rate limiters while they hold sources and logs the batch
// sizes at debug level. A clock other than the system clock may jump at
// its owner's will (tests), so it is polled every TickInterval instead.
func (e *Engine) timerLoop() {
	if _, ok := e.clock.(systemClock); !ok {
		e.pollTimers()
		return
	}
	sleep := time.NewTimer(time.Hour)
	sleep.Stop() // armed only while something is due
	var batches batchLog
	nextStats := e.clock.Now() + batchStatsEvery
	lastRun := e.clock.Now() - e.tickEvery
	for {
		now := e.clock.Now()
		next, ok := e.timerq.earliest()
		if ok {
			next = min(next, now+maxTimerSleep)
		}
		if e.limiter.len() > 0 || e.cookieLimiter.len() > 0 {
			next, ok = minTime(next, ok, now+rateLimitIdle)
		}
		debug := e.log.Enabled(context.Background(), slog.LevelDebug)
		if debug {
			next, ok = minTime(next, ok, nextStats)
		}
		if ok {
			next = max(next, lastRun+e.tickEvery)
			if next <= now {
				e.Tick()
				lastRun = now
				if debug && now >= nextStats {
					e.logBatchStats(&batches)
					nextStats = now + batchStatsEvery
				}
				continue
			}
			sleep.Reset(next - now)
		}
		select {
		case <-e.done:
			return
		case <-sleep.C:
		case <-e.timerq.wake:
		}
		sleep.Stop()
	}
}

func minTime(t time.Duration, ok bool, u time.Duration) (time.Duration, bool) {
	if !ok {
		return u, true
	}
	return min(t, u), true
}

// pollTimers runs Tick every TickInterval until Close (a clock other than
// the system clock).
func (e *Engine) pollTimers() {
	t := time.NewTicker(e.tickEvery)
	defer t.Stop()
	var batches batchLog
	next := e.clock.Now() + batchStatsEvery
	for {
		select {
		case <-e.done:
			return
		case <-t.C:
			e.Tick()
			if now := e.clock.Now(); now >= next {
				e.logBatchStats(&batches)
				next = now + batchStatsEvery
			}
		}
	}
}

// timerQueue is the engine's heap of peer deadlines (the peers' queued
// entries, step 2 above).
type timerQueue struct {
	mu   sync.Mutex // a leaf; guards heap
	heap []timerEntry
	// wake tells timerLoop that an entry became the earliest (capacity 1).
	wake chan struct{}

	tick  sync.Mutex   // serialises Tick; guards due and ticks
	due   []timerEntry // Tick's popped entries, kept for reuse
	ticks uint64       // Tick calls, for tests
}

// timerEntry asks Tick to visit p at at.
type timerEntry struct {
	at time.Duration
	p  *peer
}

// push adds an entry and wakes timerLoop if it is the earliest.
func (q *timerQueue) push(p *peer, at time.Duration) {
	q.mu.Lock()
	q.heap = append(q.heap, timerEntry{at: at, p: p})
	h := q.heap
	i := len(h) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if h[parent].at <= at {
			break
		}
		h[i], h[parent] = h[parent], h[i]
		i = parent
	}
	q.mu.Unlock()
	if i == 0 {
		q.poke()
	}
}

// poke wakes timerLoop to look at the heap and the rate limiters again.
func (q *timerQueue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// earliest returns the time of the earliest entry, if any.
func (q *timerQueue) earliest() (time.Duration, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.heap) == 0 {
		return 0, false
	}
	return q.heap[0].at, true
}

// popDue appends the entries due at now to dst, removing them.
func (q *timerQueue) popDue(now time.Duration, dst []timerEntry) []timerEntry {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.heap) > 0 && q.heap[0].at <= now {
		dst = append(dst, q.heap[0])
		h := q.heap
		n := len(h) - 1
		h[0] = h[n]
		h[n] = timerEntry{}
		h = h[:n]
		for i := 0; ; {
			c := 2*i + 1
			if c >= n {
				break
			}
			if c+1 < n && h[c+1].at < h[c].at {
				c++
			}
			if h[i].at <= h[c].at {
				break
			}
			h[i], h[c] = h[c], h[i]
			i = c
		}
		q.heap = h
	}
	return dst
}

// len returns the number of entries, stale ones included.
func (q *timerQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.heap)
}

// initTimers prepares the timer heap; newEngine calls it. The rate
// limiters wake timerLoop when they gain a first source, to collect it.
func (e *Engine) initTimers() {
	e.timerq.wake = make(chan struct{}, 1)
	e.limiter.onFirst = e.timerq.poke
	e.cookieLimiter.onFirst = e.timerq.poke
}

// peerEvents is what Tick found to log about a peer, collected under
// peer.mu and logged after it is released.
type peerEvents struct {
	responderDone bool
	roamedFrom    netip.AddrPort // valid: the endpoint changed from this
	endpoint      netip.AddrPort
}

func (ev peerEvents) any() bool { return ev.responderDone || ev.roamedFrom.IsValid() }

// logEventsLocked collects and clears what Tick should log about p: a
// confirmed responder handshake, and an endpoint that changed since the
// last Tick (roaming; a first endpoint, learnt from the peer, is not one).
// p.mu must be held.
func (p *peer) logEventsLocked() peerEvents {
	ev := peerEvents{responderDone: p.responderDone, endpoint: p.endpoint}
	p.responderDone = false
	if p.endpoint != p.loggedEndpoint {
		if p.loggedEndpoint.IsValid() && p.endpoint.IsValid() {
			ev.roamedFrom = p.loggedEndpoint
		}
		p.loggedEndpoint = p.endpoint
	}
	return ev
}

// logPeerEvents logs ev at Info: a completed handshake always, a roam at
// most once per logEvery per peer. No lock is held.
func (e *Engine) logPeerEvents(p *peer, ev peerEvents, now time.Duration) {
	if ev.responderDone {
		e.log.Info("handshake complete", "peer", shortKey(p.publicKey), "endpoint", ev.endpoint, "role", "responder")
	}
	if ev.roamedFrom.IsValid() && p.roamLog.allow(now) {
		e.log.Info("peer endpoint changed", "peer", shortKey(p.publicKey), "from", ev.roamedFrom, "endpoint", ev.endpoint)
	}
}

// currentEndpoint returns p's endpoint.
func (p *peer) currentEndpoint() netip.AddrPort {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.endpoint
}
