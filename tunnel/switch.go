package tunnel

// Layer 2 mode (Mode = tap): the engine is a learning switch whose ports are
// the TAP and the peers. The frames travel in the payload of ordinary data
// messages (frame.go).
//
// Out, on readLoop (processOutboundL2), per batch read from the TAP at
// Offset+frameHeaderSize:
//
//  1. Frames shorter than an Ethernet header or longer than the MTU (plus
//     one VLAN tag) are dropped (DropFrameSize).
//  2. The source MAC is learned as local (never a group MAC); a full table
//     drops the frame (DropMACTableFull).
//  3. A destination bound to a peer goes to that peer, batched with its
//     other frames as sendPeerBatch does for IP packets; one bound locally
//     is dropped (DropLocalDestination); a group or unknown one is flooded:
//     a copy to every peer, each peer's copies in one Send (sendBuffers).
//  4. A frame over the path MTU toward its peer (pmtu.go; for a flood the
//     lowest of all peers') is dropped (DropPathMTU) and, when it holds an
//     IPv4 packet with DF or an IPv6 packet, answered with ICMP in an
//     Ethernet frame written to the TAP (overPathMTUFrame, T4).
//
// In, on receiveLoop (inboundFrame), per authenticated payload:
//
//  1. The frame header (parseFrame): an IP packet is a peer in TUN mode
//     (DropModeMismatch, logged once per peer, T3).
//  2. Anti-spoofing (T1): the source MAC must not be a group MAC, must be
//     in the peer's AllowedMACs if it has any, and must not be in another
//     peer's; the sender address of an IPv4, IPv6 or ARP frame must be in
//     the peer's allowed IPs; other EtherTypes are dropped (DropEtherType).
//  3. The source MAC is learned for the peer (a move from another peer or
//     from local is counted).
//  4. The destination: local, group or unknown goes to the TAP; one bound
//     to another peer is dropped (split horizon), unless Forward is set,
//     when it goes to that peer; with Forward group and unknown frames
//     also go to every other peer.
//
// The MAC table has its own lock, a leaf taken once per run of frames with
// the same MACs (and, in, the same peer) in a batch for learning and once
// for the lookup; no engine lock is held meanwhile.

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/mactable"
)

// macSweepEvery is how often expired MAC table entries are removed, so that
// the table's size and `warren show` reflect live hosts; lookups ignore
// expired entries in between.
const macSweepEvery = 10 * time.Second

// layer2 is the engine's layer 2 state.
type layer2 struct {
	forward atomic.Bool            // Layer2.Forward; SetForward changes it
	macs    *mactable.Table[*peer] // nil port: local
	// allowedMACs maps every MAC some peer's AllowedMACs lists to that
	// peer; replaced whole under Engine.state, read without a lock.
	allowedMACs atomic.Pointer[map[mactable.MAC]*peer]
	moves       atomic.Uint64 // MACs that moved between ports
	lastSweep   atomic.Int64  // Clock.Now of the last sweep

	out, in frameScratch // of readLoop and of receiveLoop
	run     frameRun     // of receiveLoop (inboundFrame)
}

// frameScratch is one loop's scratch for copies of frames, made once.
type frameScratch struct {
	bufs  []*packetBuffer
	group [][]byte
	sizes []int // group's plaintext sizes while sealing
	flood []int // batch positions of the frames to flood
}

func newLayer2(o *Layer2) *layer2 {
	l := &layer2{
		macs: mactable.New[*peer](o.MACAgeing, o.MaxMACs, o.MaxMACsPerPeer),
	}
	l.forward.Store(o.Forward)
	m := map[mactable.MAC]*peer{}
	l.allowedMACs.Store(&m)
	for _, s := range []*frameScratch{&l.out, &l.in} {
		s.bufs = make([]*packetBuffer, 0, defaultBatchSize)
		s.group = make([][]byte, 0, defaultBatchSize)
		s.sizes = make([]int, 0, defaultBatchSize)
		s.flood = make([]int, 0, defaultBatchSize)
	}
	return l
}

