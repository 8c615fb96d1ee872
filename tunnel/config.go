package tunnel

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/warrenvpn/warren/allowedips"
	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/mactable"
)

// Config is the whole configuration of an Engine, as `wg syncconf` sees
// it.
type Config struct {
	PrivateKey crypto.PrivateKey // zero: none; the engine then answers nothing
	ListenPort uint16            // recorded for UAPI (0 keeps the transport's); SetConfig does not rebind (Apply with Options.Rebind does)
	FwMark     uint32            // recorded for UAPI; SetConfig does not rebind
	Peers      []PeerConfig
}

// PeerConfig configures one peer.
type PeerConfig struct {
	PublicKey           crypto.PublicKey
	PresharedKey        crypto.PresharedKey // zero: none
	Endpoint            netip.AddrPort      // zero: unknown until the peer reaches us
	AllowedIPs          []netip.Prefix
	PersistentKeepalive time.Duration // 0 disables; whole seconds up to 65535 s
	// AllowedMACs, in layer 2 mode, are the only source MACs the peer may
	// send from, and they stay bound to it (T1); empty allows any.
	AllowedMACs []mactable.MAC
}

// ErrInvalidConfig is wrapped by the errors of SetConfig and AddPeer.
var ErrInvalidConfig = errors.New("invalid config")

// maxKeepalive is the largest persistent keepalive (a uint16 of seconds).
const maxKeepalive = 65535 * time.Second

func (pc *PeerConfig) validate() error {
	if pc.PersistentKeepalive < 0 || pc.PersistentKeepalive > maxKeepalive {
		return fmt.Errorf("%w: peer %s: persistent keepalive %v out of range", ErrInvalidConfig, pc.PublicKey, pc.PersistentKeepalive)
	}
	for _, p := range pc.AllowedIPs {
		if !p.IsValid() {
			return fmt.Errorf("%w: peer %s: invalid allowed IP %v", ErrInvalidConfig, pc.PublicKey, p)
		}
	}
	return nil
}

// SetConfig replaces the configuration: peers not in c are removed, peers in
// c are added or updated. Untouched peers keep their sessions (L14); a new
// private key ends every session. On error nothing is applied.
func (e *Engine) SetConfig(c Config) error {
	seen := make(map[crypto.PublicKey]bool, len(c.Peers))
	for i := range c.Peers {
		pc := &c.Peers[i]
		if err := pc.validate(); err != nil {
			return err
		}
		if seen[pc.PublicKey] {
			return fmt.Errorf("%w: duplicate peer %s", ErrInvalidConfig, pc.PublicKey)
		}
		seen[pc.PublicKey] = true
	}
	e.state.Lock()
	defer e.state.Unlock()
	if e.state.closed {
		return ErrClosed
	}
	e.setPrivateKeyLocked(c.PrivateKey)
	e.local.Lock()
	if c.ListenPort != 0 {
		e.local.listenPort = c.ListenPort
	}
	e.local.fwMark = c.FwMark
	e.local.Unlock()
	var gone []*peer
	for _, p := range e.peerList() {
		if !seen[p.publicKey] {
			gone = append(gone, p)
		}
	}
	e.removePeersLocked(gone)
	e.upsertPeersLocked(c.Peers)
	return nil
}

// ErrClosed is returned by configuration calls on a closed engine.
var ErrClosed = errors.New("engine closed")

// AddPeer adds the peer, or updates it if it exists (replacing its allowed
// IPs; a zero Endpoint keeps the current one). Its sessions are kept.
func (e *Engine) AddPeer(pc PeerConfig) error {
	if err := pc.validate(); err != nil {
		return err
	}
	e.state.Lock()
	defer e.state.Unlock()
	if e.state.closed {
		return ErrClosed
	}
	e.upsertPeersLocked([]PeerConfig{pc})
	return nil
}

// RemovePeer removes the peer with public key pk and reports whether it
// existed.
func (e *Engine) RemovePeer(pk crypto.PublicKey) bool {
	e.state.Lock()
	defer e.state.Unlock()
	p := e.peerByKey(pk)
	if p == nil {
		return false
	}
	e.removePeersLocked([]*peer{p})
	return true
}

// Config returns the current configuration; endpoints are the current ones
// (after roaming).
func (e *Engine) Config() Config {
	e.local.RLock()
	c := Config{PrivateKey: e.local.privateKey, ListenPort: e.local.listenPort, FwMark: e.local.fwMark}
	e.local.RUnlock()
	for _, p := range e.peerList() {
		p.mu.Lock()
		pc := PeerConfig{PublicKey: p.publicKey, PresharedKey: p.psk, Endpoint: p.endpoint, PersistentKeepalive: p.keepalive}
		p.mu.Unlock()
		pc.AllowedMACs = e.allowedMACsOf(p)
		pc.AllowedIPs = e.routes.Entries(p)
		c.Peers = append(c.Peers, pc)
	}
	return c
}

