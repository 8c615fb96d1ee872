package tunnel

// Path MTU (DESIGN.md "Path MTU", RELIABILITY PM1-PM7). The outer
// datagrams leave with DF set, so a narrower link on the way to a peer is
// not hidden by fragmentation (IPv4) or a black hole (IPv6): the kernel
// learns the path MTU from the routers' ICMP, which it checks against our
// own socket, and refuses larger datagrams. The steps:
//
//  1. Transport.Send fails a datagram the kernel refuses as too big
//     (EMSGSIZE) with an error that wraps a value with a method
//     PathMTU() int: the kernel's path MTU toward that endpoint
//     (transport.PathMTUError). Engine.send passes it to notePathMTU and
//     counts the datagrams refused as path_mtu, not send_error.
//  2. notePathMTU lowers the effective inner MTU of the peers at that
//     endpoint to the path MTU less the outer IP and UDP headers and the
//     32 bytes of a data message's header and tag. A value that leaves
//     less than IPv4's minimum is refused; one below IPv6's 1280 applies
//     to IPv4 packets only (RFC 8200 5): IPv6 packets over 1280 learn
//     1280, and those up to 1280 leave in outer datagrams the kernel may
//     fragment (sendLoose), the link fragmentation RFC 8200 asks of such a
//     path. Both are logged.
//  3. sendPeerBatch and flushStaged check each packet against the peer's
//     limit before sealing (overPathMTU): an IPv4 packet without DF is
//     fragmented as a router would (RFC 791); any other is dropped
//     (counted as path_mtu) and answered with ICMP fragmentation needed or
//     ICMPv6 packet too big (writeTooBig, icmp.go), written back through
//     the adapter, so that the sending host lowers its own path MTU and
//     TCP its segment size. Padding stops at the limit too.
//  4. Once Options.PathMTUProbe has passed since the last change, the next
//     packet to the peer asks the transport for the kernel's current path
//     MTU (a method PathMTU(netip.AddrPort) (int, error) of the transport)
//     and raises the peer's limit if it rose, or drops it when the kernel
//     no longer holds a lower one; a path still narrow makes the kernel
//     refuse the next large datagram, and step 1 lowers it again. The
//     kernel forgets a learnt path MTU after net.ipv4.route.mtu_expires
//     (and the IPv6 one), 10 minutes by default, as the default interval.
//
// The limit is two atomics read once per peer per batch; the work above
// happens only for packets over it.

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/uapi"
)

// Path MTU constants.
const (
	// DefaultPathMTUProbe is how long a lowered path MTU stands before
	// the engine checks whether the path has widened again: the kernel's
	// default lifetime of a learnt path MTU (net.ipv4.route.mtu_expires).
	DefaultPathMTUProbe = 10 * time.Minute

	udpHeaderSize   = 8                   // bytes
	messageOverhead = crypto.DataOverhead // data message header and tag, bytes
)

// pathMTU is a peer's path MTU state. Readers load the atomics; changes
// happen under mu, which is never held across a system call.
type pathMTU struct {
	inner   atomic.Int32 // effective inner MTU, bytes; 0: not lowered
	outer   atomic.Int32 // the outer path MTU inner comes from, bytes; 0: not lowered
	probeAt atomic.Int64 // Clock.Now (a time.Duration) of the next probe
	mu      sync.Mutex   // serialises changes of the three fields above
	log     logLimit     // refusals of one peer
}

// pathMTUOf returns the path MTU that err from Transport.Send reports, or
// 0 when it reports none.
func pathMTUOf(err error) int {
	var pm interface{ PathMTU() int }
	if err == nil || !errors.As(err, &pm) {
		return 0
	}
	return pm.PathMTU()
}

// sendDropReason is the drop reason for datagrams a send with err did not
// send: DropPathMTU when the kernel refused them as larger than the path
// MTU (EMSGSIZE, with or without a figure), else DropSendError.
func sendDropReason(err error) DropReason {
	if errors.Is(err, syscall.EMSGSIZE) {
		return DropPathMTU
	}
	return DropSendError
}

