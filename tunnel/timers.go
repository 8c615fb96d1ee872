package tunnel

// The timers of whitepaper section 6 and RELIABILITY "Timers", after
// wireguard-go's timers.go, as deadlines on each peer:
//
//  1. Every event (data sent, data received, handshake initiated, ...)
//     arms or disarms deadlines under peer.mu.
//  2. Engine.Tick, called every TickInterval by timerLoop or by a test,
//     collects the expired deadlines of each peer under peer.handshake and
//     peer.mu (a give-up or key expiry clears the peer's handshakes) and
//     clears them.
//  3. With the lock released it performs the actions: send a keepalive,
//     send an initiation, give up, wipe keys.
//
// All times are Clock.Now values, so a fake clock drives everything.

import (
	"net/netip"
	"time"
)

// deadline is one timer of a peer; the zero value is disarmed.
type deadline struct {
	at  time.Duration
	set bool
}

func (d *deadline) arm(at time.Duration) { d.at, d.set = at, true }
func (d *deadline) disarm()              { d.set = false }

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
}

// timer events; p.mu must be held for each.

func (p *peer) timersDataSentLocked(now time.Duration) {
	if !p.timers.newHandshake.set {
		p.timers.newHandshake.arm(now + KeepaliveTimeout + RekeyTimeout + p.e.jitterDelay())
	}
}

func (p *peer) timersDataReceivedLocked(now time.Duration) {
	if !p.timers.sendKeepalive.set {
		p.timers.sendKeepalive.arm(now + KeepaliveTimeout)
	} else {
		p.timers.needAnotherKeepalive = true
	}
}

func (p *peer) timersAnySentLocked() { p.timers.sendKeepalive.disarm() }

func (p *peer) timersAnyReceivedLocked() { p.timers.newHandshake.disarm() }

func (p *peer) timersHandshakeInitiatedLocked(now time.Duration) {
	p.timers.retransmitHandshake.arm(now + RekeyTimeout + p.e.jitterDelay())
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
}

func (p *peer) timersSessionDerivedLocked(now time.Duration) {
	p.timers.zeroKeyMaterial.arm(now + ZeroKeyMaterialTime)
}

func (p *peer) timersTraversalLocked(now time.Duration) {
	if p.keepalive > 0 {
		p.timers.persistentKeepalive.arm(now + p.keepalive)
	}
}

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
				t.zeroKeyMaterial.arm(now + ZeroKeyMaterialTime)
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
			t.sendKeepalive.arm(now + KeepaliveTimeout)
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
// goroutine calls it every TickInterval; with a negative TickInterval the
// caller does (tests on a fake clock).
func (e *Engine) Tick() {
	if !e.up.Load() {
		return
	}
	now := e.clock.Now()
	e.limiter.collect(now)
	e.cookieLimiter.collect(now)
	for _, p := range e.peerList() {
		p.handshake.Lock()
		p.mu.Lock()
		a := p.expireLocked(now)
		if a&actZeroKeys != 0 {
			p.wipeLocked()
		}
		ev := p.logEventsLocked()
		p.mu.Unlock()
		p.handshake.Unlock()
		if ev.any() {
			e.logPeerEvents(p, ev, now)
		}
		if a == 0 {
			continue
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
}

// timerLoop drives Tick until Close.
func (e *Engine) timerLoop() {
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
