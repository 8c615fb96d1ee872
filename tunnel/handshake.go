package tunnel

// The handshake path (DESIGN.md "A packet's way in", step 2):
//
//  1. receiveLoop admits each handshake message (admitHandshake) before it
//     takes a queue slot: a cookie reply must name an index we handed out;
//     an initiation or response must carry a valid mac1 (one BLAKE2s, no
//     X25519), and counts towards the measured load: the X25519 work asked
//     of us per second (loadMeter). Under load (more than 1000 such
//     messages in a second, and for 1 s after, D6) mac2 is checked too. A
//     valid mac2 goes, within its source's rate limit (D1-D3), to its own
//     queue, Engine.handshakesMAC2, which a flood without cookies cannot
//     fill. A message without one goes, within its source's cookie limit,
//     to Engine.handshakes to be answered with a cookie reply (D5).
//     Full queues drop and count (D4).
//  2. handshakeWorker takes one message at a time, Engine.handshakesMAC2
//     first. Under load, a message admitted without a valid mac2 gets a
//     cookie reply and no X25519 work (D5).
//  3. An initiation is consumed by the peer's responder Handshake, answered,
//     and its keypair parked as "next" until the initiator confirms it (P9).
//     A response completes the peer's initiator Handshake; its keypair
//     becomes current and staged packets, or a keepalive, leave at once.
//
// Initiations we send come from sendInitiation, called by the timers and by
// handshakeWorker for the requests the send and receive paths queue on
// Engine.initiations (requestInitiation): those loops never do X25519. It
// allows at most one initiation per RekeyTimeout on the wire (D8).
//
// Each step on a peer's handshakes runs under peer.handshake, and its X25519
// work (CreateInitiation, CreateResponse, ConsumeResponse) with peer.mu
// released: peer.mu is taken before, to check the peer's state, and after,
// to check it again and install the result. So a peer's handshake never
// holds up the data path of other peers (or its own), which takes peer.mu
// for every batch.

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/warrenvpn/warren/crypto"
)

// handshakeWork is one queued handshake message, copied out of the
// receive buffer so that the queue holds no pooled memory.
type handshakeWork struct {
	msg   [crypto.InitiationSize]byte
	n     int
	src   netip.AddrPort
	local netip.Addr // our address src wrote to (RO6)
	mac2  bool       // mac2 was checked at admission and is valid
}

// cryptoTime converts a Clock.Now value to the time.Time the crypto package
// measures ages with.
func cryptoTime(now time.Duration) time.Time { return time.Unix(0, 0).Add(now) }

// identity returns our identity, or nil without a private key.
func (e *Engine) identity() *crypto.Identity { return e.id.Load() }

// admitHandshake checks the handshake message msg from src and hands it to
// the handshake worker, or drops and counts it (step 1 above). It runs on
// the receive loop and costs at most three BLAKE2s and no X25519.
func (e *Engine) admitHandshake(msg []byte, src netip.AddrPort, local netip.Addr, now time.Duration) {
	if crypto.MessageType(msg[0]) == crypto.MessageCookieReply {
		// Only an index we handed out can be answered with a cookie.
		if _, ok := e.indices.lookup(crypto.ReceiverIndex(msg)); !ok {
			e.drops.add(DropHandshakeInvalid, 1)
			return
		}
		e.queueHandshake(e.handshakes, msg, src, local, false)
		return
	}
	id := e.identity()
	if id == nil {
		e.drops.add(DropHandshakeInvalid, 1)
		return
	}
	if !id.CheckMAC1(msg) {
		e.drops.add(DropBadMAC, 1)
		return
	}
	if !e.load.record(now) {
		e.queueHandshake(e.handshakes, msg, src, local, false)
		return
	}
	// An initiator without a cookie sends mac2 as zeros (whitepaper
	// 5.4.4): that needs no BLAKE2s to tell.
	if hasMAC2(msg) && id.CheckMAC2(msg, src, cryptoTime(now)) {
		if !e.limiter.allow(src.Addr(), now) {
			e.drops.add(DropRateLimited, 1)
			return
		}
		e.queueHandshake(e.handshakesMAC2, msg, src, local, true)
		return
	}
	if !e.cookieLimiter.allow(src.Addr(), now) {
		e.drops.add(DropCookieRateLimited, 1)
		return
	}
	e.queueHandshake(e.handshakes, msg, src, local, false)
}

