package lifecycle

// A peer's Endpoint given as a host name is followed for the tunnel's whole
// life by one goroutine, resolveLoop, over one table, Tunnel.res.names, in
// two phases:
//
//   - Start-up. A name that does not resolve when the tunnel comes up (a
//     boot before the network or DNS is ready) or when a reload adds it
//     does not stop anything: the peer is added without an endpoint, and
//     the name is tried again after retryInitial, a fifth longer each time
//     up to retryMax, Options.EndpointRetries times, as wg does in the
//     foreground for wg-quick. Once it resolves the peer gets the address
//     and the name is followed; once the retries are spent it is followed
//     at the slow pace (or, with following off, dropped: the peer can still
//     reach us and so give us its endpoint).
//   - Following (dynamic DNS). A name that resolved is looked up again once
//     its peer's last handshake is older than Options.ReresolveAfter (135
//     s, as wg's reresolve-dns.sh; a peer that never completes one counts
//     from when the name was resolved), and while it stays that old, again
//     after a delay that starts at reresolveInitial and doubles up to
//     Options.ReresolveMax. A completed handshake resets the delay. The
//     answer (decide) moves the peer (Engine.Apply of its endpoint alone:
//     sessions and allowed IPs stay) unless the look-up fails or is empty
//     (the endpoint stays), the peer's endpoint is among the answers
//     (nothing moved), or the peer roamed (an authenticated packet moved its
//     endpoint away from the address the name gave) and its session is
//     still fresh (tunnel.EndpointInfo.IsFresh): the peer reaches us there
//     and the name lags behind it. "Roamed" is judged against the address
//     the name last gave, the only one lifecycle sets; an endpoint set
//     through the control socket (`wg set`) counts as roamed too.
//
// Each round of resolveLoop:
//  1. under res.mu, computes every name's due time from its schedule and
//     the engine's EndpointInfo (nameEndpoint.due) and sleeps until the
//     earliest, or until Up or Reconfigure adds a name (res.wake);
//  2. looks the due names up, with no lock held;
//  3. under Tunnel.cur, then res.mu, decides for each name still in the
//     table with the same Endpoint, applies a move and schedules the next
//     look-up (nameEndpoint.settle). Reconfigure holds cur throughout and
//     replaces the table's entries before it lets go, so an answer for a
//     name it replaced is dropped, never applied over its endpoint.

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/warrenvpn/warren/config"
	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/tunnel"
	"github.com/warrenvpn/warren/uapi"
)

// Retry timing of endpoint names that do not resolve at start, as wg's
// (config.c): 1 s, then a fifth more each time, at most 20 s between tries.
const (
	retryInitial = time.Second      // delay before the first retry
	retryMax     = 20 * time.Second // longest delay between retries

	// DefaultEndpointRetries is wg's default for
	// WG_ENDPOINT_RESOLUTION_RETRIES: about 72 s of retries.
	DefaultEndpointRetries = 15
)

// Timing of the re-resolution of endpoint names.
const (
	// DefaultReresolveAfter is the age of a peer's last handshake past
	// which its endpoint name is looked up again: wg's reresolve-dns.sh
	// uses 135 s, Rekey-After-Time (120 s) plus a margin for the handshake
	// that rekeying starts.
	DefaultReresolveAfter = 135 * time.Second
	// DefaultReresolveMax is the longest delay between two look-ups of a
	// name whose peer's handshake stays old (the period at which
	// reresolve-dns.sh is usually run from cron).
	DefaultReresolveMax = time.Minute

	reresolveInitial = 5 * time.Second // first delay after a look-up; doubles up to ReresolveMax
)

// resolver is the table of endpoint names resolveLoop follows.
type resolver struct {
	sync.Mutex // guards names; taken after Tunnel.cur, before the engine's locks
	names      map[crypto.PublicKey]*nameEndpoint
	wake       chan struct{} // a name added; buffered, never closed
}

func (r *resolver) init() {
	r.names = make(map[crypto.PublicKey]*nameEndpoint)
	r.wake = make(chan struct{}, 1)
}

// schedule is the timing resolveLoop follows, from Options.
type schedule struct {
	after   time.Duration // Options.ReresolveAfter; negative: following off
	max     time.Duration // Options.ReresolveMax
	retries int           // Options.EndpointRetries; negative: none
}

func (s schedule) following() bool { return s.after >= 0 }

// initial is the first delay of the following phase.
func (s schedule) initial() time.Duration { return min(reresolveInitial, s.max) }