// outerOverhead is what an inner packet gains on its way to ep: the outer
// IP and UDP headers and the data message's header and tag.
func outerOverhead(ep netip.AddrPort) int {
	if ep.Addr().Unmap().Is4() {
		return ipv4HeaderSize + udpHeaderSize + messageOverhead
	}
	return ipv6HeaderSize + udpHeaderSize + messageOverhead
}

// notePathMTU lowers the path MTU of the peers at ep when err from a send
// to ep reports one (step 1).
func (e *Engine) notePathMTU(ep netip.AddrPort, err error) {
	outer := pathMTUOf(err)
	if outer <= 0 {
		return
	}
	for _, p := range e.peerList() {
		p.mu.Lock()
		match := p.endpoint == ep
		p.mu.Unlock()
		if match {
			p.lowerPathMTU(ep, outer)
		}
	}
}

// lowerPathMTU applies outer, the kernel's path MTU toward ep, to p unless
// p already uses a lower one or it leaves less than IPv4's minimum (step
// 2).
func (p *peer) lowerPathMTU(ep netip.AddrPort, outer int) {
	e := p.e
	inner := outer - outerOverhead(ep)
	now := e.clock.Now()
	if inner < ipv4MinMTU {
		if p.pmtu.log.allow(now) {
			e.log.Warn("path MTU refused: below the minimum", "peer", shortKey(p.publicKey),
				"endpoint", ep, "path_mtu", outer, "mtu", inner, "min", ipv4MinMTU)
		}
		return
	}
	if full := e.fullInnerMTU(); full > 0 && inner >= full {
		return // the adapter's MTU fits: nothing to lower
	}
	p.pmtu.mu.Lock()
	if cur := int(p.pmtu.inner.Load()); cur != 0 && inner >= cur {
		p.pmtu.mu.Unlock()
		return
	}
	p.pmtu.inner.Store(int32(inner))
	p.pmtu.outer.Store(int32(outer))
	p.pmtu.probeAt.Store(int64(now + e.pmtuProbe))
	p.pmtu.mu.Unlock()
	e.log.Info("path MTU lowered", "peer", shortKey(p.publicKey), "endpoint", ep, "path_mtu", outer, "mtu", inner)
	if inner < ipv6MinMTU {
		e.log.Warn("path MTU below IPv6's minimum: applied to IPv4 packets only", "peer", shortKey(p.publicKey),
			"endpoint", ep, "mtu", inner, "min", ipv6MinMTU)
	}
}

// pathMTULimit returns the inner MTU packets to p must fit, 0 when not
// lowered, first probing whether the path widened when that is due (step
// 4).
func (e *Engine) pathMTULimit(p *peer, ep netip.AddrPort, now time.Duration) int {
	lim := int(p.pmtu.inner.Load())
	if lim == 0 || e.pmtuProbe < 0 {
		return lim
	}
	at := p.pmtu.probeAt.Load()
	if int64(now) < at || !p.pmtu.probeAt.CompareAndSwap(at, int64(now+e.pmtuProbe)) {
		return lim
	}
	e.probePathMTU(p, ep, now)
	return int(p.pmtu.inner.Load())
}