// hasMAC2 reports whether the handshake message msg carries a mac2 other
// than zeros. It is a filter, not a secret: its time may vary.
func hasMAC2(msg []byte) bool {
	for _, b := range msg[len(msg)-16:] { // mac2 is the last 16 bytes
		if b != 0 {
			return true
		}
	}
	return false
}

// queueHandshake copies msg from src to local onto q, or drops it when q
// is full.
func (e *Engine) queueHandshake(q chan handshakeWork, msg []byte, src netip.AddrPort, local netip.Addr, mac2 bool) {
	var w handshakeWork
	w.n = copy(w.msg[:], msg)
	w.src, w.local = src, local
	w.mac2 = mac2
	select {
	case q <- w:
	default:
		e.drops.add(DropHandshakeQueueFull, 1)
	}
}

// handshakeWorker consumes queued handshake messages, those with a valid
// mac2 first, and initiation requests until Close.
func (e *Engine) handshakeWorker() {
	for {
		select {
		case w := <-e.handshakesMAC2:
			e.handleHandshake(&w)
			continue
		default:
		}
		select {
		case <-e.done:
			return
		case w := <-e.handshakesMAC2:
			e.handleHandshake(&w)
		case w := <-e.handshakes:
			e.handleHandshake(&w)
		case p := <-e.initiations:
			p.initiationQueued.Store(false)
			p.sendInitiation(false)
		}
	}
}

// drainHandshakes handles every queued handshake message and initiation
// request without blocking, those with a valid mac2 first (tests that drive
// the engine step by step).
func (e *Engine) drainHandshakes() {
	for {
		select {
		case w := <-e.handshakesMAC2:
			e.handleHandshake(&w)
			continue
		default:
		}
		select {
		case w := <-e.handshakes:
			e.handleHandshake(&w)
		case p := <-e.initiations:
			p.initiationQueued.Store(false)
			p.sendInitiation(false)
		default:
			return
		}
	}
}

// requestInitiation asks handshakeWorker for sendInitiation(false) on p and
// returns at once, so that the send and receive loops never do X25519 or
// wait for another goroutine's. A request already queued for p covers this
// one. With the queue full the request is dropped: the next packet or
// timer asks again.
func (p *peer) requestInitiation() {
	if !p.e.up.Load() || p.initiationQueued.Swap(true) {
		return
	}
	select {
	case p.e.initiations <- p:
	default:
		p.initiationQueued.Store(false)
	}
}

// loadMeter measures the handshake load: the valid-mac1 initiations and
// responses received per second, each of which asks for X25519 work if it
// is answered, whether that work is still pending or done. A measured rate
// does not flicker with the scheduling gaps of a busy machine as a queue's
// length does. Only the receive loop records; the worker reads.
type loadMeter struct {
	window atomic.Int64 // Clock.Now at which the current 1 s window began
	count  atomic.Int64 // messages recorded in the window
	until  atomic.Int64 // Clock.Now until which the engine is under load
}

// record counts one message at now and reports whether the engine is under
// load: more than underLoadPerSecond messages in the current window, and
// for underLoadAfterTime after (D6).
func (m *loadMeter) record(now time.Duration) bool {
	if now-time.Duration(m.window.Load()) >= time.Second || now < time.Duration(m.window.Load()) {
		m.window.Store(int64(now))
		m.count.Store(0)
	}
	if m.count.Add(1) > underLoadPerSecond {
		m.until.Store(int64(now + underLoadAfterTime))
		return true
	}
	return m.isUnderLoad(now)
}

