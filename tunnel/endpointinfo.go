package tunnel

import (
	"net/netip"
	"time"

	"github.com/warrenvpn/warren/crypto"
)

// EndpointInfo is what the engine knows of where one peer is and how fresh
// its sessions are: what a caller that follows an Endpoint host name
// (lifecycle) needs to decide whether the name should be looked up again
// and whether the answer may move the peer.
type EndpointInfo struct {
	// Endpoint is where the peer's packets go now: the address
	// configuration last set, or the source of the peer's latest
	// authenticated packet or handshake if that came from elsewhere
	// (roaming, RO1-RO3). The zero AddrPort: none yet.
	Endpoint netip.AddrPort
	// LastHandshake is the wall-clock time of the last completed
	// handshake, as in PeerStats; zero if none.
	LastHandshake time.Time
	// Session reports whether the peer has a confirmed session; its age is
	// then SessionAge.
	Session bool
	// SessionAge is the time since the current session was derived, on
	// the engine's Clock (so it counts suspend and ignores wall-clock
	// steps): how long ago the last completed handshake was. 0 without a
	// session.
	SessionAge time.Duration
}

// IsFresh reports whether the peer's current session is still usable (it
// is younger than Reject-After-Time): the peer can still reach us, and we
// it, at its endpoint without a new handshake.
func (i EndpointInfo) IsFresh() bool { return i.Session && i.SessionAge < RejectAfterTime }

// EndpointInfo returns what the engine knows of the endpoint and sessions
// of peer pk; false if pk is not a peer. It takes the peer's lock briefly and
// may be called from any goroutine.
func (e *Engine) EndpointInfo(pk crypto.PublicKey) (EndpointInfo, bool) {
	p := e.peerByKey(pk)
	if p == nil {
		return EndpointInfo{}, false
	}
	now := e.clock.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.removed {
		return EndpointInfo{}, false
	}
	info := EndpointInfo{Endpoint: p.endpoint, LastHandshake: p.lastHandshake}
	if kp := p.keys.current; kp != nil {
		info.Session = true
		info.SessionAge = max(now-kp.created, 0)
	}
	return info, true
}