// probePathMTU raises p's path MTU to the kernel's current one toward ep,
// or back to the adapter's when the kernel holds no lower one or the
// transport cannot tell (step 4). The caller has claimed the probe.
func (e *Engine) probePathMTU(p *peer, ep netip.AddrPort, now time.Duration) {
	outer := 0
	if q, ok := e.transport().(interface {
		PathMTU(netip.AddrPort) (int, error)
	}); ok {
		if m, err := q.PathMTU(ep); err == nil {
			outer = m
		}
	}
	inner := 0
	if outer > 0 {
		inner = outer - outerOverhead(ep)
		if full := e.fullInnerMTU(); full > 0 && inner >= full {
			inner, outer = 0, 0
		}
	}
	p.pmtu.mu.Lock()
	cur := int(p.pmtu.inner.Load())
	if cur == 0 || (inner != 0 && inner <= cur) {
		p.pmtu.mu.Unlock()
		e.log.Debug("path MTU probed: unchanged", "peer", shortKey(p.publicKey), "endpoint", ep, "path_mtu", outer)
		return
	}
	p.pmtu.inner.Store(int32(inner))
	p.pmtu.outer.Store(int32(outer))
	p.pmtu.mu.Unlock()
	if inner == 0 {
		e.log.Info("path MTU raised: full MTU", "peer", shortKey(p.publicKey), "endpoint", ep, "mtu", e.adapter.MTU())
		return
	}
	e.log.Info("path MTU raised", "peer", shortKey(p.publicKey), "endpoint", ep, "path_mtu", outer, "mtu", inner)
}

// pathMTUExtras returns p's path MTU as the get=warren line of its peer
// section, none when not lowered:
//
//	warren_path_mtu=<outer path MTU> <inner MTU>
func (p *peer) pathMTUExtras() []uapi.Extra {
	outer, inner := p.pmtu.outer.Load(), p.pmtu.inner.Load()
	if inner == 0 {
		return nil
	}
	v := strconv.Itoa(int(outer)) + " " + strconv.Itoa(int(inner))
	return []uapi.Extra{{Key: "warren_path_mtu", Value: v}}
}

// paddingCap returns the padding cap of packets to a peer: the adapter's
// MTU (mtu, 0 for none) or the peer's limit lim if lower.
func paddingCap(mtu, lim int) int {
	if lim > 0 && (mtu == 0 || lim < mtu) {
		return lim
	}
	return mtu
}

// pmtuScratch holds what a send path does with packets over a peer's path
// MTU: ICMP replies for the adapter and fragments to seal. Its buffers are
// made on first use and kept, so that readLoop allocates nothing per packet
// once warm.
type pmtuScratch struct {
	replies [][]byte        // each adapterOffset+icmpv6MaxReply bytes
	n       int             // replies in use
	frags   []*packetBuffer // fragments to seal, from the engine's pool
	// loose are IPv6 packets over a limit below 1280 bytes, to seal and
	// send in datagrams the kernel may fragment (sendLoose).
	loose  []*packetBuffer
	sealed [][]byte // loose's messages, for the send
}

// looseSender is a transport that can send datagrams the kernel may
// fragment (transport.UDP.SendFragmentable).
type looseSender interface {
	SendFragmentable(bufs [][]byte, ep netip.AddrPort, local netip.Addr) (int, error)
}

// loose copies pkt into a pool buffer on s.loose, to be sent where the
// kernel may fragment it, and reports whether the transport can.
func (e *Engine) loose(s *pmtuScratch, pkt []byte) bool {
	if _, ok := e.transport().(looseSender); !ok {
		return false
	}
	b := e.pool.get(len(pkt))
	b.n = copy(b.b[Offset:], pkt)
	s.loose = append(s.loose, b)
	return true
}

// sendLoose seals s.loose under kp, padded to at most pad, and sends them
// to ep from local on tr in datagrams the kernel may fragment: the link
// fragmentation RFC 8200 5 asks of a path narrower than IPv6's minimum. It
// returns the bytes sent. The buffers go back to the pool in
// finishPathMTU.
func (e *Engine) sendLoose(s *pmtuScratch, kp *keypair, pad int, tr Transport, ep netip.AddrPort, local netip.Addr) uint64 {
	ls, ok := tr.(looseSender)
	if !ok {
		e.drops.add(DropPathMTU, uint64(len(s.loose)))
		return 0
	}
	var bytes uint64
	s.sealed = s.sealed[:0]
	for _, b := range s.loose {
		m, err := kp.Seal(b.b, b.n, pad)
		if err != nil {
			e.drops.add(DropPathMTU, 1)
			continue
		}
		s.sealed = append(s.sealed, b.b[:m])
		bytes += uint64(m)
	}
	if len(s.sealed) == 0 {
		return 0
	}
	n, err := ls.SendFragmentable(s.sealed, ep, local)
	if n < len(s.sealed) {
		e.drops.add(sendDropReason(err), uint64(len(s.sealed)-max(n, 0)))
	}
	if err != nil {
		e.warn.warn("send", "send failed", "endpoint", ep, "err", err)
	}
	clear(s.sealed)
	return bytes
}