// nameEndpoint is one peer whose Endpoint is a host name.
type nameEndpoint struct {
	peer     config.Peer    // as configured; its Endpoint is the name
	applied  netip.AddrPort // the address the name last gave; zero: it never resolved
	startup  bool           // in the start-up retries: the name never resolved
	retries  int            // start-up retries done
	delay    time.Duration  // the last delay; 0: the phase's first comes next
	next     time.Time      // no look-up before; zero: as soon as the handshake is old
	failures int            // look-ups that failed in a row
	keptRoam netip.AddrPort // the roamed endpoint last kept over the name (logged once)
}

// due returns when n's name is to be looked up next, at now, given what the
// engine says of its peer (ok false: not a peer of the engine). A peer
// whose last handshake is younger than s.after resets n's backoff: its name
// is due when that handshake turns old. res.mu must be held.
func (n *nameEndpoint) due(now time.Time, info tunnel.EndpointInfo, ok bool, s schedule) time.Time {
	switch {
	case n.startup:
		return n.next
	case !ok:
		return now.Add(s.max) // removed by `wg set`, or not configured yet: look again later
	case info.Session && info.SessionAge < s.after:
		n.delay, n.next = 0, time.Time{}
		return now.Add(s.after - info.SessionAge)
	}
	return n.next
}

// verdict is what one answer does to a peer.
type verdict int

const (
	verdictFailed   verdict = iota // the look-up failed or was empty: the endpoint stays
	verdictSame                    // the peer's endpoint is among the answers
	verdictKeptRoam                // the peer roamed and its session is fresh: the endpoint stays
	verdictMove                    // the peer moves to the first answer
)

var verdictNames = [...]string{"failed", "same", "kept roamed", "move"}

func (v verdict) String() string { return verdictNames[v] }

// decide says what the answer eps (or the failure err) of n's name does to
// its peer, whose engine state is info, and the address the name now
// gives (zero after a failure).
func (n *nameEndpoint) decide(eps []netip.AddrPort, err error, info tunnel.EndpointInfo) (verdict, netip.AddrPort) {
	switch {
	case err != nil || len(eps) == 0:
		return verdictFailed, netip.AddrPort{}
	case slices.Contains(eps, info.Endpoint):
		return verdictSame, info.Endpoint
	case info.Endpoint.IsValid() && info.Endpoint != n.applied && info.IsFresh():
		return verdictKeptRoam, eps[0]
	}
	return verdictMove, eps[0]
}

// settle updates n after an answer judged v, the name giving addr, at now,
// and reports whether n stays in the table (false: its start-up retries
// are spent and following is off).
func (n *nameEndpoint) settle(v verdict, addr netip.AddrPort, now time.Time, s schedule) bool {
	if v == verdictFailed {
		n.failures++
	} else {
		n.failures = 0
		n.applied = addr
	}
	switch {
	case n.startup && v == verdictFailed:
		n.retries++
		if s.retries < 0 || n.retries >= s.retries {
			if !s.following() {
				return false
			}
			n.startup = false
			n.delay = s.max
			n.next = now.Add(s.max)
			return true
		}
		n.delay = min(max(n.delay*6/5, retryInitial), retryMax)
	case n.startup:
		// The first answer: followed from now on, counting from it as
		// from a handshake.
		n.startup = false
		n.delay, n.next = 0, now.Add(max(s.after, 0))
		return s.following()
	case v == verdictMove:
		n.delay = s.initial()
	default:
		n.delay = min(max(n.delay*2, s.initial()), s.max)
	}
	n.next = now.Add(n.delay)
	return true
}

// schedule returns the timing the options ask for.
func (t *Tunnel) schedule() schedule {
	return schedule{after: t.opts.ReresolveAfter, max: t.opts.ReresolveMax, retries: t.opts.EndpointRetries}
}

// watch starts following p's endpoint name after Up resolved it to ep, or
// failed to (err): a name that did not resolve is retried in the
// background. An endpoint that is an address, or none, is not watched. The
// caller holds no lock.
func (t *Tunnel) watch(p *config.Peer, ep netip.AddrPort, err error) {
	if !config.IsHostName(p.Endpoint) {
		return
	}
	n := t.newName(p, ep, err, time.Now())
	if n == nil {
		return
	}
	t.res.Lock()
	t.res.names[p.PublicKey] = n
	t.res.Unlock()
	t.wakeResolver()
}