// Stats returns a snapshot of every peer, in configuration order.
func (e *Engine) Stats() []PeerStats {
	peers := e.peerList()
	out := make([]PeerStats, 0, len(peers))
	for _, p := range peers {
		out = append(out, p.stats())
	}
	return out
}

// setPrivateKeyLocked installs a new private key: sessions and handshakes
// with every peer end, and a peer with our own public key is removed (C6).
// e.state must be held.
func (e *Engine) setPrivateKeyLocked(k crypto.PrivateKey) {
	e.local.Lock()
	if e.local.privateKey.Equal(k) && (e.local.identity != nil) == !k.IsZero() {
		e.local.Unlock()
		return
	}
	e.local.privateKey = k
	old := e.local.identity
	var id *crypto.Identity
	if !k.IsZero() {
		id = crypto.NewIdentity(k)
		e.local.publicKey = id.PublicKey()
	} else {
		// As wireguard-go: the zero key's public key is that of the
		// clamped zero scalar, and a peer with it is refused.
		e.local.publicKey = k.PublicKey()
	}
	e.local.identity = id
	e.id.Store(id)
	pub := e.local.publicKey
	e.local.Unlock()
	if old != nil {
		old.Wipe() // its cookies no longer validate anyway
	}

	for _, p := range e.peerList() {
		if p.publicKey == pub {
			e.removePeersLocked([]*peer{p})
			continue
		}
		p.setIdentity(id)
	}
}

// setIdentity ends p's sessions and handshakes and points its handshakes
// at id (nil: no private key). The X25519 of the static-static secret runs
// with p.mu released, under p.handshake.
func (p *peer) setIdentity(id *crypto.Identity) {
	p.handshake.Lock()
	defer p.handshake.Unlock()
	p.mu.Lock()
	p.wipeLocked()
	// The sessions are gone: the next packet may handshake at once, not
	// only 5 s after the last initiation under the old key (L15; as
	// wireguard-go's ExpireCurrentKeypairs and the kernel).
	p.timers.initiated = false
	ini, res, psk := p.initiator, p.responder, p.psk
	p.mu.Unlock()
	switch {
	case id == nil:
		if ini != nil {
			ini.Wipe() // P18: no identity, no handshakes
			res.Wipe()
		}
		ini, res = nil, nil
	case ini == nil:
		ini = crypto.NewHandshake(id, p.publicKey, psk)
		res = crypto.NewHandshake(id, p.publicKey, psk)
	default:
		ini.SetIdentity(id)
		res.SetIdentity(id)
	}
	p.mu.Lock()
	p.initiator, p.responder = ini, res
	p.mu.Unlock()
}

// upsertPeersLocked adds or updates the peers of pcs; the allowed IPs of
// each become exactly its AllowedIPs, in one update of the table for all of
// them. A peer with our own public key is ignored (C6). e.state must be
// held.
func (e *Engine) upsertPeersLocked(pcs []PeerConfig) {
	ps := make([]*peer, len(pcs))
	var keepalives []*peer
	for i := range pcs {
		pc := &pcs[i]
		p := e.peerForUpdateLocked(pc.PublicKey, true)
		if p == nil {
			continue
		}
		ps[i] = p
		p.setPresharedKey(pc.PresharedKey)
		if pc.Endpoint.IsValid() {
			p.setEndpoint(pc.Endpoint)
		}
		if p.setKeepalive(pc.PersistentKeepalive) {
			keepalives = append(keepalives, p)
		}
		ips := slices.Clone(pc.AllowedIPs)
		p.allowedIPs.Store(&ips)
	}
	e.setAllowedMACsLocked(ps, pcs)
	e.routes.Update(func(b *allowedips.Batch[*peer]) {
		for i, p := range ps {
			if p == nil {
				continue
			}
			b.RemoveValue(p)
			for _, prefix := range pcs[i].AllowedIPs {
				b.Insert(prefix, p)
			}
		}
	})
	if e.up.Load() {
		for _, p := range keepalives {
			p.sendKeepalive()
		}
	}
}

