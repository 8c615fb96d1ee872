package tunnel

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenvpn/warren/crypto"
)

// peer is one remote WireGuard peer of an Engine.
type peer struct {
	e         *Engine
	publicKey crypto.PublicKey

	// Layer 2 mode (switch.go).
	allowedIPs   atomic.Pointer[[]netip.Prefix] // as configured, checked against senders inside frames
	restrictMACs atomic.Bool                    // AllowedMACs is set: other source MACs are spoofed
	mismatch     atomic.Bool                    // the mode mismatch with this peer was logged (T3)

	// handshake serialises this peer's handshake steps (creating an
	// initiation, answering one, consuming a response, timers that wipe,
	// configuration changes of the handshakes) so that each sees the state
	// the previous one left. The X25519 work of a step runs under handshake
	// with mu released, so that the send and receive loops, which take mu
	// but never handshake, are not held up by it. Whoever takes a
	// crypto.Handshake's own lock while holding mu holds handshake too, and
	// so never waits for X25519 either.
	handshake sync.Mutex
	// initiationQueued reports whether p is on Engine.initiations.
	initiationQueued atomic.Bool

	mu sync.Mutex // guards the fields below
	// initiator runs the handshakes we start and responder the ones the
	// peer starts. Keeping the two roles apart lets simultaneous initiations
	// (P17) both complete instead of overwriting each other. Both are
	// internally locked; they are replaced only under handshake and mu.
	initiator *crypto.Handshake
	responder *crypto.Handshake

	psk      crypto.PresharedKey
	endpoint netip.AddrPort
	// local is our address the peer last wrote to, learnt with endpoint
	// from an authenticated packet or a handshake: what we send to the
	// peer leaves from it, as in the kernel's implementation, so that a
	// host with several addresses answers from the one the peer reached
	// (RO6, RO7). The zero Addr leaves the choice to the system: at first,
	// after configuration sets the endpoint, and once the system refuses
	// local because the address is gone (RO5; forgetLocal), and once the
	// system's own choice toward the peer changes, a route having changed
	// (RO8; checkSource).
	local netip.Addr
	// localRoute is the system's own source choice toward endpoint when
	// checkSource last looked (zero: not yet, since local was learnt);
	// localChecked is when, and localDue asks for a look at the next packet.
	localRoute   netip.Addr
	localChecked time.Duration
	localDue     bool

	keepalive time.Duration // persistent keepalive interval; 0 disables
	pmtu      pathMTU       // path MTU toward the endpoint (pmtu.go)
	gate      sendGate      // bounds the drift of several pipelines (pipeline.go)
	keys      struct {
		current  *keypair // confirmed session used for sending
		previous *keypair // still opens packets in flight after a rotation
		next     *keypair // responder's session awaiting confirmation (P9)
	}
	initiatorIndex uint32 // index of our outstanding initiation; 0 if none
	timers         peerTimers
	staged         stagedQueue
	lastHandshake  time.Time // wall clock, for statistics
	removed        bool
	// loggedEndpoint is the endpoint Tick last saw or configuration set;
	// Tick logs a roam when p.endpoint differs from it, so that the
	// receive path, which updates the endpoint, never logs.
	loggedEndpoint netip.AddrPort
	// responderDone says that a handshake we answered was confirmed and
	// awaits its log line, which Tick writes with no lock held.
	responderDone bool

	txBytes atomic.Uint64
	rxBytes atomic.Uint64

	// Counters for metrics (see Engine.PeerCounters).
	handshakes atomic.Uint64 // completed handshakes, either role
	keepalives atomic.Uint64 // keepalives sent: timer, persistent and key confirmation

	// Per-peer limits of the Info lines a flapping peer could repeat.
	failLog, roamLog logLimit
}

// keypair is one transport session of a peer.
type keypair struct {
	*crypto.Keypair
	peer    *peer
	created time.Duration // Clock.Now at derivation
}

// isExpired reports whether k is past Reject-After-Time at now (R7).
func (k *keypair) isExpired(now time.Duration) bool { return now-k.created >= RejectAfterTime }

// sendKeypairLocked returns the keypair to seal with, or nil when a
// handshake is needed first. p.mu must be held.
func (p *peer) sendKeypairLocked(now time.Duration) *keypair {
	kp := p.keys.current
	if kp == nil || kp.isExpired(now) {
		return nil
	}
	return kp
}

// installInitiatorKeypairLocked makes kp, derived by us as initiator, the
// current session. An unconfirmed responder session becomes the previous
// one so that packets the peer sealed under it still open (P17); the rules
// are wireguard-go's BeginSymmetricSession. p.mu must be held.
func (p *peer) installInitiatorKeypairLocked(kp *keypair) {
	if p.keys.previous != nil {
		p.retireLocked(p.keys.previous)
	}
	if p.keys.next != nil {
		p.keys.previous = p.keys.next
		p.keys.next = nil
		if p.keys.current != nil {
			p.retireLocked(p.keys.current)
		}
	} else {
		p.keys.previous = p.keys.current
	}
	p.keys.current = kp
}