// isUnderLoad reports whether the engine is under load at now.
func (m *loadMeter) isUnderLoad(now time.Duration) bool { return int64(now) < m.until.Load() }

// handleHandshake processes one handshake message admitted by
// admitHandshake.
func (e *Engine) handleHandshake(w *handshakeWork) {
	if !e.up.Load() {
		e.drops.add(DropDown, 1)
		return
	}
	msg := w.msg[:w.n]
	id := e.identity()
	if id == nil {
		e.drops.add(DropHandshakeInvalid, 1)
		return
	}
	now := e.clock.Now()
	switch crypto.MessageType(msg[0]) {
	case crypto.MessageInitiation, crypto.MessageResponse:
		// mac1 was checked at admission, under the identity of then: a
		// new private key since changes the mac1 key.
		if !id.CheckMAC1(msg) {
			e.drops.add(DropBadMAC, 1)
			return
		}
		if !w.mac2 && e.load.isUnderLoad(now) {
			// Admitted without a valid mac2: asked to send a cookie, or
			// admitted before the load was measured.
			if !hasMAC2(msg) || !id.CheckMAC2(msg, w.src, cryptoTime(now)) {
				var reply [crypto.CookieReplySize]byte
				if err := id.CreateCookieReply(reply[:], msg, w.src, cryptoTime(now), e.randReader()); err != nil {
					e.warn.warn("cookie", "cannot create cookie reply", "err", err)
					return
				}
				e.drops.add(DropCookieReply, 1)
				e.send([][]byte{reply[:]}, w.src, w.local)
				return
			}
			if !e.limiter.allow(w.src.Addr(), now) {
				e.drops.add(DropRateLimited, 1)
				return
			}
		}
		if msg[0] == byte(crypto.MessageInitiation) {
			e.consumeInitiation(id, msg, w.src, w.local, now)
		} else {
			e.consumeResponse(msg, w.src, w.local, now)
		}
	case crypto.MessageCookieReply:
		e.consumeCookieReply(msg)
	}
}

// consumeInitiation answers a valid initiation and parks the new keypair.
func (e *Engine) consumeInitiation(id *crypto.Identity, msg []byte, src netip.AddrPort, local netip.Addr, now time.Duration) {
	h, err := id.ConsumeInitiation(msg, cryptoTime(now), e.lookupResponder)
	if err != nil {
		e.drops.add(DropHandshakeInvalid, 1)
		if err == crypto.ErrReplayedTimestamp {
			// R10: a replay, or the peer's wall clock went back.
			e.warn.warn("timestamp", "initiation rejected: timestamp not newer than the last one", "endpoint", src)
		} else {
			e.log.Debug("initiation rejected", "endpoint", src, "err", err)
		}
		return
	}
	p := e.peerByKey(h.RemoteStatic())
	if p == nil {
		e.drops.add(DropHandshakeInvalid, 1)
		return
	}
	var resp [crypto.ResponseSize]byte
	p.handshake.Lock()
	ok := e.answerLocked(p, h, resp[:], src, local, now)
	p.handshake.Unlock()
	if ok {
		p.txBytes.Add(uint64(len(resp)))
		p.rxBytes.Add(uint64(len(msg)))
		p.send([][]byte{resp[:]}, src, local)
	}
}