// newName returns the table entry of p's name, which resolved to ep or
// failed with err at now, and logs a failure; nil if there is nothing to
// follow.
func (t *Tunnel) newName(p *config.Peer, ep netip.AddrPort, err error, now time.Time) *nameEndpoint {
	s := t.schedule()
	n := &nameEndpoint{peer: *p, applied: ep}
	switch {
	case err == nil && !s.following():
		return nil
	case err == nil:
		n.next = now.Add(s.after)
	case s.retries < 0 && !s.following():
		t.log.Error("endpoint does not resolve; the peer is added without it (no retries)",
			"interface", t.name, "peer", p.PublicKey.String(), "endpoint", p.Endpoint, "err", err)
		return nil
	case s.retries < 0:
		t.log.Warn("endpoint does not resolve; the peer is added without it and the name looked up again every "+s.max.String(),
			"interface", t.name, "peer", p.PublicKey.String(), "endpoint", p.Endpoint, "err", err)
		n.failures, n.delay, n.next = 1, s.max, now.Add(s.max)
	default:
		t.log.Warn("endpoint does not resolve yet; the peer is added without it and the name retried in the background",
			"interface", t.name, "peer", p.PublicKey.String(), "endpoint", p.Endpoint, "err", err)
		n.startup, n.failures, n.delay, n.next = true, 1, retryInitial, now.Add(retryInitial)
	}
	return n
}

// watchReconfigured makes the table follow the names of cfg, which
// Reconfigure has just applied: fwd are the engine's changes (a changed
// Endpoint resolved to its address), unresolved the names that did not
// resolve. A peer whose Endpoint is the same name as before keeps its
// entry and schedule. The caller holds Tunnel.cur.
func (t *Tunnel) watchReconfigured(cfg *config.Config, fwd []uapi.PeerChange, unresolved []unresolvedPeer) {
	now := time.Now()
	resolved := make(map[crypto.PublicKey]netip.AddrPort)
	for _, pc := range fwd {
		if pc.Endpoint != nil {
			resolved[pc.PublicKey] = *pc.Endpoint
		}
	}
	failed := make(map[crypto.PublicKey]error)
	for _, u := range unresolved {
		failed[u.peer.PublicKey] = u.err
	}
	t.res.Lock()
	old := t.res.names
	t.res.names = make(map[crypto.PublicKey]*nameEndpoint)
	for i := range cfg.Peers {
		p := &cfg.Peers[i]
		if !config.IsHostName(p.Endpoint) {
			continue
		}
		n := old[p.PublicKey]
		switch err, failedNow := failed[p.PublicKey]; {
		case n != nil && n.peer.Endpoint == p.Endpoint:
			n.peer = *p // other fields may have changed
		case failedNow:
			n = t.newName(p, netip.AddrPort{}, err, now)
		default:
			ep, ok := resolved[p.PublicKey]
			if !ok {
				continue // the same name, no longer followed
			}
			n = t.newName(p, ep, nil, now)
		}
		if n != nil {
			t.res.names[p.PublicKey] = n
		}
	}
	t.res.Unlock()
	t.wakeResolver()
}

func (t *Tunnel) wakeResolver() {
	select {
	case t.res.wake <- struct{}{}:
	default:
	}
}

// startResolver starts resolveLoop and pushes its stop onto the undo stack.
func (t *Tunnel) startResolver() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.wg.Go(func() {
		defer close(done)
		t.resolveLoop(ctx)
	})
	t.undo.push(func() error {
		cancel()
		<-done
		return nil
	})
}

// idleWait is how long resolveLoop sleeps with no name due.
const idleWait = time.Hour

// resolveLoop follows the endpoint names until ctx is done (the rounds
// above).
func (t *Tunnel) resolveLoop(ctx context.Context) {
	timer := time.NewTimer(idleWait)
	defer timer.Stop()
	for {
		// 1. The earliest due time.
		now := time.Now()
		wait := idleWait
		t.res.Lock()
		for pk, n := range t.res.names {
			info, ok := t.eng.EndpointInfo(pk)
			wait = min(wait, max(n.due(now, info, ok, t.schedule()).Sub(now), 0))
		}
		t.res.Unlock()
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-t.res.wake:
			continue
		case <-timer.C:
		}
		t.resolveDue(ctx)
	}
}

// lookup is one due name and its answer.
type lookup struct {
	n   *nameEndpoint
	pk  crypto.PublicKey
	eps []netip.AddrPort
	err error
}

// resolveDue looks up every name that is due (steps 2 and 3 above).
func (t *Tunnel) resolveDue(ctx context.Context) {
	now := time.Now()
	var due []lookup
	t.res.Lock()
	for pk, n := range t.res.names {
		info, ok := t.eng.EndpointInfo(pk)
		if !n.due(now, info, ok, t.schedule()).After(now) {
			due = append(due, lookup{n: n, pk: pk})
		}
	}
	t.res.Unlock()
	for i := range due {
		l := &due[i]
		t.res.Lock()
		p := l.n.peer
		t.res.Unlock()
		l.eps, l.err = t.resolveAll(ctx, &p)
		if ctx.Err() != nil {
			return
		}
	}
	t.cur.Lock()
	defer t.cur.Unlock()
	if ctx.Err() != nil {
		return
	}
	for i := range due {
		t.settleName(&due[i], time.Now())
	}
}

