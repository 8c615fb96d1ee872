package tunnel

// The outbound path (DESIGN.md "A packet's way out"), run to completion by
// one goroutine, readLoop, on buffers it owns:
//
//  1. Read a batch from the adapter at Offset.
//  2. Route each packet by destination with the allowed-IPs table; no match
//     is dropped and counted.
//  3. Per peer, in the order the peer first appears in the batch: a peer
//     without a usable session (or with packets already staged) gets its
//     packets copied into its staged queue (128, oldest dropped) and a
//     handshake; otherwise each packet is sealed in place (nonce from the
//     keypair's counter) and the peer's packets leave in one Transport.Send
//     call, so that GSO applies.
//  4. Timers: data sent, rekey after 120 s or RekeyAfterMessages.
//
// peer.mu is taken once per peer per batch and never across Send, and held
// only briefly by anyone (never across a handshake's X25519), so that one
// peer's handshake does not hold up the batch. Handshakes the send path
// needs are requested from the handshake worker (requestInitiation), not
// done here. Staged packets and keepalives are sent by flushStaged from
// whichever goroutine made a session usable.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// outbound is readLoop's scratch, made once.
type outbound struct {
	bufs  [][]byte // adapter buffers, bufferSize each
	sizes []int
	peers []*peer     // route of packet i, nil once handled
	group [][]byte    // one peer's sealed messages
	gsize []int       // group's plaintext sizes while sealing
	pmtu  pmtuScratch // packets over a peer's path MTU (pmtu.go)
	pipe  *pipeline   // whose transport sends; nil is pipeline 0
	fork  *fork       // crypto helpers' scratch (helpers.go); nil without
}

func newOutbound(batch int) *outbound {
	o := &outbound{
		bufs:  make([][]byte, batch),
		sizes: make([]int, batch),
		peers: make([]*peer, batch),
		group: make([][]byte, 0, batch),
		gsize: make([]int, batch),
	}
	for i := range o.bufs {
		o.bufs[i] = make([]byte, bufferSize)
	}
	return o
}

func batchSize(n int) int {
	if n <= 0 {
		return defaultBatchSize
	}
	return n
}

// readLoop is pipeline 0's readPipe.
func (e *Engine) readLoop() { e.readPipe(nil) }

// readPipe moves packets from pipe's adapter to its transport until the
// adapter is closed; pipe nil is pipeline 0. An adapter closed other than
// by Close stops the engine (a lost queue of a multi-queue TUN).
func (e *Engine) readPipe(pipe *pipeline) {
	ad := e.adapterOf(pipe)
	o := newOutbound(batchSize(ad.BatchSize()))
	o.pipe = pipe
	o.fork = e.newFork()
	failures := 0
	for {
		n, err := ad.Read(o.bufs, o.sizes, e.adapterOffset())
		if n > 0 {
			e.batches.adapterRead.add(n)
			e.processOutbound(o, n)
		}
		if err == nil {
			failures = 0
			continue
		}
		if isDropped(err) {
			e.drops.add(DropAdapterMalformed, 1)
			e.warn.warn("adapter read", "adapter dropped a malformed packet", "err", err)
			continue
		}
		if isRemoved(err) && !e.isClosing() {
			if e.setFatal(fmt.Errorf("%s: %w", ad.Name(), ErrAdapterRemoved)) {
				e.log.Info("interface removed, stopping", "interface", ad.Name())
			}
			return
		}
		if errors.Is(err, net.ErrClosed) {
			if !e.isClosing() {
				e.setFatal(fmt.Errorf("%s: %w", ad.Name(), errQueueLost))
			}
			return
		}
		if !e.retryAfter(err, &failures, "adapter read") {
			return
		}
	}
}