// answerLocked writes into resp the response of h, p's responder, to the
// initiation it consumed, and parks the new keypair. It reports whether
// resp is to be sent. p.handshake must be held.
func (e *Engine) answerLocked(p *peer, h *crypto.Handshake, resp []byte, src netip.AddrPort, local netip.Addr, now time.Duration) bool {
	p.mu.Lock()
	ok := !p.removed && p.responder == h
	p.mu.Unlock()
	if !ok {
		e.drops.add(DropHandshakeInvalid, 1)
		return false
	}
	// The X25519 work, with p.mu released (see peer.handshake).
	idx, err := e.indices.newIndex(indexEntry{peer: p}, e.readRand)
	if err == nil {
		// The wall clock, as for CreateInitiation: it dates the cookie
		// for mac2, and ConsumeCookieReply stamps cookies with it too.
		err = h.CreateResponse(resp, e.clock.Wall(), e.randReader(), idx)
	}
	var ck *crypto.Keypair
	if err == nil {
		ck, err = h.BeginSession(cryptoTime(now))
	}
	if err != nil {
		if idx != 0 {
			e.indices.remove(idx)
		}
		e.warn.warn("response", "cannot create handshake response", "peer", p.publicKey.String(), "err", err)
		return false
	}
	kp := &keypair{Keypair: ck, peer: p, created: now}
	p.mu.Lock()
	if p.removed || p.responder != h || !e.up.Load() {
		// Removed, its key changed or the engine went down meanwhile.
		p.mu.Unlock()
		e.indices.remove(idx)
		e.drops.add(DropHandshakeInvalid, 1)
		return false
	}
	e.indices.swap(idx, indexEntry{peer: p, kp: kp})
	p.installResponderKeypairLocked(kp)
	p.learnEndpointLocked(src, local)
	p.timersTraversalLocked(now)
	p.timersAnyReceivedLocked()
	p.timersAnySentLocked()
	p.timersSessionDerivedLocked(now)
	p.mu.Unlock()
	return true
}

// consumeResponse completes our handshake and confirms the keys at once.
func (e *Engine) consumeResponse(msg []byte, src netip.AddrPort, local netip.Addr, now time.Duration) {
	idx := crypto.ReceiverIndex(msg)
	ent, ok := e.indices.lookup(idx)
	if !ok || ent.kp != nil {
		e.drops.add(DropHandshakeInvalid, 1) // P10: unknown index
		return
	}
	p := ent.peer
	p.handshake.Lock()
	ok = e.completeLocked(p, idx, msg, src, local, now)
	p.handshake.Unlock()
	if ok {
		p.rxBytes.Add(uint64(len(msg)))
		e.log.Info("handshake complete", "peer", shortKey(p.publicKey), "endpoint", src, "role", "initiator")
		p.flushStaged()
	}
}

// completeLocked consumes the response msg to p's initiation idx and makes
// the new keypair current, with a keepalive staged if nothing is. It reports
// whether it did. p.handshake must be held.
func (e *Engine) completeLocked(p *peer, idx uint32, msg []byte, src netip.AddrPort, local netip.Addr, now time.Duration) bool {
	p.mu.Lock()
	h := p.initiator
	ok := !p.removed && p.initiatorIndex == idx && h != nil
	p.mu.Unlock()
	if !ok {
		e.drops.add(DropHandshakeInvalid, 1) // P10: wrong state or after give-up
		return false
	}
	// The X25519 work, with p.mu released (see peer.handshake).
	if err := h.ConsumeResponse(msg); err != nil {
		e.drops.add(DropHandshakeInvalid, 1)
		return false
	}
	ck, err := h.BeginSession(cryptoTime(now))
	if err != nil {
		e.drops.add(DropHandshakeInvalid, 1)
		return false
	}
	kp := &keypair{Keypair: ck, peer: p, created: now}
	p.mu.Lock()
	if p.removed || p.initiatorIndex != idx || p.initiator != h || !e.up.Load() {
		// Given up, removed, rekeyed or down meanwhile.
		p.mu.Unlock()
		e.drops.add(DropHandshakeInvalid, 1)
		return false
	}
	e.indices.swap(idx, indexEntry{peer: p, kp: kp})
	p.initiatorIndex = 0
	p.installInitiatorKeypairLocked(kp)
	p.learnEndpointLocked(src, local)
	p.loggedEndpoint = src // consumeResponse logs it with the handshake
	p.timersTraversalLocked(now)
	p.timersAnyReceivedLocked()
	p.timersHandshakeCompleteLocked()
	p.responderDone = false // our own handshake: consumeResponse logs it
	p.timersSessionDerivedLocked(now)
	if p.staged.len() == 0 {
		// Key confirmation (P9): the initiator speaks first under the
		// new keys; with nothing staged, a keepalive.
		p.stageKeepaliveLocked()
		p.keepalives.Add(1)
	}
	p.mu.Unlock()
	return true
}

