package tunnel

// The handshake path (DESIGN.md "A packet's way in", step 2):
//
//  1. receiveLoop parses each datagram; handshake messages (types 1-3) are
//     copied into a handshakeWork and put on Engine.handshakes without
//     blocking (full queue: dropped and counted, D4).
//  2. handshakeWorker takes them one at a time: mac1 first (before any
//     X25519), then, under load (>= 128 queued, and for 1 s after), mac2
//     or a cookie reply instead of an answer (D5, D6).
//  3. An initiation is consumed by the peer's responder Handshake, answered,
//     and its keypair parked as "next" until the initiator confirms it (P9).
//     A response completes the peer's initiator Handshake; its keypair
//     becomes current and staged packets, or a keepalive, leave at once.
//
// Initiations we send come from sendInitiation, called by the send path, the
// receive path (rekey at 165 s) and the timers; it allows at most one per
// RekeyTimeout on the wire (D8).

import (
	"net/netip"
	"time"

	"github.com/warrenvpn/warren/crypto"
)

// handshakeWork is one queued handshake message, copied out of the
// receive buffer so that the queue holds no pooled memory.
type handshakeWork struct {
	msg [crypto.InitiationSize]byte
	n   int
	src netip.AddrPort
}

// cryptoTime converts a Clock.Now value to the time.Time the crypto package
// measures ages with.
func cryptoTime(now time.Duration) time.Time { return time.Unix(0, 0).Add(now) }

// identity returns our identity, or nil without a private key.
func (e *Engine) identity() *crypto.Identity {
	e.local.RLock()
	defer e.local.RUnlock()
	return e.local.identity
}

// queueHandshake hands msg from src to the handshake worker, or drops it
// when the queue is full.
func (e *Engine) queueHandshake(msg []byte, src netip.AddrPort) {
	var w handshakeWork
	w.n = copy(w.msg[:], msg)
	w.src = src
	select {
	case e.handshakes <- w:
	default:
		e.drops.add(DropHandshakeQueueFull, 1)
	}
}

// handshakeWorker consumes queued handshake messages until Close.
func (e *Engine) handshakeWorker() {
	for {
		select {
		case <-e.done:
			return
		case w := <-e.handshakes:
			e.handleHandshake(&w)
		}
	}
}

// drainHandshakes handles every queued handshake message without blocking
// (tests that drive the engine step by step).
func (e *Engine) drainHandshakes() {
	for {
		select {
		case w := <-e.handshakes:
			e.handleHandshake(&w)
		default:
			return
		}
	}
}

// updateUnderLoad switches under-load mode on while the queue holds at least
// underLoadQueueLen messages, and keeps it on for underLoadAfterTime after.
func (e *Engine) updateUnderLoad(now time.Duration) bool {
	if len(e.handshakes) >= underLoadQueueLen {
		e.underLoad.Store(int64(now + underLoadAfterTime))
		return true
	}
	return int64(now) < e.underLoad.Load()
}

// handleHandshake processes one handshake message.
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
		if !id.CheckMAC1(msg) {
			e.drops.add(DropBadMAC, 1)
			return
		}
		if e.updateUnderLoad(now) {
			if !id.CheckMAC2(msg, w.src, cryptoTime(now)) {
				var reply [crypto.CookieReplySize]byte
				if err := id.CreateCookieReply(reply[:], msg, w.src, cryptoTime(now), e.randReader()); err != nil {
					e.warn.warn("cookie", "cannot create cookie reply", "err", err)
					return
				}
				e.sendMessage(reply[:], w.src)
				return
			}
			if !e.limiter.allow(w.src.Addr(), now) {
				e.drops.add(DropRateLimited, 1)
				return
			}
		}
		if msg[0] == byte(crypto.MessageInitiation) {
			e.consumeInitiation(id, msg, w.src, now)
		} else {
			e.consumeResponse(msg, w.src, now)
		}
	case crypto.MessageCookieReply:
		e.consumeCookieReply(msg)
	}
}