// retryAfter handles a failed read of a loop (L8): it logs at a limited
// rate and waits readRetryDelay. It reports false, recording a fatal error,
// after maxReadFailures failures in a row or when the engine closes. The
// fatal error is not logged here: the caller of Err reports it once.
func (e *Engine) retryAfter(err error, failures *int, what string) bool {
	if e.isClosing() {
		return false
	}
	*failures++
	if *failures > maxReadFailures {
		e.setFatal(fmt.Errorf("%s failed %d times in a row: %w", what, *failures, err))
		return false
	}
	e.warn.warn(what, what+" failed", "err", err)
	return e.sleep(e.retryDelay)
}

// sleep waits d of real time or until Close; it reports whether the engine
// is still running.
func (e *Engine) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-e.done:
		return false
	case <-t.C:
		return true
	}
}

// processOutbound routes, seals and sends the n packets in o.
func (e *Engine) processOutbound(o *outbound, n int) {
	if !e.up.Load() {
		e.drops.add(DropDown, uint64(n))
		return
	}
	if e.l2 != nil {
		e.processOutboundL2(o, n)
		return
	}
	now := e.clock.Now()
	for i := range n {
		pkt := o.bufs[i][Offset : Offset+o.sizes[i]]
		p, ok := e.routes.LookupPacketDst(pkt)
		if !ok {
			e.drops.add(DropNoRoute, 1)
			e.replyUnreachable(&o.pmtu, pkt, now) // N10, icmp.go
			p = nil
		}
		o.peers[i] = p
	}
	mtu := e.paddingMTU()
	for i := range n {
		if p := o.peers[i]; p != nil {
			e.sendPeerBatch(o, p, i, n, now, mtu)
		}
	}
	if o.pmtu.n > 0 {
		e.finishPathMTU(&o.pmtu, e.adapterOf(o.pipe)) // unreachable replies
	}
}

// sendPeerBatch handles every packet of p in o from index first on.
func (e *Engine) sendPeerBatch(o *outbound, p *peer, first, n int, now time.Duration, mtu int) {
	p.mu.Lock()
	kp := p.sendKeypairLocked(now)
	ep, local := p.endpoint, p.sourceLocked()
	if kp == nil || p.staged.len() > 0 || !ep.IsValid() {
		for j := first; j < n; j++ {
			if o.peers[j] != p {
				continue
			}
			o.peers[j] = nil
			b := e.pool.get(o.sizes[j])
			b.n = copy(b.b[Offset:], o.bufs[j][Offset:Offset+o.sizes[j]])
			p.stageLocked(b)
		}
		p.mu.Unlock()
		if kp != nil && ep.IsValid() {
			p.flushStaged()
		} else {
			p.handshakeForStaged()
		}
		return
	}
	p.mu.Unlock()

	e.enterGate(p, o.pipe) // several pipelines: bound their drift (pipeline.go)
	group := o.group[:0]
	var bytes uint64
	exhausted := false
	lim := e.pathMTULimit(p, ep, now) // 0 unless lowered (pmtu.go)
	if lim != 0 {
		mtu = paddingCap(mtu, lim)
		defer e.finishPathMTU(&o.pmtu, e.adapterOf(o.pipe))
	}
	for j := first; j < n; j++ {
		if o.peers[j] != p {
			continue
		}
		o.peers[j] = nil
		if lim != 0 && o.sizes[j] > lim && e.overPathMTU(&o.pmtu, o.bufs[j][Offset:Offset+o.sizes[j]], lim) {
			continue
		}
		o.gsize[len(group)] = o.sizes[j]
		group = append(group, o.bufs[j])
	}
	sealed := sealBatch(kp, group, o.gsize, mtu, o.fork) // counters in batch order
	for i, b := range group[sealed:] {
		// ErrRejectAfterMessages (the packet is intact): keep it for the
		// next session, which a handshake brings.
		exhausted = true
		size := o.gsize[sealed+i]
		pb := e.pool.get(size)
		pb.n = copy(pb.b[Offset:], b[Offset:Offset+size])
		p.mu.Lock()
		p.stageLocked(pb)
		p.mu.Unlock()
	}
	clear(group[sealed:])
	group, bytes = e.keepSealed(group[:sealed])
	if len(o.pmtu.frags) > 0 {
		var fb uint64
		group, fb = e.sealFragments(&o.pmtu, kp, mtu, group)
		bytes += fb
	}
	if len(o.pmtu.loose) > 0 {
		bytes += e.sendLoose(&o.pmtu, kp, mtu, e.transportOf(o.pipe), ep, local)
	}
	o.group = group[:0]
	if len(group) == 0 {
		e.leaveGate(p, o.pipe)
		if bytes > 0 { // only packets sendLoose sent (pmtu.go)
			p.sent(kp, now, bytes, true, exhausted)
		} else if exhausted {
			p.requestInitiation()
		}
		return
	}
	e.batches.transportSend.add(len(group))
	stale := e.sendOn(e.transportOf(o.pipe), group, ep, local)
	e.leaveGate(p, o.pipe)
	if stale {
		p.forgetLocal(local)
	}
	clear(group) // readLoop's buffers stay referenced by o.bufs only
	p.sent(kp, now, bytes, true, exhausted)
}

