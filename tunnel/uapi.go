package tunnel

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/warrenvpn/warren/allowedips"
	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/uapi"
)

var _ uapi.Device = (*Engine)(nil)

// State returns the configuration and statistics for a UAPI "get=1"
// (uapi.Device), with the non-zero drop counters in DropReason order, which
// only a "get=warren" reports.
func (e *Engine) State() (*uapi.State, error) {
	e.local.RLock()
	s := &uapi.State{PrivateKey: e.local.privateKey, ListenPort: e.local.listenPort, FwMark: e.local.fwMark}
	e.local.RUnlock()
	for _, p := range e.peerList() {
		p.mu.Lock()
		ps := uapi.PeerState{
			PublicKey:           p.publicKey,
			PresharedKey:        p.psk,
			Endpoint:            p.endpoint,
			LastHandshake:       p.lastHandshake,
			TxBytes:             p.txBytes.Load(),
			RxBytes:             p.rxBytes.Load(),
			PersistentKeepalive: uint16(p.keepalive / time.Second),
		}
		local := p.local
		p.mu.Unlock()
		ps.AllowedIPs = e.routes.Entries(p)
		ps.Extras = p.pathMTUExtras()
		if local.IsValid() {
			// The address p last wrote to, which its replies leave from.
			ps.Extras = append(ps.Extras, uapi.Extra{Key: "warren_local", Value: local.String()})
		}
		s.Peers = append(s.Peers, ps)
	}
	s.Drops = e.dropList()
	s.Extras = append(e.pipelineExtras(), e.macExtras()...)
	return s, nil
}

// macExtras returns the MAC table as get=warren lines (layer 2 mode only),
// one per entry, and the count of moves:
//
//	warren_mac=<MAC> <peer's public key, base64, or "local"> <age in seconds> <frames>
//	warren_mac_moves=<count>
func (e *Engine) macExtras() []uapi.Extra {
	if e.l2 == nil {
		return nil
	}
	var out []uapi.Extra
	for _, m := range e.MACTable() {
		port := "local"
		if !m.Local {
			port = m.Peer.String()
		}
		out = append(out, uapi.Extra{Key: "warren_mac", Value: fmt.Sprintf("%s %s %d %d", m.MAC, port, int64(m.Age/time.Second), m.Frames)})
	}
	return append(out, uapi.Extra{Key: "warren_mac_moves", Value: fmt.Sprint(e.MACMoves())})
}

// Apply applies a UAPI "set=1" change as a whole (uapi.Device). The engine
// does not own its socket: a listen port or fwmark different from the
// current one is refused with ErrnoPortInUse before anything changes, unless
// Options.Rebind is set.
func (e *Engine) Apply(c *uapi.Change) error {
	e.state.Lock()
	defer e.state.Unlock()
	if e.state.closed {
		return uapi.Errorf(uapi.ErrnoIO, "engine closed")
	}
	e.local.RLock()
	port, mark := e.local.listenPort, e.local.fwMark
	e.local.RUnlock()
	if c.ListenPort != nil {
		port = *c.ListenPort
	}
	if c.FwMark != nil {
		mark = *c.FwMark
	}
	if err := e.rebindLocked(port, mark); err != nil {
		return uapi.Errorf(uapi.ErrnoPortInUse, "rebind to port %d fwmark %#x: %v", port, mark, err)
	}
	// Nothing below can fail.
	if c.PrivateKey != nil {
		e.setPrivateKeyLocked(*c.PrivateKey)
	}
	// replace_peers removes every peer, as far as the change can tell: a
	// peer is pending until an entry that may create it names it again,
	// which configures it as a new peer but keeps its session (replaced);
	// the peers still pending at the end are removed.
	var pending map[crypto.PublicKey]*peer
	if c.ReplacePeers {
		ps := e.peerList()
		pending = make(map[crypto.PublicKey]*peer, len(ps))
		for _, p := range ps {
			pending[p.publicKey] = p
		}
	}
	// Runs of entries between removals update the allowed-IPs table once
	// per chunk of setChunk entries: a set of 100,000 peers is 100
	// updates, not 100,000. Between chunks the pacer yields the CPU to the
	// data path (C16).
	pace := newSetPacer(e)
	for rest := c.Peers; len(rest) > 0; {
		if rest[0].Remove {
			if pending[rest[0].PublicKey] == nil { // a pending peer is removed at the end
				if p := e.peerForUpdateLocked(rest[0].PublicKey, false); p != nil {
					e.removePeersLocked([]*peer{p})
				}
			}
			rest = rest[1:]
			continue
		}
		n := 1
		for n < len(rest) && n < setChunk && !rest[n].Remove {
			n++
		}
		e.applyPeersLocked(rest[:n], pending)
		rest = rest[n:]
		pace.chunkDone()
	}
	if len(pending) > 0 {
		gone := make([]*peer, 0, len(pending))
		for _, p := range e.peerList() { // configuration order
			if pending[p.publicKey] == p {
				gone = append(gone, p)
			}
		}
		e.removePeersLocked(gone)
	}
	return nil
}