// consumeInitiation answers a valid initiation and parks the new keypair.
func (e *Engine) consumeInitiation(id *crypto.Identity, msg []byte, src netip.AddrPort, now time.Duration) {
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
	p.mu.Lock()
	if p.removed || p.responder != h {
		p.mu.Unlock()
		e.drops.add(DropHandshakeInvalid, 1)
		return
	}
	idx, err := e.indices.newIndex(indexEntry{peer: p}, e.readRand)
	if err == nil {
		// The wall clock, as for CreateInitiation: it dates the cookie
		// for mac2, and ConsumeCookieReply stamps cookies with it too.
		err = h.CreateResponse(resp[:], e.clock.Wall(), e.randReader(), idx)
	}
	var ck *crypto.Keypair
	if err == nil {
		ck, err = h.BeginSession(cryptoTime(now))
	}
	if err != nil {
		if idx != 0 {
			e.indices.remove(idx)
		}
		p.mu.Unlock()
		e.warn.warn("response", "cannot create handshake response", "peer", p.publicKey.String(), "err", err)
		return
	}
	kp := &keypair{Keypair: ck, peer: p, created: now}
	e.indices.swap(idx, indexEntry{peer: p, kp: kp})
	p.installResponderKeypairLocked(kp)
	p.endpoint = src
	p.timersTraversalLocked(now)
	p.timersAnyReceivedLocked()
	p.timersAnySentLocked()
	p.timersSessionDerivedLocked(now)
	p.mu.Unlock()
	p.txBytes.Add(uint64(len(resp)))
	p.rxBytes.Add(uint64(len(msg)))
	e.sendMessage(resp[:], src)
}

// consumeResponse completes our handshake and confirms the keys at once.
func (e *Engine) consumeResponse(msg []byte, src netip.AddrPort, now time.Duration) {
	idx := crypto.ReceiverIndex(msg)
	ent, ok := e.indices.lookup(idx)
	if !ok || ent.kp != nil {
		e.drops.add(DropHandshakeInvalid, 1) // P10: unknown index
		return
	}
	p := ent.peer
	p.mu.Lock()
	if p.removed || p.initiatorIndex != idx || p.initiator == nil {
		p.mu.Unlock()
		e.drops.add(DropHandshakeInvalid, 1) // P10: wrong state or after give-up
		return
	}
	if err := p.initiator.ConsumeResponse(msg); err != nil {
		p.mu.Unlock()
		e.drops.add(DropHandshakeInvalid, 1)
		return
	}
	ck, err := p.initiator.BeginSession(cryptoTime(now))
	if err != nil {
		p.mu.Unlock()
		e.drops.add(DropHandshakeInvalid, 1)
		return
	}
	kp := &keypair{Keypair: ck, peer: p, created: now}
	e.indices.swap(idx, indexEntry{peer: p, kp: kp})
	p.initiatorIndex = 0
	p.installInitiatorKeypairLocked(kp)
	p.endpoint = src
	p.timersTraversalLocked(now)
	p.timersAnyReceivedLocked()
	p.timersHandshakeCompleteLocked()
	p.timersSessionDerivedLocked(now)
	if p.staged.len() == 0 {
		// Key confirmation (P9): the initiator speaks first under the
		// new keys; with nothing staged, a keepalive.
		p.stageKeepaliveLocked()
	}
	p.mu.Unlock()
	p.rxBytes.Add(uint64(len(msg)))
	e.log.Debug("handshake complete", "peer", p.publicKey.String(), "endpoint", src, "role", "initiator")
	p.flushStaged()
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
	now := e.clock.Now()
	var msg [crypto.InitiationSize]byte
	p.mu.Lock()
	if p.removed || p.initiator == nil || !p.endpoint.IsValid() {
		p.mu.Unlock()
		return
	}
	if !isRetry {
		p.timers.attempts = 0
	}
	if p.timers.initiated && now-p.timers.lastInitiation < RekeyTimeout {
		p.mu.Unlock()
		return
	}
	if p.initiatorIndex != 0 {
		e.indices.remove(p.initiatorIndex)
		p.initiatorIndex = 0
	}
	idx, err := e.indices.newIndex(indexEntry{peer: p}, e.readRand)
	if err == nil {
		err = p.initiator.CreateInitiation(msg[:], e.clock.Wall(), e.randReader(), idx)
		if err != nil {
			e.indices.remove(idx)
		}
	}
	if err != nil {
		p.mu.Unlock()
		e.warn.warn("initiation", "cannot create handshake initiation", "peer", p.publicKey.String(), "err", err)
		return
	}
	p.initiatorIndex = idx
	p.timers.lastInitiation, p.timers.initiated = now, true
	p.timersTraversalLocked(now)
	p.timersAnySentLocked()
	p.timersHandshakeInitiatedLocked(now)
	ep := p.endpoint
	p.mu.Unlock()
	p.txBytes.Add(uint64(len(msg)))
	e.sendMessage(msg[:], ep)
}

// sendMessage sends one handshake-path message. Send errors are counted
// and logged at a limited rate; the timers retry.
func (e *Engine) sendMessage(msg []byte, ep netip.AddrPort) {
	bufs := [][]byte{msg}
	if err := e.transport().Send(bufs, ep); err != nil {
		e.drops.add(DropSendError, 1)
		e.warn.warn("send", "send failed", "endpoint", ep, "err", err)
	}
}