// send sends bufs to ep from our address local (the zero Addr: the
// system's choice) and counts the datagrams the transport did not accept as
// dropped: only those, so that one failure in a batch does not count the
// whole batch. When the system refuses every datagram from local and takes
// them from its own choice, local is gone (RO5, RO8): send reports true and
// the caller forgets local (peer.send), as the kernel's implementation does.
func (e *Engine) send(bufs [][]byte, ep netip.AddrPort, local netip.Addr) (staleLocal bool) {
	return e.sendOn(e.transport(), bufs, ep, local)
}

// sendOn is send on tr: a pipeline sends its batches on its own transport.
func (e *Engine) sendOn(tr Transport, bufs [][]byte, ep netip.AddrPort, local netip.Addr) (staleLocal bool) {
	n, err := tr.Send(bufs, ep, local)
	if err != nil {
		e.notePathMTU(ep, err) // EMSGSIZE: the path narrowed (pmtu.go)
	}
	if n <= 0 && local.IsValid() && isSourceRefused(err) {
		// Again from the system's choice: if that goes, local was at fault.
		n, err = tr.Send(bufs, ep, netip.Addr{})
		staleLocal = n > 0
	}
	if n < len(bufs) {
		e.drops.add(sendDropReason(err), uint64(len(bufs)-max(n, 0)))
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		e.warn.warn("send", "send failed", "endpoint", ep, "err", err)
	}
	return staleLocal
}

// isSourceRefused reports whether err from Transport.Send may say that the
// source address asked for is not one of the host's (any more): EINVAL or
// EADDRNOTAVAIL, or ENETUNREACH from Linux's IPv4 route lookup, which also
// means no route at all (then the send from the system's choice fails too).
func isSourceRefused(err error) bool {
	return errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EADDRNOTAVAIL) ||
		errors.Is(err, syscall.ENETUNREACH)
}

// sent updates p after messages under kp left: statistics, timers, and a
// new handshake when the initiator's keypair is due for a rekey (120 s or
// RekeyAfterMessages) or exhausted.
func (p *peer) sent(kp *keypair, now time.Duration, bytes uint64, data, exhausted bool) {
	p.txBytes.Add(bytes)
	p.mu.Lock()
	if data {
		p.timersDataSentLocked(now)
	}
	p.timersAnySentLocked()
	p.timersTraversalLocked(now)
	rekey := kp.IsInitiator && (now-kp.created >= RekeyAfterTime || kp.NeedsRekey())
	p.mu.Unlock()
	if rekey || exhausted {
		p.requestInitiation()
	}
}

// paddingMTU returns the adapter's current MTU, which caps padding (P12),
// so that a change at run time applies from the next packet (L10). Values
// outside 0..65535 mean no cap.
func (e *Engine) paddingMTU() int {
	mtu := e.adapter.MTU()
	if mtu < 0 || mtu > maxPacketSize {
		return 0
	}
	return mtu
}