// overPathMTU handles pkt, a packet over lim, p's path MTU, and reports
// whether it did (step 3): an IPv4 packet without DF is split into
// fragments appended to s.frags, any other is dropped and, where the RFCs
// allow, answered with an ICMP reply queued in s. Over a limit below
// IPv6's minimum, an IPv6 packet of up to 1280 bytes goes on s.loose when
// the transport can send it fragmentable (else it goes on as it is, not
// handled), and a larger one is answered with 1280.
func (e *Engine) overPathMTU(s *pmtuScratch, pkt []byte, lim int) bool {
	if len(pkt) == 0 {
		return false
	}
	if e.l2 != nil {
		return e.overPathMTUFrame(s, pkt, lim) // a frame (switch.go)
	}
	mtu := lim
	switch pkt[0] >> 4 {
	case 6:
		if lim < ipv6MinMTU {
			// IPv6 needs 1280 bytes of link (RFC 8200 5): up to that the
			// packet goes in an outer datagram the kernel may fragment,
			// beyond it the host learns 1280.
			if len(pkt) <= ipv6MinMTU {
				return e.loose(s, pkt) // or it goes on as it is
			}
			mtu = ipv6MinMTU
		}
	case 4:
		if len(pkt) >= ipv4HeaderSize && binary.BigEndian.Uint16(pkt[6:8])&ipv4FlagDF == 0 {
			if e.fragment(s, pkt, lim) {
				return true
			}
		}
	}
	e.drops.add(DropPathMTU, 1)
	s.addReply(e.adapterOffset(), writeTooBig(s.nextReply(e.adapterOffset()), pkt, mtu))
	return true
}

// fragment splits the IPv4 packet pkt into fragments of at most lim
// bytes in pool buffers appended to s.frags. It reports false, leaving
// s.frags as it was, for a packet it cannot split.
func (e *Engine) fragment(s *pmtuScratch, pkt []byte, lim int) bool {
	start := len(s.frags)
	for off := 0; ; {
		b := e.pool.get(lim)
		n, next := fragmentIPv4(b.b[Offset:], pkt, lim, off)
		if n == 0 {
			e.pool.put(b)
			for _, f := range s.frags[start:] {
				e.pool.put(f)
			}
			clear(s.frags[start:])
			s.frags = s.frags[:start]
			return false
		}
		b.n = n
		s.frags = append(s.frags, b)
		if next == 0 {
			return true
		}
		off = next
	}
}

// sealFragments seals s.frags under kp, padded to at most pad, and
// appends the messages to group; fragments that cannot be sealed (the
// keypair is exhausted) are dropped. It returns group and the bytes added.
func (e *Engine) sealFragments(s *pmtuScratch, kp *keypair, pad int, group [][]byte) ([][]byte, uint64) {
	var bytes uint64
	for i, b := range s.frags {
		m, err := kp.Seal(b.b, b.n, pad)
		if err != nil {
			e.drops.add(DropPathMTU, 1)
			e.pool.put(b)
			s.frags[i] = nil
			continue
		}
		group = append(group, b.b[:m])
		bytes += uint64(m)
	}
	return group, bytes
}