// rebindLocked moves the transport to port and mark if they differ from
// the current ones. e.state must be held.
func (e *Engine) rebindLocked(port uint16, mark uint32) error {
	e.local.Lock()
	defer e.local.Unlock()
	if port == e.local.listenPort && mark == e.local.fwMark {
		return nil
	}
	if !e.canRebind() {
		return errRebind
	}
	if port == 0 || port != e.local.listenPort {
		// Another port: open the new sockets (one per pipeline) before
		// closing the old ones.
		trs, err := e.openTransports(port, mark)
		if err != nil {
			return err
		}
		e.replaceTransports(trs)
		if actual := portOf(trs[0]); actual != 0 {
			port = actual // 0 asked for a random one
		}
		e.local.listenPort, e.local.fwMark = port, mark
		return nil
	}
	// Only the fwmark changes: the port must be free before it can be
	// bound again (as wireguard-go's BindUpdate). On failure the old
	// settings are restored; if that fails too the engine has no socket
	// left, which is fatal: Done closes and the caller stops.
	e.closeTransports()
	trs, err := e.openTransports(port, mark)
	if err != nil {
		restored, rerr := e.openTransports(e.local.listenPort, e.local.fwMark)
		if rerr != nil {
			e.setFatal(fmt.Errorf("UDP port %d lost: rebind with fwmark %#x failed (%v) and restoring fwmark %#x failed: %w",
				port, mark, err, e.local.fwMark, rerr))
			return err
		}
		e.replaceTransports(restored)
		return err
	}
	e.replaceTransports(trs)
	e.local.fwMark = mark
	return nil
}

// applyPeersLocked applies peer entries of a UAPI change, none of them a
// removal, with one update of the allowed-IPs table. A peer in pending (a
// replace_peers change) does not exist for the change: an update_only entry
// skips it, and another entry takes it out of pending and configures it as
// wireguard-go configures a new peer (replaced), keeping its session.
// e.state must be held.
func (e *Engine) applyPeersLocked(pcs []uapi.PeerChange, pending map[crypto.PublicKey]*peer) {
	ps := make([]*peer, len(pcs))
	var fresh []bool // fresh[i]: pcs[i] configures a replaced peer
	if len(pending) > 0 {
		fresh = make([]bool, len(pcs))
	}
	var keepalives []*peer
	now := e.clock.Now()
	for i := range pcs {
		pc := &pcs[i]
		if old := pending[pc.PublicKey]; old != nil {
			if pc.UpdateOnly {
				continue
			}
			delete(pending, pc.PublicKey)
			fresh[i] = true
		}
		p := e.peerForUpdateLocked(pc.PublicKey, !pc.UpdateOnly)
		if p == nil {
			continue
		}
		ps[i] = p
		if fresh != nil && fresh[i] {
			p.replaced(now)
			if pc.PresharedKey == nil {
				p.setPresharedKey(crypto.PresharedKey{})
			}
			if pc.PersistentKeepalive == nil {
				p.setKeepalive(0)
			}
		}
		if pc.PresharedKey != nil {
			p.setPresharedKey(*pc.PresharedKey)
		}
		if pc.Endpoint != nil && pc.Endpoint.IsValid() {
			p.setEndpoint(*pc.Endpoint)
		}
		if pc.PersistentKeepalive != nil && p.setKeepalive(time.Duration(*pc.PersistentKeepalive)*time.Second) {
			keepalives = append(keepalives, p)
		}
	}
	replaceIPs := func(i int) bool { return pcs[i].ReplaceAllowedIPs || fresh != nil && fresh[i] }
	e.routes.Update(func(b *allowedips.Batch[*peer]) {
		for i, p := range ps {
			pc := &pcs[i]
			if p == nil || !replaceIPs(i) && len(pc.AllowedIPs) == 0 {
				continue
			}
			if replaceIPs(i) {
				b.RemoveValue(p)
			}
			for _, a := range pc.AllowedIPs {
				if a.Remove {
					b.RemoveFrom(a.Prefix, p)
				} else {
					b.Insert(a.Prefix, p)
				}
			}
		}
	})
	for i, p := range ps {
		if p != nil && e.l2 != nil {
			pc := pcs[i]
			pc.ReplaceAllowedIPs = replaceIPs(i)
			p.applyAllowedIPs(&pc)
		}
	}
	if e.up.Load() {
		for _, p := range keepalives {
			p.sendKeepalive()
		}
	}
}