// consumeCookieReply stores a cookie for our next initiation or response
// (P8: nothing is resent now; the retry timer sends the next initiation).
func (e *Engine) consumeCookieReply(msg []byte) {
	idx := crypto.ReceiverIndex(msg)
	ent, ok := e.indices.lookup(idx)
	if !ok {
		e.drops.add(DropHandshakeInvalid, 1)
		return
	}
	p := ent.peer
	p.mu.Lock()
	h := p.responder
	if ent.kp == nil && p.initiatorIndex == idx {
		h = p.initiator
	}
	p.mu.Unlock()
	if h == nil || h.ConsumeCookieReply(msg, e.clock.Wall()) != nil {
		e.drops.add(DropHandshakeInvalid, 1)
	}
}

// lookupResponder returns the responder Handshake of the peer with key pk.
func (e *Engine) lookupResponder(pk crypto.PublicKey) *crypto.Handshake {
	p := e.peerByKey(pk)
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.removed {
		return nil
	}
	return p.responder
}

// sendInitiation sends a handshake initiation to p unless one left less
// than RekeyTimeout ago (D8). A retry keeps the attempt count; any other
// call starts a new cycle of attempts.
func (p *peer) sendInitiation(isRetry bool) {
	e := p.e
	if !e.up.Load() {
		return
	}
	var msg [crypto.InitiationSize]byte
	p.handshake.Lock()
	ep, local, ok := p.initiateLocked(msg[:], isRetry)
	p.handshake.Unlock()
	if ok {
		p.txBytes.Add(uint64(len(msg)))
		p.send([][]byte{msg[:]}, ep, local)
	}
}

// initiateLocked writes a new initiation into msg unless one is not due
// and returns where it goes and from which of our addresses. p.handshake
// must be held.
func (p *peer) initiateLocked(msg []byte, isRetry bool) (netip.AddrPort, netip.Addr, bool) {
	e := p.e
	now := e.clock.Now()
	p.mu.Lock()
	if p.removed || p.initiator == nil || !p.endpoint.IsValid() {
		p.mu.Unlock()
		return netip.AddrPort{}, netip.Addr{}, false
	}
	if !isRetry {
		p.timers.attempts = 0
	}
	if p.timers.initiated && now-p.timers.lastInitiation < RekeyTimeout {
		p.mu.Unlock()
		return netip.AddrPort{}, netip.Addr{}, false
	}
	if p.initiatorIndex != 0 {
		e.indices.remove(p.initiatorIndex)
		p.initiatorIndex = 0
	}
	h := p.initiator
	p.mu.Unlock()

	// The X25519 work, with p.mu released (see peer.handshake).
	idx, err := e.indices.newIndex(indexEntry{peer: p}, e.readRand)
	if err == nil {
		err = h.CreateInitiation(msg, e.clock.Wall(), e.randReader(), idx)
		if err != nil {
			e.indices.remove(idx)
		}
	}
	if err != nil {
		e.warn.warn("initiation", "cannot create handshake initiation", "peer", p.publicKey.String(), "err", err)
		return netip.AddrPort{}, netip.Addr{}, false
	}
	p.mu.Lock()
	if p.removed || p.initiator != h || !p.endpoint.IsValid() || !e.up.Load() {
		// Removed, its key changed or the engine went down meanwhile.
		p.mu.Unlock()
		e.indices.remove(idx)
		return netip.AddrPort{}, netip.Addr{}, false
	}
	p.initiatorIndex = idx
	p.timers.lastInitiation, p.timers.initiated = now, true
	p.timersTraversalLocked(now)
	p.timersAnySentLocked()
	p.timersHandshakeInitiatedLocked(now)
	ep, local := p.endpoint, p.sourceLocked()
	p.mu.Unlock()
	return ep, local, true
}
