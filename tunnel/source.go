package tunnel

// Source addresses (RO5-RO8). A peer's packets arrive at one of our
// addresses; what we send it leaves from that address (peer.local), learnt
// with its endpoint (peer.learnEndpointLocked) and passed to
// Transport.Send. The system's own choice takes over when:
//
//   - configuration sets the endpoint (peer.setEndpoint);
//   - the address is gone: a send from it is refused and one from the
//     system's choice goes (Engine.send, peer.forgetLocal; RO5);
//   - a route toward the peer changed: the system's own choice toward the
//     peer differs from the one it made when we learnt the address, looked
//     up at most every sourceCheckInterval while the peer sends to us
//     (checkSource; RO8). The kernel's implementation notices the same
//     when the route's interface changes.
//
// Either way the peer then sees us at the new address and, authenticating
// the packet, moves its endpoint there (RO1); its next packet reaches that
// address, and we learn it as the source anew.

import (
	"net/netip"
	"time"
)

// sourceCheckInterval is how often, at most, checkSource looks at the
// system's own source choice toward a peer that has a source address and
// sends to us: three system calls per peer.
const sourceCheckInterval = 2 * time.Second

// routeSourcer is a Transport that can tell the source address the system
// would choose toward an endpoint (transport.UDP on Linux). A Transport
// without it gets no RO8 check.
type routeSourcer interface {
	RouteSource(dst netip.AddrPort) (netip.Addr, error)
}

// sourceLocked returns the source address to send to p from: local, or
// the zero Addr (the system's choice) when that is local anyway as
// checkSource last saw it, which spares the kernel a control message and a
// source check per datagram (BenchmarkSendSource: 9% of a GSO send's time,
// 20% without GSO, on the loopback of a loaded machine). Should the
// system's choice change meanwhile, what p sends follows it at once, as
// checkSource would make it (RO8). p.mu must be held.
func (p *peer) sourceLocked() netip.Addr {
	if p.local == p.localRoute {
		return netip.Addr{}
	}
	return p.local
}

// sourceCheckDueLocked reports whether checkSource is due for p at now, and
// if so counts it as done. p.mu must be held.
func (p *peer) sourceCheckDueLocked(now time.Duration) bool {
	if !p.local.IsValid() || !p.localDue && now-p.localChecked < sourceCheckInterval {
		return false
	}
	p.localDue, p.localChecked = false, now
	return true
}

// checkSource asks the system which source address it would choose toward
// ep now. The first answer after p learnt local from ep becomes the
// reference; a different one later means that a route toward the peer
// changed, for example a preferred route with a new source address
// appeared (RO8): p forgets local, so that what it sends next leaves from
// the system's new choice. It runs with no lock held.
func (e *Engine) checkSource(p *peer, ep netip.AddrPort, local netip.Addr) {
	rs, ok := e.transport().(routeSourcer)
	if !ok {
		return
	}
	chosen, err := rs.RouteSource(ep)
	if err != nil {
		return // no route now: a send says more (RO5)
	}
	p.mu.Lock()
	if p.local != local || p.endpoint != ep {
		p.mu.Unlock()
		return // learnt anew meanwhile
	}
	from := p.localRoute
	changed := from.IsValid() && chosen != from
	if changed {
		p.local, p.localRoute = netip.Addr{}, netip.Addr{}
	} else {
		p.localRoute = chosen
	}
	p.mu.Unlock()
	if changed {
		e.log.Info("route toward peer changed, sending from the system's choice",
			"peer", shortKey(p.publicKey), "endpoint", ep, "source", local, "was", from, "now", chosen)
	}
}