// applyAllowedIPs applies pc's allowed-IP changes to p's own list, which
// layer 2 mode checks senders against. The list is kept from the changes
// rather than read back from the table, where a prefix two peers list
// (one subnet spread over sites) belongs to one of them only. It is linear
// in the list and the change, which may hold 100,000s of prefixes.
func (p *peer) applyAllowedIPs(pc *uapi.PeerChange) {
	if !pc.ReplaceAllowedIPs && len(pc.AllowedIPs) == 0 {
		return
	}
	var cur []netip.Prefix
	if c := p.allowedIPs.Load(); c != nil && !pc.ReplaceAllowedIPs {
		cur = *c
	}
	keep := make(map[netip.Prefix]bool, len(cur)+len(pc.AllowedIPs))
	for _, q := range cur {
		keep[q] = true
	}
	order := slices.Clone(cur)
	for _, a := range pc.AllowedIPs {
		pfx := a.Prefix.Masked()
		if !a.Remove && !keep[pfx] {
			order = append(order, pfx)
		}
		keep[pfx] = !a.Remove
	}
	ips := make([]netip.Prefix, 0, len(order))
	for _, q := range order {
		if keep[q] {
			ips = append(ips, q)
			keep[q] = false // once
		}
	}
	p.allowedIPs.Store(&ips)
}

// A set's pacing (C16): a set of many peers must not starve the traffic of
// the peers already there. The data path takes no lock the set holds, but
// on a machine of few cores the set's CPU and the garbage its allocations
// leave (GC assists and workers) take time from the pipelines: applied
// flat out, 100,000 peers took 0.5-0.8 s and an established peer's
// traffic fell to 60-78 % meanwhile (37-62 % on a loaded machine). So
// after its first setFree of work a set runs in chunks of setChunk peers
// and, while the engine carries traffic, pauses after each chunk for
// (1-setDuty)/setDuty times what the chunk took: it uses at most about
// setDuty of a core. An idle engine, and a set of a few thousand peers,
// are never paused; pauses end once the set has run setPauseBudget, so a
// set of 100,000 peers still ends within 10 s even on a loaded machine.
// The pause holds e.state and the control socket's lock (a concurrent get
// waits, as for any set), but no lock of the data path: the peers and
// allowed-IPs table are published per chunk.
const (
	setChunk       = 1000                   // peer entries per chunk
	setFree        = 50 * time.Millisecond  // work before the first pause
	setDuty        = 0.15                   // share of the time the set runs while traffic flows
	setPauseBudget = 7 * time.Second        // wall time after which a set no longer pauses
	setMaxPause    = 100 * time.Millisecond // longest single pause
)

// setPacer times the chunks of one set.
type setPacer struct {
	e        *Engine
	start    time.Time // the set's
	chunk    time.Time // the current chunk's
	worked   time.Duration
	traffic  uint64 // the data path's batch counts at the last chunk's end
	disabled bool
	sleep    func(time.Duration)
}

func newSetPacer(e *Engine) *setPacer {
	now := time.Now()
	return &setPacer{e: e, start: now, chunk: now, traffic: e.trafficCount(), sleep: time.Sleep}
}

// trafficCount returns a count that grows while the engine carries
// traffic: the calls of the data path's loops.
func (e *Engine) trafficCount() uint64 {
	b := &e.batches
	return b.adapterRead.calls.Load() + b.adapterWrite.calls.Load() +
		b.transportReceive.calls.Load() + b.transportSend.calls.Load()
}

// chunkDone ends a chunk, pausing if the set has worked more than setFree,
// the engine carries traffic, the set has not run setPauseBudget and the
// engine is not being closed.
func (s *setPacer) chunkDone() {
	if s.disabled {
		return
	}
	now := time.Now()
	d := now.Sub(s.chunk)
	s.worked += d
	t := s.e.trafficCount()
	busy := t != s.traffic
	s.traffic = t
	if now.Sub(s.start) >= setPauseBudget || s.e.closeAsked.Load() {
		s.disabled = true
		return
	}
	if busy && s.worked > setFree {
		pause := min(time.Duration(float64(d)*(1-setDuty)/setDuty), setMaxPause)
		s.sleep(pause)
	}
	s.chunk = time.Now()
}

// dropList is the non-zero drop counters in reason order, then the
// kernel's drops at the pipelines' sockets as "socket": get=warren's drop
// lines and DropCounts.
func (e *Engine) dropList() []uapi.Drop {
	var ds []uapi.Drop
	for r := range numDropReasons {
		if n := e.drops[r].Load(); n != 0 {
			ds = append(ds, uapi.Drop{Reason: r.String(), Count: n})
		}
	}
	if n := e.socketDrops(); n != 0 {
		ds = append(ds, uapi.Drop{Reason: "socket", Count: n})
	}
	return ds
}

// socketDrops sums what the kernel dropped at the pipelines' sockets before
// the engine could read it, where the transport can tell
// (transport.UDP.SocketDrops): datagrams its socket filter refused as not
// WireGuard, and those over the receive buffer. It shows in get=warren as
// the drop reason "socket", beside the engine's own.
func (e *Engine) socketDrops() uint64 {
	type socketDropper interface{ SocketDrops() (uint64, error) }
	var sum uint64
	add := func(tr Transport) {
		if sd, ok := tr.(socketDropper); ok {
			if n, err := sd.SocketDrops(); err == nil {
				sum += n
			}
		}
	}
	add(e.transportOf(nil))
	for _, p := range e.extra {
		add(e.transportOf(p))
	}
	return sum
}
