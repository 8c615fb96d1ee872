package tunnel

// The inbound path (DESIGN.md "A packet's way in"), run to completion by
// one goroutine, receiveLoop, on buffers it owns:
//
//  1. Receive a batch from the transport.
//  2. Parse each datagram (size, type, reserved bytes; M1-M4). Handshake
//     messages are checked (mac1, under load mac2) and copied to a handshake
//     queue (handshake.go).
//  3. Data: the keypair by receiver index (M5), Reject-After-Time (R7);
//     then the batch's data messages are opened in place (M6), and only
//     then their counters pass the replay window (R3, R4), in batch order,
//     one lock per run of one keypair (cryptobatch.go). From here a packet
//     is authenticated: it is noted for roaming and timers.
//  4. Empty payload: a keepalive, done (M10). Otherwise the inner IP header
//     is checked (M7, M8; padding trimmed) and the inner source must map to
//     the same peer by allowed IPs (M9, N6).
//  5. Per keypair seen: endpoint to the latest outer source, and our source
//     address to the local address it reached (RO1-RO3, RO6), key
//     confirmation (P9), timers, rekey once past 165 s. Before the write,
//     so that a reply the host sends at once goes to where the peer is now.
//  6. One Adapter.Write for the batch, at Offset.

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/warrenvpn/warren/crypto"
)

// seenKeypair is what one batch did with one keypair.
type seenKeypair struct {
	kp    *keypair
	ep    netip.AddrPort // outer source of the latest authenticated packet
	local netip.Addr     // our address that packet was sent to (RO6)
	last  int            // batch position of that packet
	data  bool           // a non-keepalive payload arrived
	bytes uint64
}

// inbound is receiveLoop's scratch, made once.
type inbound struct {
	bufs   [][]byte
	sizes  []int
	eps    []netip.AddrPort
	locals []netip.Addr
	write  [][]byte
	seen   []seenKeypair
	pipe   *pipeline // whose adapter writes; nil is pipeline 0

	// Per datagram, for the batch's open and replay steps (cryptobatch.go).
	kps  []*keypair // the keypair of a data message to open, else nil
	pts  [][]byte   // its plaintext
	ctrs []uint64   // its counter
	ok   []bool     // opened, then accepted by the replay window
	fork *fork      // crypto helpers' scratch (helpers.go); nil without
}

func newInbound(batch int) *inbound {
	in := &inbound{
		bufs:   make([][]byte, batch),
		sizes:  make([]int, batch),
		eps:    make([]netip.AddrPort, batch),
		locals: make([]netip.Addr, batch),
		write:  make([][]byte, 0, batch),
		seen:   make([]seenKeypair, 0, batch),
		kps:    make([]*keypair, batch),
		pts:    make([][]byte, batch),
		ctrs:   make([]uint64, batch),
		ok:     make([]bool, batch),
	}
	for i := range in.bufs {
		in.bufs[i] = make([]byte, bufferSize)
	}
	return in
}

// receiveLoop is pipeline 0's receivePipe.
func (e *Engine) receiveLoop() { e.receivePipe(nil) }

// receivePipe moves datagrams from pipe's transport to its adapter until
// the transport is closed; pipe nil is pipeline 0. Transient errors are
// retried (L8).
func (e *Engine) receivePipe(pipe *pipeline) {
	slot := e.boxOf(pipe)
	box := slot.Load()
	tr := box.Transport
	in := newInbound(max(batchSize(tr.BatchSize()), defaultBatchSize))
	in.pipe = pipe
	in.fork = e.newFork()
	failures := 0
	for {
		n, err := tr.Receive(in.bufs[:min(len(in.bufs), batchSize(tr.BatchSize()))], in.sizes, in.eps, in.locals)
		if n > 0 {
			e.batches.transportReceive.add(n)
			e.processInbound(in, n)
		}
		if err == nil {
			failures = 0
			continue
		}
		if errors.Is(err, net.ErrClosed) {
			// Closed by Close, or by a rebind that replaces it (perhaps
			// in a moment) or fails for good: wait for whichever comes.
			select {
			case <-e.done:
				return
			case <-e.fatal.failed:
				return
			case <-box.replaced:
				box = slot.Load()
				tr = box.Transport
				continue
			}
		}
		if !e.retryAfter(err, &failures, "receive") {
			return
		}
	}
}