// adapterOffset is where packets or frames start in adapter buffers: in
// layer 2 mode the frame header goes in front of the frame.
func (e *Engine) adapterOffset() int {
	if e.l2 != nil {
		return Offset + frameHeaderSize
	}
	return Offset
}

// framePaddingMTU caps the padding of a frame payload (P12): the TAP's MTU
// plus the frame header and the Ethernet header, so that padding never
// makes an untagged MTU-sized frame's datagram larger than the outer MTU
// (the default TAP MTU is 1420 - 14 - 4).
func (e *Engine) framePaddingMTU() int {
	mtu := e.paddingMTU()
	if mtu == 0 {
		return 0
	}
	return mtu + frameHeaderSize + ethHeaderSize
}

// fullInnerMTU is the plaintext of the largest packet or frame the adapter
// gives: its MTU, and in layer 2 mode the frame header, the Ethernet
// header and one VLAN tag more. A path MTU that leaves at least this much
// lowers nothing (pmtu.go).
func (e *Engine) fullInnerMTU() int {
	mtu := e.adapter.MTU()
	if e.l2 != nil && mtu > 0 {
		mtu += FrameOverhead
	}
	return mtu
}

// maxReplyFrame is the largest ICMP reply frame: an Ethernet header with
// two VLAN tags and the largest reply writeTooBig writes.
const maxReplyFrame = ethHeaderSize + maxVLANTags*vlanTagSize + icmpv6MaxReply

// overPathMTUFrame is overPathMTU for layer 2 (T4): payload, a frame
// header and a frame read from the TAP, is over lim, a path MTU in bytes
// of plaintext. The frame is dropped and counted (DropPathMTU); when it
// holds an IPv4 packet with DF or an IPv6 packet (writeTooBig's rules),
// the ICMP reply goes into s inside an Ethernet frame from the frame's
// destination MAC to its source, with its VLAN tags, carrying as MTU what
// an IP packet may have in such a frame. Where that is below IPv6's 1280
// bytes, an IPv6 packet up to 1280 goes on in a datagram the kernel may
// fragment (e.loose, as for IP packets) and a larger one learns 1280. It
// reports true: the frame was handled.
func (e *Engine) overPathMTUFrame(s *pmtuScratch, payload []byte, lim int) bool {
	return e.answerFrame(s, payload, lim, true)
}

// answerFrame is overPathMTUFrame; without loose an IPv6 packet up to
// 1280 bytes is dropped too (a flood: its frames go through no
// sendPeerBatch that could send them so).
func (e *Engine) answerFrame(s *pmtuScratch, payload []byte, lim int, loose bool) bool {
	frame := payload[frameHeaderSize:]
	hdr, et, ok := frameL3(frame)
	mtu := lim - frameHeaderSize - hdr
	if ok && et == etherTypeIPv6 && mtu < ipv6MinMTU {
		if loose && len(frame)-hdr <= ipv6MinMTU && e.loose(s, payload) {
			return true
		}
		mtu = ipv6MinMTU
	}
	e.drops.add(DropPathMTU, 1)
	if !ok || et != etherTypeIPv4 && et != etherTypeIPv6 {
		return true
	}
	off := e.adapterOffset()
	if s.n == len(s.replies) {
		s.replies = append(s.replies, make([]byte, off+maxReplyFrame))
	}
	r := s.replies[s.n]
	r = r[:cap(r)]
	if len(r) < off+maxReplyFrame {
		return true // a buffer made for IP packets: not in layer 2 mode
	}
	out := r[off:]
	k := writeTooBig(out[hdr:], frame[hdr:], mtu)
	if k == 0 {
		return true
	}
	copy(out[0:6], frame[6:12])
	copy(out[6:12], frame[0:6])
	copy(out[12:hdr], frame[12:hdr])
	s.replies[s.n] = r[:off+hdr+k]
	s.n++
	return true
}