// stageLocked queues b for sending once a session is up, dropping the
// oldest staged packet when full (D9). p.mu must be held.
func (p *peer) stageLocked(b *packetBuffer) {
	if old := p.staged.push(b); old != nil {
		p.e.pool.put(old)
		p.e.drops.add(DropStagedOverflow, 1)
	}
}

// stageKeepaliveLocked stages an empty packet. p.mu must be held.
func (p *peer) stageKeepaliveLocked() {
	b := p.e.pool.get(0)
	b.n = 0
	p.stageLocked(b)
}

// handshakeForStaged starts a handshake for staged packets, unless a
// session we answered awaits confirmation (P9): the initiator's first
// packet, due at once, confirms it and flushes them. After RekeyTimeout
// without it a handshake starts after all.
func (p *peer) handshakeForStaged() {
	p.mu.Lock()
	waiting := p.keys.next != nil && p.e.clock.Now()-p.keys.next.created < RekeyTimeout
	p.mu.Unlock()
	if !waiting {
		p.requestInitiation()
	}
}

// sendKeepalive sends a keepalive, or starts a handshake without a session.
func (p *peer) sendKeepalive() {
	p.mu.Lock()
	if p.staged.len() == 0 {
		p.stageKeepaliveLocked()
	}
	p.mu.Unlock()
	p.flushStaged()
}

// flushStaged seals and sends p's staged packets if it has a usable
// session, and otherwise starts a handshake.
func (p *peer) flushStaged() {
	e := p.e
	if !e.up.Load() {
		return
	}
	now := e.clock.Now()
	mtu := e.paddingMTU()
	var staged [maxStagedPackets]*packetBuffer
	p.mu.Lock()
	kp := p.sendKeypairLocked(now)
	ep, local := p.endpoint, p.sourceLocked()
	if kp == nil || !ep.IsValid() {
		pending := p.staged.len() > 0
		p.mu.Unlock()
		if pending {
			p.handshakeForStaged()
		}
		return
	}
	n := 0
	for b := p.staged.pop(); b != nil; b = p.staged.pop() {
		staged[n] = b
		n++
	}
	p.mu.Unlock()
	if n == 0 {
		return
	}

	bufs := make([][]byte, 0, n)
	var bytes uint64
	data, exhausted := false, false
	var over pmtuScratch // packets over the path MTU (pmtu.go), rare here
	if e.l2 != nil {
		mtu = e.framePaddingMTU()
	}
	lim := e.pathMTULimit(p, ep, now)
	mtu = paddingCap(mtu, lim)
	var sizes, at [maxStagedPackets]int // of bufs[k]: plaintext size, place in staged
	k := 0
	for i, b := range staged[:n] {
		if lim != 0 && b.n > lim && e.overPathMTU(&over, b.b[Offset:Offset+b.n], lim) {
			continue // b goes back to the pool below
		}
		sizes[k], at[k] = b.n, i
		bufs = append(bufs, b.b)
		k++
	}
	sealed := sealBatch(kp, bufs, sizes[:k], mtu, nil)
	for _, size := range sizes[:sealed] {
		data = data || size > 0
	}
	for i := sealed; i < k; i++ {
		exhausted = true // as in sendPeerBatch: stage again
		p.mu.Lock()
		p.stageLocked(staged[at[i]])
		p.mu.Unlock()
		staged[at[i]] = nil
	}
	clear(bufs[sealed:])
	bufs, bytes = e.keepSealed(bufs[:sealed])
	if len(over.frags) > 0 {
		var fb uint64
		bufs, fb = e.sealFragments(&over, kp, mtu, bufs)
		bytes += fb
		data = true
	}
	if len(over.loose) > 0 {
		bytes += e.sendLoose(&over, kp, mtu, e.transport(), ep, local)
		data = true
	}
	if len(bufs) > 0 {
		p.send(bufs, ep, local)
	}
	e.finishPathMTU(&over, e.adapter)
	for _, b := range staged[:n] {
		if b != nil {
			e.pool.put(b)
		}
	}
	p.sent(kp, now, bytes, data, exhausted)
}