// processInbound handles the n datagrams in in.
func (e *Engine) processInbound(in *inbound, n int) {
	if !e.up.Load() {
		e.drops.add(DropDown, uint64(n))
		return
	}
	now := e.clock.Now()
	write := in.write[:0]
	seen := in.seen[:0]
	var kp *keypair
	for i := range n {
		in.kps[i] = nil
		msg := in.bufs[i][:in.sizes[i]]
		typ, err := crypto.Parse(msg)
		if err != nil {
			if err == crypto.ErrShort {
				e.drops.add(DropShort, 1)
			} else {
				e.drops.add(DropUnknownType, 1)
			}
			continue
		}
		if typ != crypto.MessageData {
			e.admitHandshake(msg, in.eps[i], in.locals[i], now)
			continue
		}
		// Consecutive packets of a flow share a receiver index: look it up
		// once per run.
		if idx := binary.LittleEndian.Uint32(msg[4:]); kp == nil || idx != kp.LocalIndex {
			ent, ok := e.indices.lookup(idx)
			if !ok || ent.kp == nil {
				kp = nil
				e.drops.add(DropUnknownIndex, 1)
				continue
			}
			kp = ent.kp
		}
		if kp.isExpired(now) {
			e.drops.add(DropExpired, 1)
			continue
		}
		in.kps[i] = kp
	}
	// Open the batch, then pass its counters through the replay windows
	// in order (cryptobatch.go).
	e.openBatch(in, n)
	acceptBatch(in, n)
	for i := range n {
		kp := in.kps[i]
		if kp == nil {
			continue // not data, or dropped above
		}
		in.kps[i] = nil // no keypair outlives the batch in the scratch
		if !in.ok[i] {
			e.drops.add(DropReplay, 1)
			continue
		}
		msg, pt := in.bufs[i][:in.sizes[i]], in.pts[i]
		in.pts[i] = nil
		// Authenticated from here on.
		s := seenIndex(&seen, kp)
		seen[s].ep, seen[s].local, seen[s].last = in.eps[i], in.locals[i], i
		seen[s].bytes += uint64(len(msg))
		if len(pt) == 0 {
			continue // keepalive (M10)
		}
		seen[s].data = true
		if e.l2 != nil {
			if size, ok := e.inboundFrame(kp.peer, pt, now); ok {
				write = append(write, msg[:Offset+size])
			}
			continue
		}
		size, reason, ok := innerPacket(pt)
		if !ok {
			e.drops.add(reason, 1)
			if isFrame(pt) {
				e.logModeMismatch(kp.peer, "peer sends Ethernet frames: it runs in TAP mode; set Mode = tun in its [Interface], or Mode = tap here")
			}
			continue
		}
		if src, ok := e.routes.LookupPacketSrc(pt); !ok || src != kp.peer {
			e.drops.add(DropSourceCheck, 1)
			continue
		}
		write = append(write, msg[:Offset+size])
	}
	e.endInbound()
	for i := range seen {
		e.received(&seen[i], isLatest(seen, i), now)
	}
	clear(seen)
	in.seen = seen[:0]
	ad := e.adapterOf(in.pipe)
	for rest := write; len(rest) > 0; {
		chunk := rest[:min(len(rest), e.adapterBatch)]
		rest = rest[len(chunk):]
		e.batches.adapterWrite.add(len(chunk))
		// Only the packets the adapter did not take are lost.
		w, err := ad.Write(chunk, e.adapterOffset())
		if w = min(max(w, 0), len(chunk)); w < len(chunk) {
			e.drops.add(DropWriteError, uint64(len(chunk)-w))
		}
		if err != nil && !errors.Is(err, net.ErrClosed) {
			e.warn.warn("write", "adapter write failed", "err", err)
		}
	}
	clear(write)
	in.write = write[:0]
}

// seenIndex returns the index of kp in *seen, appending it if new.
func seenIndex(seen *[]seenKeypair, kp *keypair) int {
	for i := range *seen {
		if (*seen)[i].kp == kp {
			return i
		}
	}
	*seen = append(*seen, seenKeypair{kp: kp})
	return len(*seen) - 1
}

// isLatest reports whether seen[i] holds its peer's latest authenticated
// packet of the batch (two keypairs of one peer may both appear).
func isLatest(seen []seenKeypair, i int) bool {
	for j := range seen {
		if seen[j].kp.peer == seen[i].kp.peer && seen[j].last > seen[i].last {
			return false
		}
	}
	return true
}

// received applies what a batch authenticated under one keypair; latest
// says whether its packet is the peer's latest, whose source becomes the
// endpoint.
func (e *Engine) received(s *seenKeypair, latest bool, now time.Duration) {
	kp := s.kp
	p := kp.peer
	p.rxBytes.Add(s.bytes)
	p.mu.Lock()
	checkSource := false
	if latest {
		p.learnEndpointLocked(s.ep, s.local)
		checkSource = p.sourceCheckDueLocked(now)
	}
	ep, local := p.endpoint, p.local
	confirmed := p.confirmLocked(kp)
	if confirmed {
		p.timersHandshakeCompleteLocked() // the responder's handshake ends here
	}
	p.timersAnyReceivedLocked()
	p.timersTraversalLocked(now)
	if s.data {
		p.timersDataReceivedLocked(now)
	}
	rekey := false
	if kp == p.keys.current && kp.IsInitiator && !p.timers.lastMinuteHandshake &&
		now-kp.created >= rekeyOnReceiveTime {
		p.timers.lastMinuteHandshake = true
		rekey = true
	}
	p.mu.Unlock()
	if checkSource {
		e.checkSource(p, ep, local) // RO8
	}
	if confirmed {
		p.flushStaged()
	}
	if rekey {
		p.requestInitiation()
	}
}

// innerPacket checks the IP header of an authenticated payload and returns
// the packet's length without padding, or false and the drop reason (M7,
// M8).
func innerPacket(pt []byte) (int, DropReason, bool) {
	switch pt[0] >> 4 {
	case 4:
		if len(pt) < 20 {
			return 0, DropLengthError, false
		}
		n := int(binary.BigEndian.Uint16(pt[2:4]))
		if n < 20 || n > len(pt) {
			return 0, DropLengthError, false
		}
		return n, 0, true
	case 6:
		if len(pt) < 40 {
			return 0, DropLengthError, false
		}
		n := 40 + int(binary.BigEndian.Uint16(pt[4:6]))
		if n > len(pt) {
			return 0, DropLengthError, false
		}
		return n, 0, true
	}
	return 0, DropFrameError, false
}