// floodLimit returns the lowest path MTU of the peers ps (0: none
// lowered), probing each whose probe is due as a unicast send would.
func (e *Engine) floodLimit(ps []*peer, now time.Duration) int {
	lim := 0
	for _, p := range ps {
		if p.pmtu.inner.Load() == 0 {
			continue
		}
		p.mu.Lock()
		ep := p.endpoint
		p.mu.Unlock()
		if l := e.pathMTULimit(p, ep, now); l != 0 && (lim == 0 || l < lim) {
			lim = l
		}
	}
	return lim
}

// processOutboundL2 switches the n frames read from the TAP into o.
func (e *Engine) processOutboundL2(o *outbound, n int) {
	l := e.l2
	now := e.clock.Now()
	e.sweepMACs(now)
	maxFrame := ethHeaderSize + vlanTagSize + e.adapter.MTU()
	sc := &l.out
	flood := sc.flood[:0]
	for i := 0; i < n; {
		o.peers[i] = nil
		size := o.sizes[i]
		if size < ethHeaderSize || size > maxFrame {
			e.drops.add(DropFrameSize, 1)
			i++
			continue
		}
		frame := o.bufs[i][Offset+frameHeaderSize : Offset+frameHeaderSize+size]
		dst, src := frameMACs(frame)
		if src.IsGroup() {
			e.drops.add(DropSpoofedMAC, 1)
			i++
			continue
		}
		// A run of frames with the same MACs (a flow's segments, split
		// from one GSO frame or read together) is learned and looked up
		// once: what doing it per frame would do, for one lock and one
		// map access each instead of one per frame.
		end := i + 1
		for end < n && o.sizes[end] >= ethHeaderSize && o.sizes[end] <= maxFrame &&
			string(o.bufs[end][Offset+frameHeaderSize:Offset+frameHeaderSize+12]) == string(frame[:12]) {
			end++
		}
		run := uint64(end - i)
		res, old := l.macs.LearnFrames(src, nil, now, run)
		if res == mactable.Full {
			e.drops.add(DropMACTableFull, run)
			for k := i + 1; k < end; k++ {
				o.peers[k] = nil
			}
			i = end
			continue
		}
		if res == mactable.Moved {
			e.macMoved(src, old, nil)
		}
		p, known := l.macs.LookupFrames(dst, now, run)
		for ; i < end; i++ {
			o.peers[i] = nil
			putFrameHeader(o.bufs[i][Offset:], o.sizes[i])
			o.sizes[i] += frameHeaderSize
			switch {
			case known && p == nil:
				e.drops.add(DropLocalDestination, 1)
			case known:
				o.peers[i] = p
			default:
				flood = append(flood, i)
			}
		}
	}
	mtu := e.framePaddingMTU()
	if len(flood) > 0 {
		peers := e.peerList()
		if lim := e.floodLimit(peers, now); lim != 0 {
			// A flooded frame must fit every peer's path: the sender
			// learns the lowest.
			kept := flood[:0]
			for _, i := range flood {
				if o.sizes[i] > lim {
					e.answerFrame(&o.pmtu, o.bufs[i][Offset:Offset+o.sizes[i]], lim, false)
					continue
				}
				kept = append(kept, i)
			}
			flood = kept
			e.finishPathMTU(&o.pmtu, e.adapterOf(o.pipe))
		}
		if len(flood) == 0 {
			peers = nil
		}
		for _, p := range peers {
			bufs := sc.bufs[:0]
			for _, i := range flood {
				bufs = append(bufs, e.copyBuffer(o.bufs[i][Offset:Offset+o.sizes[i]]))
			}
			e.sendBuffers(p, bufs, sc, now, mtu)
			clear(bufs)
			sc.bufs = bufs[:0]
		}
	}
	sc.flood = flood[:0]
	for i := range n {
		if p := o.peers[i]; p != nil {
			e.sendPeerBatch(o, p, i, n, now, mtu)
		}
	}
}

// copyBuffer returns a pooled buffer holding payload at Offset.
func (e *Engine) copyBuffer(payload []byte) *packetBuffer {
	b := e.pool.get(len(payload))
	b.n = copy(b.b[Offset:], payload)
	return b
}