// settleName decides l's answer, applies a move and schedules the next
// look-up. Tunnel.cur must be held.
func (t *Tunnel) settleName(l *lookup, now time.Time) {
	t.res.Lock()
	defer t.res.Unlock()
	n := l.n
	if t.res.names[l.pk] != n {
		return // removed or replaced by Reconfigure meanwhile
	}
	s := t.schedule()
	info, ok := t.eng.EndpointInfo(l.pk)
	if !ok {
		n.next = now.Add(s.max) // removed by `wg set`: nothing to move
		return
	}
	before := *n
	v, addr := n.decide(l.eps, l.err, info)
	if v == verdictMove {
		// Under res.mu and cur: see step 3 above.
		err := t.eng.Apply(&uapi.Change{Peers: []uapi.PeerChange{{PublicKey: l.pk, UpdateOnly: true, Endpoint: &addr}}})
		if err != nil {
			l.err = fmt.Errorf("endpoint resolved but not applied: %w", err)
			v, addr = verdictFailed, netip.AddrPort{}
		}
	}
	kept := n.settle(v, addr, now, s)
	if !kept {
		delete(t.res.names, l.pk)
	}
	t.logSettled(&before, n, v, kept, info, l.err)
	if v == verdictKeptRoam {
		n.keptRoam = info.Endpoint
	}
}

// logSettled logs what an answer judged v did to a name, before and n
// being its entry before and after (kept false: dropped from the table):
// every start-up resolution, move and return of a failing name at Info;
// failures at Warn, in the following phase only the 1st, 2nd, 4th, 8th...
// in a row; a roamed endpoint kept at Info, once; the rest at Debug. res.mu
// is held.
func (t *Tunnel) logSettled(before, n *nameEndpoint, v verdict, kept bool, info tunnel.EndpointInfo, err error) {
	attrs := []any{"interface", t.name, "peer", n.peer.PublicKey.String(), "endpoint", n.peer.Endpoint}
	switch {
	case before.startup && v == verdictFailed && n.startup:
		t.log.Warn("endpoint does not resolve yet", append(attrs,
			"retries", n.retries, "next_in", n.delay.Round(time.Millisecond).String(), "err", err)...)
	case before.startup && v == verdictFailed && kept:
		t.log.Warn(fmt.Sprintf("endpoint still does not resolve after %d retries; looking it up again every %v", n.retries, n.delay),
			append(attrs, "err", err)...)
	case before.startup && v == verdictFailed:
		t.log.Error(fmt.Sprintf("endpoint still does not resolve after %d retries; giving up (the peer can still reach us)", n.retries),
			append(attrs, "err", err)...)
	case before.startup:
		t.log.Info("endpoint resolved", append(attrs, "address", n.applied.String(), "retries", before.retries+1, "verdict", v.String())...)
	case v == verdictFailed:
		if n.failures&(n.failures-1) == 0 {
			t.log.Warn("endpoint name does not resolve; keeping the endpoint", append(attrs,
				"kept", info.Endpoint.String(), "failures", n.failures, "next_in", n.delay.String(), "err", err)...)
		}
	case v == verdictMove:
		t.log.Info("endpoint name gives a new address; peer moved", append(attrs,
			"from", info.Endpoint.String(), "address", n.applied.String(), "handshake_age", handshakeAge(info))...)
	case before.failures > 0:
		t.log.Info("endpoint name resolves again", append(attrs, "address", n.applied.String(), "failures", before.failures, "verdict", v.String())...)
	case v == verdictKeptRoam && before.keptRoam != info.Endpoint:
		t.log.Info("endpoint name gives another address, but the peer roamed there by an authenticated packet and its session is fresh; keeping its endpoint",
			append(attrs, "kept", info.Endpoint.String(), "address", n.applied.String())...)
	default:
		t.log.Debug("endpoint name looked up again", append(attrs, "verdict", v.String(), "next_in", n.delay.String())...)
	}
}

// handshakeAge renders how old the peer's last handshake is.
func handshakeAge(info tunnel.EndpointInfo) string {
	if !info.Session {
		return "none"
	}
	return info.SessionAge.Round(time.Second).String()
}

// resolveAll looks up every address of p's endpoint, within resolveTimeout.
func (t *Tunnel) resolveAll(ctx context.Context, p *config.Peer) ([]netip.AddrPort, error) {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	eps, err := p.ResolveEndpoints(ctx, t.opts.Resolver)
	if err != nil {
		return nil, fmt.Errorf("peer %s: %w", p.PublicKey, err)
	}
	return eps, nil
}