// finishPathMTU returns s's fragments to the pool and writes its replies to
// ad, once the messages have been sent.
func (e *Engine) finishPathMTU(s *pmtuScratch, ad Adapter) {
	for _, b := range s.frags {
		if b != nil {
			e.pool.put(b)
		}
	}
	clear(s.frags)
	s.frags = s.frags[:0]
	for _, b := range s.loose {
		e.pool.put(b)
	}
	clear(s.loose)
	s.loose = s.loose[:0]
	if s.n == 0 {
		return
	}
	replies := s.replies[:s.n]
	s.n = 0
	w, err := ad.Write(replies, e.adapterOffset())
	if w < len(replies) {
		e.drops.add(DropWriteError, uint64(len(replies)-max(w, 0)))
	}
	if err != nil {
		e.warn.warn("path MTU reply", "writing ICMP replies failed", "err", err)
	}
	for i, r := range replies {
		replies[i] = r[:cap(r)]
	}
}

// fragmentIPv4 writes into dst the fragment of the IPv4 packet pkt whose
// data starts at off bytes past pkt's header, at most mtu bytes long, and
// returns its length and the offset of the next fragment, 0 after the
// last (RFC 791 3.2, "An Example Fragmentation Procedure"). The first
// fragment carries pkt's options, later ones only those marked copied. A
// fragment of a fragment keeps the original offset and MF. It returns n 0
// for a malformed packet, an mtu too small for 8 bytes of data, or a dst
// too short.
func fragmentIPv4(dst, pkt []byte, mtu, off int) (n, next int) {
	if len(pkt) < ipv4HeaderSize || pkt[0]>>4 != 4 {
		return 0, 0
	}
	ihl := int(pkt[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(pkt[2:4]))
	if ihl < ipv4HeaderSize || total < ihl || total > len(pkt) || off < 0 || off >= total-ihl {
		return 0, 0
	}
	// The header: the whole of it first, then the copied options only.
	hdr := ihl
	if off > 0 {
		copy(dst[:min(len(dst), ipv4HeaderSize)], pkt[:ipv4HeaderSize])
		hdr = ipv4HeaderSize
		opts := pkt[ipv4HeaderSize:ihl]
		for i := 0; i < len(opts); {
			t := opts[i]
			if t == 0 { // end of options list
				break
			}
			if t == 1 { // no operation
				i++
				continue
			}
			if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
				break
			}
			l := int(opts[i+1])
			if t&0x80 != 0 && hdr+l <= len(dst) {
				copy(dst[hdr:], opts[i:i+l])
				hdr += l
			}
			i += l
		}
		for hdr%4 != 0 && hdr < len(dst) {
			dst[hdr] = 0
			hdr++
		}
	} else if len(dst) >= ihl {
		copy(dst, pkt[:ihl])
	}
	room := min(mtu, len(dst)) - hdr
	if room < 8 {
		return 0, 0
	}
	data := total - ihl - off
	last := data <= room
	if !last {
		data = room &^ 7
	}
	copy(dst[hdr:], pkt[ihl+off:ihl+off+data])
	n = hdr + data
	dst[0] = 0x40 | byte(hdr/4)
	binary.BigEndian.PutUint16(dst[2:4], uint16(n))
	field := binary.BigEndian.Uint16(pkt[6:8])
	if int(field&ipv4FragOffsetMask)+off/8 > ipv4FragOffsetMask {
		return 0, 0
	}
	frag := (field & ipv4FragOffsetMask) + uint16(off/8)
	if !last || field&0x2000 != 0 {
		frag |= 0x2000 // more fragments
	}
	binary.BigEndian.PutUint16(dst[6:8], frag|field&0x8000) // keep the reserved bit as it was
	dst[10], dst[11] = 0, 0
	binary.BigEndian.PutUint16(dst[10:12], ^foldChecksum(sumChecksum(dst[:hdr], 0)))
	if last {
		return n, 0
	}
	return n, off + data
}