// sendBuffers seals and sends the pooled buffers bufs to p in one Send and
// puts them back, or stages them (they are then the staged queue's) when p
// has no usable session, as sendPeerBatch does for a batch. sc is the
// calling loop's scratch.
func (e *Engine) sendBuffers(p *peer, bufs []*packetBuffer, sc *frameScratch, now time.Duration, mtu int) {
	p.mu.Lock()
	kp := p.sendKeypairLocked(now)
	ep, local := p.endpoint, p.sourceLocked()
	if kp == nil || p.staged.len() > 0 || !ep.IsValid() {
		for _, b := range bufs {
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
	group := sc.group[:0]
	var bytes uint64
	exhausted := false
	lim := e.pathMTULimit(p, ep, now) // 0 unless lowered (pmtu.go)
	mtu = paddingCap(mtu, lim)
	sizes := sc.sizes[:0]
	k := 0 // bufs[:k] are to be sealed
	for i, b := range bufs {
		bufs[i] = nil
		if lim != 0 && b.n > lim {
			// Over this peer's path (a flood checked every peer's
			// before): only a hub's forwarded frame, whose sender is
			// not on the TAP to be told.
			e.drops.add(DropPathMTU, 1)
			e.pool.put(b)
			continue
		}
		bufs[k] = b
		k++
		group = append(group, b.b)
		sizes = append(sizes, b.n)
	}
	bufs = bufs[:k]
	sc.sizes = sizes[:0]
	sealed := sealBatch(kp, group, sizes, mtu, nil) // counters in batch order
	for i, b := range bufs[sealed:] {
		exhausted = true // ErrRejectAfterMessages: stage for the next session
		p.mu.Lock()
		p.stageLocked(b)
		p.mu.Unlock()
		bufs[sealed+i] = nil
	}
	clear(group[sealed:])
	group, bytes = e.keepSealed(group[:sealed])
	if len(group) > 0 {
		e.batches.transportSend.add(len(group))
		p.send(group, ep, local)
	}
	clear(group)
	sc.group = group[:0]
	for _, b := range bufs {
		if b != nil {
			e.pool.put(b)
		}
	}
	if len(group) == 0 && !exhausted {
		return
	}
	p.sent(kp, now, bytes, len(group) > 0, exhausted)
}

// inboundFrame handles the authenticated non-empty payload pt from p (steps
// in the file comment). It reports whether the frame goes to the TAP, and
// its length with the frame header.
func (e *Engine) inboundFrame(p *peer, pt []byte, now time.Duration) (int, bool) {
	l := e.l2
	frame, reason, ok := parseFrame(pt)
	if !ok {
		e.drops.add(reason, 1)
		if reason == DropModeMismatch {
			e.logModeMismatch(p, "peer sends IP packets, not Ethernet frames: it runs in TUN mode; set Mode = tap in its [Interface], or Mode = tun here")
		}
		return 0, false
	}
	dst, src := frameMACs(frame)
	if src.IsGroup() {
		e.drops.add(DropSpoofedMAC, 1)
		return 0, false
	}
	owner, listed := (*l.allowedMACs.Load())[src]
	if listed && owner != p || !listed && p.restrictMACs.Load() {
		e.drops.add(DropSpoofedMAC, 1)
		return 0, false
	}
	addr, reason, ok := frameSender(frame)
	if !ok {
		e.drops.add(reason, 1)
		return 0, false
	}
	if addr.IsValid() {
		var ips []netip.Prefix
		if a := p.allowedIPs.Load(); a != nil {
			ips = *a
		}
		if !senderAllowed(ips, addr) {
			e.drops.add(DropSourceCheck, 1)
			return 0, false
		}
	}
	r := &l.run
	var to *peer
	var known bool
	if r.valid && r.p == p && r.src == src && r.dst == dst && r.now == now {
		// The run goes on: Learn and Lookup would do what they did for
		// its first frame; the frame is counted at the batch's end.
		r.n++
		to, known = r.to, r.known
	} else {
		l.flushRun()
		res, old := l.macs.Learn(src, p, now)
		switch res {
		case mactable.Full:
			e.drops.add(DropMACTableFull, 1)
			return 0, false
		case mactable.Moved:
			e.macMoved(src, old, p)
		}
		to, known = l.macs.Lookup(dst, now)
		*r = frameRun{valid: true, p: p, src: src, dst: dst, now: now, to: to, known: known}
	}
	forward := l.forward.Load()
	switch {
	case known && to == nil:
		return frameHeaderSize + len(frame), true
	case known && (to == p || !forward):
		e.drops.add(DropSplitHorizon, 1)
		return 0, false
	case known:
		e.forwardFrame(to, nil, pt[:frameHeaderSize+len(frame)], now)
		return 0, false
	}
	if forward {
		e.forwardFrame(nil, p, pt[:frameHeaderSize+len(frame)], now)
	}
	return frameHeaderSize + len(frame), true
}

// frameRun is the run of frames inboundFrame is in: consecutive frames
// from one peer with the same MACs in one batch (a flow's segments), whose
// source is learned and destination looked up once, for the first.
type frameRun struct {
	valid    bool
	p        *peer
	src, dst mactable.MAC
	now      time.Duration
	to       *peer // what Lookup(dst) gave
	known    bool
	n        uint64 // frames after the first, not yet counted in the table
}

// flushRun counts the frames of the run after its first in the MAC table,
// as their Learn and Lookup would have, and ends the run.
func (l *layer2) flushRun() {
	r := &l.run
	if r.valid && r.n > 0 {
		l.macs.CountFrames(r.src, r.p, r.n)
		if r.known {
			l.macs.CountFrames(r.dst, r.to, r.n)
		}
	}
	*r = frameRun{}
}

// endInbound ends the run of a batch of received payloads (receiveLoop,
// after the batch): its frames are counted, and the next batch learns again.
func (e *Engine) endInbound() {
	if e.l2 != nil {
		e.l2.flushRun()
	}
}

// forwardFrame sends a copy of payload (frame header and frame) to the peer
// to, or with to nil to every peer but from (Forward = true). It runs on
// receiveLoop.
func (e *Engine) forwardFrame(to, from *peer, payload []byte, now time.Duration) {
	sc := &e.l2.in
	mtu := e.framePaddingMTU()
	send := func(p *peer) {
		bufs := append(sc.bufs[:0], e.copyBuffer(payload))
		e.sendBuffers(p, bufs, sc, now, mtu)
		clear(bufs)
		sc.bufs = bufs[:0]
	}
	if to != nil {
		send(to)
		return
	}
	for _, p := range e.peerList() {
		if p != from {
			send(p)
		}
	}
}

// macMoved counts a MAC that moved from port old to port to (nil: local)
// and logs it at debug level.
func (e *Engine) macMoved(m mactable.MAC, old, to *peer) {
	e.l2.moves.Add(1)
	if e.log.Enabled(context.Background(), slog.LevelDebug) {
		e.log.Debug("MAC moved", "mac", m.String(), "from", portName(old), "to", portName(to))
	}
}

func portName(p *peer) string {
	if p == nil {
		return "local"
	}
	return p.publicKey.String()
}

// logModeMismatch logs msg once for p (T3); the drops go on being counted.
func (e *Engine) logModeMismatch(p *peer, msg string) {
	if p.mismatch.CompareAndSwap(false, true) {
		e.log.Warn(msg, "peer", p.publicKey.String())
	}
}

// sweepMACs removes expired MAC table entries every macSweepEvery.
func (e *Engine) sweepMACs(now time.Duration) {
	last := e.l2.lastSweep.Load()
	if now-time.Duration(last) < macSweepEvery || !e.l2.lastSweep.CompareAndSwap(last, int64(now)) {
		return
	}
	e.l2.macs.Sweep(now)
}

// setAllowedMACsLocked publishes the AllowedMACs of the peers ps (with
// their configurations pcs) and drops those of removed peers. e.state must
// be held.
func (e *Engine) setAllowedMACsLocked(ps []*peer, pcs []PeerConfig) {
	for i, p := range ps {
		if p != nil {
			p.restrictMACs.Store(len(pcs[i].AllowedMACs) > 0)
		}
	}
	if e.l2 == nil {
		return
	}
	live := e.peerList()
	m := map[mactable.MAC]*peer{}
	for mac, q := range *e.l2.allowedMACs.Load() {
		if slices.Contains(live, q) && !slices.Contains(ps, q) {
			m[mac] = q
		}
	}
	for i, p := range ps {
		if p == nil {
			continue
		}
		for _, mac := range pcs[i].AllowedMACs {
			m[mac] = p
		}
	}
	e.l2.allowedMACs.Store(&m)
}

// SetAllowedMACs replaces the AllowedMACs of the peers pcs name (only
// PublicKey and AllowedMACs are read; an empty list lets the peer send
// from any MAC), as a reload does (T1); a MAC two of them list belongs to
// the later one, as with SetConfig. MAC table entries the new lists forbid
// are removed at once: a MAC now listed for one peer and bound to another
// port, and a MAC bound to a peer whose list no longer has it; they are
// learned again from the next frame that may carry them. Unknown peers
// are ignored. It does nothing in TUN mode.
func (e *Engine) SetAllowedMACs(pcs []PeerConfig) {
	e.state.Lock()
	defer e.state.Unlock()
	if e.l2 == nil || e.state.closed {
		return
	}
	ps := make([]*peer, len(pcs))
	for i := range pcs {
		ps[i] = e.peerByKey(pcs[i].PublicKey) // nil: skipped
	}
	e.setAllowedMACsLocked(ps, pcs)
	allowed := *e.l2.allowedMACs.Load()
	for _, en := range e.l2.macs.Entries(e.clock.Now()) {
		owner, listed := allowed[en.MAC]
		if listed && owner != en.Port || !listed && en.Port != nil && en.Port.restrictMACs.Load() {
			e.l2.macs.Remove(en.MAC)
		}
	}
}

// SetForward turns Forward (a hub's frames from one peer on to the
// others) on or off from the next frame; it does nothing in TUN mode.
func (e *Engine) SetForward(on bool) {
	if e.l2 != nil {
		e.l2.forward.Store(on)
	}
}

// allowedMACsOf returns p's AllowedMACs in order.
func (e *Engine) allowedMACsOf(p *peer) []mactable.MAC {
	if e.l2 == nil {
		return nil
	}
	var out []mactable.MAC
	for mac, q := range *e.l2.allowedMACs.Load() {
		if q == p {
			out = append(out, mac)
		}
	}
	slices.SortFunc(out, func(a, b mactable.MAC) int { return bytes.Compare(a[:], b[:]) })
	return out
}

// MACEntry is one MAC table entry as `warren show` lists it.
type MACEntry struct {
	MAC    mactable.MAC
	Peer   crypto.PublicKey // zero when Local
	Local  bool             // learned from the TAP
	Age    time.Duration    // since the MAC was last seen
	Frames uint64           // frames from or to it since it was bound
}

// MACTable returns the live MAC table sorted by MAC; nil in TUN mode.
func (e *Engine) MACTable() []MACEntry {
	if e.l2 == nil {
		return nil
	}
	ents := e.l2.macs.Entries(e.clock.Now())
	out := make([]MACEntry, 0, len(ents))
	for _, en := range ents {
		me := MACEntry{MAC: en.MAC, Local: en.Port == nil, Age: en.Age, Frames: en.Frames}
		if en.Port != nil {
			me.Peer = en.Port.publicKey
		}
		out = append(out, me)
	}
	slices.SortFunc(out, func(a, b MACEntry) int { return bytes.Compare(a.MAC[:], b.MAC[:]) })
	return out
}

// MACMoves returns how many times a MAC moved between ports; 0 in TUN mode.
func (e *Engine) MACMoves() uint64 {
	if e.l2 == nil {
		return 0
	}
	return e.l2.moves.Load()
}