// peerForUpdateLocked returns the peer with key pk, creating it if create
// is set. It returns nil for our own public key (C6) and for a missing
// peer without create. e.state must be held.
func (e *Engine) peerForUpdateLocked(pk crypto.PublicKey, create bool) *peer {
	e.local.RLock()
	id, pub := e.local.identity, e.local.publicKey
	e.local.RUnlock()
	// Our own public key (all zeros until a private key was first set) is
	// never a peer (uapi.Change rule 4).
	if pk == pub {
		return nil
	}
	p := e.peerByKey(pk)
	if p != nil || !create {
		return p
	}
	p = &peer{e: e, publicKey: pk}
	p.setIdentity(id)
	e.peers.Lock()
	e.peers.byKey[p.publicKey] = p
	// Appending in place is safe for readers of the old slice: they see
	// only its first len elements, which no one changes.
	e.peers.list = append(e.peers.list, p)
	e.peers.Unlock()
	return p
}

// setPresharedKey changes p's preshared key for the next handshake.
func (p *peer) setPresharedKey(psk crypto.PresharedKey) {
	p.handshake.Lock()
	defer p.handshake.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.psk.Equal(psk) {
		return
	}
	p.psk = psk
	if p.initiator != nil {
		p.initiator.SetPresharedKey(psk)
		p.responder.SetPresharedKey(psk)
	}
}

// setKeepalive sets the persistent keepalive interval and reports whether
// it was just turned on (a keepalive is then due at once).
func (p *peer) setKeepalive(d time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	turnedOn := p.keepalive == 0 && d > 0
	p.keepalive = d
	if d == 0 {
		p.timers.persistentKeepalive.disarm()
	}
	return turnedOn
}

// removePeersLocked removes the peers ps with their routes, sessions and
// staged packets and wipes their secrets, with one copy of the peer list and
// one update of the table for all of them. e.state must be held.
func (e *Engine) removePeersLocked(ps []*peer) {
	if len(ps) == 0 {
		return
	}
	gone := make(map[*peer]bool, len(ps))
	for _, p := range ps {
		gone[p] = true
	}
	e.peers.Lock()
	for _, p := range ps {
		delete(e.peers.byKey, p.publicKey)
	}
	// A new array: readers of the old slice keep what they saw.
	e.peers.list = slices.DeleteFunc(slices.Clone(e.peers.list), func(q *peer) bool { return gone[q] })
	e.peers.Unlock()
	e.routes.Update(func(b *allowedips.Batch[*peer]) {
		for _, p := range ps {
			b.RemoveValue(p)
		}
	})
	if e.l2 != nil {
		for _, p := range ps {
			e.l2.macs.RemovePort(p)
		}
		e.setAllowedMACsLocked(nil, nil)
	}
	for _, p := range ps {
		p.handshake.Lock()
		p.mu.Lock()
		p.removed = true
		p.wipeLocked()
		p.purgeStagedLocked()
		p.timersStopLocked()
		p.wipeSecretsLocked()
		p.mu.Unlock()
		p.handshake.Unlock()
	}
}

// peerByKey returns the peer with public key pk, or nil.
func (e *Engine) peerByKey(pk crypto.PublicKey) *peer {
	e.peers.RLock()
	defer e.peers.RUnlock()
	return e.peers.byKey[pk]
}

// peerList returns the peers in configuration order. The slice is shared
// and must not be modified: updates replace it.
func (e *Engine) peerList() []*peer {
	e.peers.RLock()
	defer e.peers.RUnlock()
	return e.peers.list
}

// start brings p up with the engine: a persistent keepalive goes out (and
// so a handshake) at once (L3). e.state must be held.
func (p *peer) start() {
	p.mu.Lock()
	ka := p.keepalive > 0
	p.mu.Unlock()
	if ka {
		p.sendKeepalive()
	}
}

// stop wipes p's sessions, handshakes, timers and staged packets (L3).
func (p *peer) stop() {
	p.handshake.Lock()
	p.mu.Lock()
	p.wipeLocked()
	p.purgeStagedLocked()
	p.timersStopLocked()
	p.mu.Unlock()
	p.handshake.Unlock()
}

// replaced prepares p, named again by a replace_peers change, to be
// configured as a new peer while keeping what is worth keeping: a live
// session (current and not expired at now, or awaiting confirmation) keeps
// p's endpoint, counters and last handshake, since they describe it;
// without one p looks as wireguard-go's new peer would: no endpoint, zero
// counters, no last handshake. Either way p keeps its handshake state, so
// a `wg setconf` of an unchanged set rebuilds nothing.
func (p *peer) replaced(now time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur := p.keys.current; cur != nil && !cur.isExpired(now) || p.keys.next != nil {
		return
	}
	p.endpoint = netip.AddrPort{}
	p.loggedEndpoint = netip.AddrPort{}
	p.lastHandshake = time.Time{}
	p.txBytes.Store(0)
	p.rxBytes.Store(0)
}