// installResponderKeypairLocked parks kp, derived by us as responder, as
// the next session until the initiator's first packet confirms it (P9).
// p.mu must be held.
func (p *peer) installResponderKeypairLocked(kp *keypair) {
	if p.keys.next != nil {
		p.retireLocked(p.keys.next)
	}
	p.keys.next = kp
	if p.keys.previous != nil {
		p.retireLocked(p.keys.previous)
		p.keys.previous = nil
	}
}

// confirmLocked promotes kp if it is the next keypair: the initiator used
// it, so key confirmation is done. It reports whether it did. p.mu must be
// held.
func (p *peer) confirmLocked(kp *keypair) bool {
	if p.keys.next != kp {
		return false
	}
	if p.keys.previous != nil {
		p.retireLocked(p.keys.previous)
	}
	p.keys.previous = p.keys.current
	p.keys.current = kp
	p.keys.next = nil
	return true
}

// retireLocked removes kp from the index table. p.mu must be held.
func (p *peer) retireLocked(kp *keypair) {
	p.e.indices.remove(kp.LocalIndex)
}

// wipeLocked forgets every keypair and handshake of p (Down, give-up with
// key expiry, private key change). p.handshake and p.mu must be held.
func (p *peer) wipeLocked() {
	for _, kp := range []*keypair{p.keys.current, p.keys.previous, p.keys.next} {
		if kp != nil {
			p.retireLocked(kp)
		}
	}
	p.keys.current, p.keys.previous, p.keys.next = nil, nil, nil
	p.clearHandshakesLocked()
}

// clearHandshakesLocked forgets the pending handshakes. p.handshake and
// p.mu must be held.
func (p *peer) clearHandshakesLocked() {
	p.abandonInitiationLocked()
	if p.responder != nil {
		p.responder.Clear()
	}
}

// abandonInitiationLocked forgets our outstanding initiation. p.handshake
// and p.mu must be held.
func (p *peer) abandonInitiationLocked() {
	if p.initiatorIndex != 0 {
		p.e.indices.remove(p.initiatorIndex)
		p.initiatorIndex = 0
	}
	if p.initiator != nil {
		p.initiator.Clear()
	}
}

// wipeSecretsLocked zeroes the secrets p holds: its preshared key and its
// handshakes' static-static secrets, preshared keys and cookies. p is
// removed or its engine closed: it never handshakes again. p.handshake and
// p.mu must be held.
func (p *peer) wipeSecretsLocked() {
	clear(p.psk[:])
	if p.initiator != nil {
		p.initiator.Wipe()
		p.responder.Wipe()
	}
}

// purgeStagedLocked drops every staged packet and counts them. p.mu must be
// held.
func (p *peer) purgeStagedLocked() {
	for b := p.staged.pop(); b != nil; b = p.staged.pop() {
		p.e.pool.put(b)
		p.e.drops.add(DropStagedPurged, 1)
	}
}

// setEndpoint sets the peer's endpoint (configuration); IPv4-mapped
// addresses are unmapped as the transport reports them. The source address
// goes back to the system's choice, as in the kernel's implementation: the
// address the peer last wrote to may not reach the new endpoint.
func (p *peer) setEndpoint(ep netip.AddrPort) {
	p.mu.Lock()
	p.endpoint = netip.AddrPortFrom(ep.Addr().Unmap(), ep.Port())
	p.local, p.localRoute = netip.Addr{}, netip.Addr{}
	p.loggedEndpoint = p.endpoint // configured, not roamed
	p.mu.Unlock()
}

// PublicKey returns the peer's public key.
func (p *peer) PublicKey() crypto.PublicKey { return p.publicKey }

// stats returns a snapshot of p.
func (p *peer) stats() PeerStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PeerStats{
		PublicKey:     p.publicKey,
		Endpoint:      p.endpoint,
		LastHandshake: p.lastHandshake,
		TxBytes:       p.txBytes.Load(),
		RxBytes:       p.rxBytes.Load(),
	}
}

// learnEndpointLocked makes ep, with our address local it reached, where
// p is sent to: the peer's latest authenticated packet or handshake came
// from ep to local (RO1-RO3, RO6). p.mu must be held.
func (p *peer) learnEndpointLocked(ep netip.AddrPort, local netip.Addr) {
	if ep != p.endpoint || local != p.local {
		p.localRoute, p.localDue = netip.Addr{}, true
	}
	p.endpoint = ep
	p.local = local
}

// send sends bufs to p at ep from local, and forgets local when the system
// no longer has it (RO5, RO8): Engine.send has sent them again from the
// system's choice, and so will every later send until the peer writes to
// one of our addresses again.
func (p *peer) send(bufs [][]byte, ep netip.AddrPort, local netip.Addr) {
	if p.e.send(bufs, ep, local) {
		p.forgetLocal(local)
	}
}

// forgetLocal drops p's source address if it is still local.
func (p *peer) forgetLocal(local netip.Addr) {
	p.mu.Lock()
	forgot := p.local == local
	if forgot {
		p.local, p.localRoute = netip.Addr{}, netip.Addr{}
	}
	p.mu.Unlock()
	if forgot {
		p.e.log.Info("source address gone, sending from the system's choice",
			"peer", shortKey(p.publicKey), "source", local)
	}
}
