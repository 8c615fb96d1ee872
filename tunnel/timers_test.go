package tunnel

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/transport/transporttest"
	"github.com/warrenvpn/warren/uapi"
)

// ticks advances the pair's clock in steps of step until d has passed.
func (p *pair) ticks(d, step time.Duration) {
	for end := p.clock.Now() + d; p.clock.Now() < end; {
		p.tick(step)
	}
}

// TestUnreachablePeer covers L16: retries every 5 s + up to 333 ms, each
// with a new index and ephemeral; give-up after 20 initiations with the
// staged packets purged; new data restarts the cycle.
func TestUnreachablePeer(t *testing.T) {
	p := newPair(t, pairOptions{})
	type sent struct {
		at  time.Duration
		msg []byte
	}
	var inits []sent
	p.net.setHook(func(d *datagram) bool {
		if crypto.MessageType(d.data[0]) == crypto.MessageInitiation {
			inits = append(inits, sent{p.clock.Now(), d.data})
		}
		return false
	})
	p.a.ad.inject(ping(innerA, innerB, "x"))
	p.run()
	p.ticks(150*time.Second, 50*time.Millisecond)
	if len(inits) != 20 {
		t.Fatalf("%d initiations, want 20", len(inits))
	}
	indices := map[string]bool{}
	ephemerals := map[string]bool{}
	for i, s := range inits {
		indices[string(s.msg[4:8])] = true
		ephemerals[string(s.msg[8:40])] = true
		if i == 0 {
			continue
		}
		gap := s.at - inits[i-1].at
		if gap < RekeyTimeout || gap > RekeyTimeout+RekeyTimeoutJitter+50*time.Millisecond {
			t.Errorf("initiation %d after %v, want 5 s + up to 333 ms", i, gap)
		}
	}
	if len(indices) != 20 || len(ephemerals) != 20 {
		t.Errorf("%d distinct indices and %d distinct ephemerals in 20 initiations", len(indices), len(ephemerals))
	}
	if total := inits[19].at - inits[0].at; total < 19*RekeyTimeout || total > 19*(RekeyTimeout+RekeyTimeoutJitter+50*time.Millisecond) {
		t.Errorf("gave up after %v", total)
	}
	if got := p.a.e.Drops(DropStagedPurged); got != 1 {
		t.Errorf("purged %d staged packets, want 1", got)
	}
	pa := p.a.peer()
	pa.mu.Lock()
	staged := pa.staged.len()
	pa.mu.Unlock()
	if staged != 0 {
		t.Errorf("%d packets still staged after give-up", staged)
	}
	p.a.ad.inject(ping(innerA, innerB, "again"))
	p.run()
	if len(inits) != 21 {
		t.Errorf("new data after give-up sent %d initiations, want 1", len(inits)-20)
	}
	if p.a.e.pool.out.Load() != 1 {
		t.Errorf("pooled buffers out: %d, want 1 (the staged packet)", p.a.e.pool.out.Load())
	}
}

// TestZeroKeyMaterial covers L16's 540 s: keys are wiped when no handshake
// renewed them; new data then starts a handshake.
func TestZeroKeyMaterial(t *testing.T) {
	p := established(t, pairOptions{})
	p.ticks(ZeroKeyMaterialTime-10*time.Second, 10*time.Second)
	if cur, _, _ := p.a.keypairs(); cur == nil {
		t.Fatal("keys wiped before 540 s")
	}
	p.ticks(11*time.Second, time.Second)
	for _, n := range []*node{p.a, p.b} {
		if cur, prev, next := n.keypairs(); cur != nil || prev != nil || next != nil {
			t.Errorf("%v: keys not wiped at 540 s", n.addr)
		}
	}
	if n := p.a.e.indices.len(); n != 0 {
		t.Errorf("%d indices left", n)
	}
	p.net.takeLog()
	p.a.ad.inject(ping(innerA, innerB, "after"))
	p.run()
	if got := payloads(p.b.ad.written()); got != "after" {
		t.Errorf("after wipe: b got %q", got)
	}
}

// TestPassiveKeepalive covers L17: receive-only traffic → a keepalive at
// 10 s.
func TestPassiveKeepalive(t *testing.T) {
	p := established(t, pairOptions{})
	p.net.takeLog()
	p.a.ad.inject(ping(innerA, innerB, "x"))
	p.run()
	p.net.takeLog()
	p.ticks(KeepaliveTimeout-time.Second, 500*time.Millisecond)
	if log := p.net.takeLog(); len(log) != 0 {
		t.Fatalf("before 10 s: %s", describe(log))
	}
	p.ticks(1500*time.Millisecond, 500*time.Millisecond)
	if got, want := describe(p.net.takeLog()), "b:data/32"; got != want {
		t.Errorf("at 10 s: %q, want %q", got, want)
	}
}

// TestNewHandshakeWithoutReply covers L17: send-only traffic → a new
// handshake 15 s (+ jitter) after the first unanswered data.
func TestNewHandshakeWithoutReply(t *testing.T) {
	p := established(t, pairOptions{})
	p.net.setHook(func(d *datagram) bool { return d.src != outerB })
	p.net.takeLog()
	p.a.ad.inject(ping(innerA, innerB, "x"))
	p.run()
	p.ticks(KeepaliveTimeout+RekeyTimeout-100*time.Millisecond, 100*time.Millisecond)
	if n := countFrom(p.net.takeLog(), outerA, crypto.MessageInitiation); n != 0 {
		t.Fatalf("initiation before 15 s")
	}
	p.ticks(RekeyTimeoutJitter+200*time.Millisecond, 100*time.Millisecond)
	if n := countFrom(p.net.takeLog(), outerA, crypto.MessageInitiation); n != 1 {
		t.Errorf("%d initiations by 15.4 s, want 1", n)
	}
}

// TestRekey covers L17: the initiator rekeys when sending past 120 s, and
// once when receiving past 165 s; the previous keypair still opens
// packets in flight.
func TestRekey(t *testing.T) {
	t.Run("on send after 120 s", func(t *testing.T) {
		p := established(t, pairOptions{})
		old, _, _ := p.a.keypairs()
		inflight := p.b.sealed(t, ping(innerB, innerA, "inflight"))
		p.ticks(RekeyAfterTime, 10*time.Second)
		p.net.takeLog()
		p.a.ad.inject(ping(innerA, innerB, "x"))
		p.run()
		if n := countFrom(p.net.takeLog(), outerA, crypto.MessageInitiation); n != 1 {
			t.Fatalf("%d initiations after sending at 120 s, want 1", n)
		}
		cur, prev, _ := p.a.keypairs()
		if cur == old || prev != old {
			t.Fatalf("no rotation: current %p previous %p old %p", cur, prev, old)
		}
		p.net.inject(outerB, outerA, inflight)
		p.run()
		if got := payloads(p.a.ad.written()); got != "inflight" {
			t.Errorf("in-flight packet under the previous keypair: got %q", got)
		}
	})
	t.Run("once on receive after 165 s", func(t *testing.T) {
		p := established(t, pairOptions{})
		inits := 0
		p.net.setHook(func(d *datagram) bool {
			if d.src == outerA && crypto.MessageType(d.data[0]) == crypto.MessageInitiation {
				inits++
				return false
			}
			return true
		})
		p.clock.advance(rekeyOnReceiveTime - time.Second)
		p.b.ad.inject(ping(innerB, innerA, "0"))
		p.run()
		if inits != 0 {
			t.Fatalf("%d initiations on receiving before 165 s", inits)
		}
		p.clock.advance(2 * time.Second)
		p.b.ad.inject(ping(innerB, innerA, "1"))
		p.run()
		if inits != 1 {
			t.Fatalf("%d initiations on receiving after 165 s, want 1", inits)
		}
		p.clock.advance(RekeyTimeout + time.Second)
		p.b.ad.inject(ping(innerB, innerA, "2"))
		p.run()
		if inits != 1 {
			t.Errorf("%d initiations after a second receive, want still 1", inits)
		}
		if got := payloads(p.a.ad.written()); got != "0,1,2" {
			t.Errorf("a got %q, want 0,1,2", got)
		}
	})
}

// TestContinuousRekeys covers L18: traffic both ways across more than
// three rekeys loses nothing.
func TestContinuousRekeys(t *testing.T) {
	p := established(t, pairOptions{})
	first, _, _ := p.a.keypairs()
	sessions := map[*keypair]bool{first: true}
	var sentA, sentB int
	var gotA, gotB int
	for i := range 500 {
		p.a.ad.inject(ping(innerA, innerB, fmt.Sprint(i)))
		p.b.ad.inject(ping(innerB, innerA, fmt.Sprint(i)))
		sentA++
		sentB++
		p.tick(time.Second)
		gotB += len(p.b.ad.written())
		gotA += len(p.a.ad.written())
		cur, _, _ := p.a.keypairs()
		sessions[cur] = true
	}
	if gotB != sentA || gotA != sentB {
		t.Errorf("delivered %d/%d a→b and %d/%d b→a", gotB, sentA, gotA, sentB)
	}
	if len(sessions) < 4 {
		t.Errorf("%d sessions in 500 s, want at least 4", len(sessions))
	}
}

// TestDownUp covers L3: Down wipes keypairs and handshakes, stops timers and
// purges staged packets; Up sends persistent keepalives (a handshake).
func TestDownUp(t *testing.T) {
	p := established(t, pairOptions{keepalive: 25 * time.Second})
	// Stage a packet for a peer without a session.
	other, _ := crypto.NewPrivateKey(seededRand(7))
	if err := p.a.e.AddPeer(PeerConfig{PublicKey: other.PublicKey(), Endpoint: netip.MustParseAddrPort("198.18.0.9:9"),
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("198.19.9.0/24")}}); err != nil {
		t.Fatal(err)
	}
	p.a.ad.inject(ping(innerA, netip.MustParseAddr("198.19.9.1"), "staged"))
	p.run()
	if err := p.a.e.Down(); err != nil {
		t.Fatal(err)
	}
	if cur, prev, next := p.a.e.peerList()[0].keysSnapshot(); cur != nil || prev != nil || next != nil {
		t.Error("keypairs survive Down")
	}
	if n := p.a.e.indices.len(); n != 0 {
		t.Errorf("%d indices survive Down", n)
	}
	if got := p.a.e.Drops(DropStagedPurged); got != 1 {
		t.Errorf("purged %d staged packets, want 1", got)
	}
	for _, pr := range p.a.e.peerList() {
		pr.mu.Lock()
		if pr.timers != (peerTimers{}) {
			t.Errorf("timers survive Down: %+v", pr.timers)
		}
		pr.mu.Unlock()
	}
	p.net.takeLog()
	p.a.ad.inject(ping(innerA, innerB, "while down"))
	p.tick(time.Minute)
	if log := p.net.takeLog(); countFrom(log, outerA, 0) != 0 {
		t.Errorf("sent while down: %s", describe(log))
	}
	if err := p.a.e.Up(); err != nil {
		t.Fatal(err)
	}
	p.run()
	if got := describe(p.net.takeLog()); got != "a:initiation b:response a:data/32" {
		t.Errorf("after Up: %q, want a persistent keepalive's handshake", got)
	}
}

// TestReconfigureKeepsSessions covers L14: re-applying the same config, or
// one that adds or removes an unrelated peer, keeps the keypairs of the
// untouched peer and loses no packet.
func TestReconfigureKeepsSessions(t *testing.T) {
	p := established(t, pairOptions{})
	cur, _, _ := p.a.keypairs()
	cfg := p.a.e.Config()
	other, _ := crypto.NewPrivateKey(seededRand(8))
	withOther := cfg
	withOther.Peers = append(append([]PeerConfig(nil), cfg.Peers...), PeerConfig{PublicKey: other.PublicKey(),
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("198.19.8.0/24")}})
	for i, c := range []Config{cfg, withOther, cfg} {
		if err := p.a.e.SetConfig(c); err != nil {
			t.Fatal(err)
		}
		p.a.ad.inject(ping(innerA, innerB, fmt.Sprint(i)))
		p.run()
		if got := payloads(p.b.ad.written()); got != fmt.Sprint(i) {
			t.Errorf("step %d: b got %q", i, got)
		}
		if now, _, _ := p.a.e.peerByKey(p.b.pub).keysSnapshot(); now != cur {
			t.Errorf("step %d: session replaced", i)
		}
	}
	if got := len(p.a.e.Stats()); got != 1 {
		t.Errorf("%d peers, want 1", got)
	}
}

// tickCount returns how many times Tick ran on e.
func tickCount(e *Engine) uint64 {
	e.timerq.tick.Lock()
	defer e.timerq.tick.Unlock()
	return e.timerq.ticks
}

// TestIdlePeersQueueNothing: peers without an armed deadline are not in
// the timer heap, so a Tick visits none of 10,000 idle peers.
func TestIdlePeersQueueNothing(t *testing.T) {
	k, _ := crypto.NewPrivateKey(seededRand(1))
	e := newEngine(&stepAdapter{mtu: 1420}, newStepNet().transport(outerA), Options{Clock: newFakeClock(), TickInterval: -1})
	t.Cleanup(func() { e.Close() })
	if err := e.SetConfig(Config{PrivateKey: k}); err != nil {
		t.Fatal(err)
	}
	applyRequest(t, e, peersRequest(10000))
	if err := e.Up(); err != nil {
		t.Fatal(err)
	}
	e.Tick()
	if n := e.timerq.len(); n != 0 {
		t.Errorf("%d timer entries for idle peers, want 0", n)
	}
}

// TestTimerHeapHotPath: traffic both ways re-arms deadlines later and
// later, which pushes nothing onto the shared heap and allocates nothing;
// only a deadline earlier than the peer's entry is pushed.
func TestTimerHeapHotPath(t *testing.T) {
	p := established(t, pairOptions{keepalive: 25 * time.Second})
	p.tick(time.Second) // the handshake's entries are visited and requeued
	before := p.a.e.timerq.len()
	for i := range 200 {
		p.a.ad.inject(ping(innerA, innerB, fmt.Sprint(i)))
		p.b.ad.inject(ping(innerB, innerA, fmt.Sprint(i)))
		p.run()
		p.clock.advance(10 * time.Millisecond)
	}
	if after := p.a.e.timerq.len(); after > before+2 {
		t.Errorf("timer heap grew from %d to %d entries over 200 round trips", before, after)
	}
	pa := p.a.peer()
	now := p.clock.Now()
	allocs := testing.AllocsPerRun(1000, func() {
		pa.mu.Lock()
		pa.timersDataSentLocked(now)
		pa.timersAnySentLocked()
		pa.timersTraversalLocked(now)
		pa.timersAnyReceivedLocked()
		pa.timersTraversalLocked(now)
		pa.timersDataReceivedLocked(now)
		pa.mu.Unlock()
	})
	if allocs != 0 {
		t.Errorf("arming timers allocates %.1f times", allocs)
	}
}

// TestTimerEntriesStale: an entry replaced by an earlier one, or left by
// a removed peer, is skipped when due; a deadline armed earlier than the
// peer's entry runs on time, and the later one still runs.
func TestTimerEntriesStale(t *testing.T) {
	p := newPair(t, pairOptions{})
	pa := p.a.peer()
	armed := func(d *deadline) bool {
		pa.mu.Lock()
		defer pa.mu.Unlock()
		return d.set
	}
	now := p.clock.Now()
	pa.mu.Lock()
	pa.armLocked(&pa.timers.zeroKeyMaterial, now+time.Minute)
	pa.armLocked(&pa.timers.persistentKeepalive, now+time.Second) // earlier: a second entry
	pa.armLocked(&pa.timers.sendKeepalive, now+2*time.Minute)     // later: no entry
	pa.mu.Unlock()
	if n := p.a.e.timerq.len(); n != 2 {
		t.Fatalf("%d entries, want 2", n)
	}
	pa.mu.Lock()
	pa.timers.sendKeepalive.disarm()
	pa.mu.Unlock()
	p.tick(time.Second)
	if armed(&pa.timers.persistentKeepalive) || !armed(&pa.timers.zeroKeyMaterial) {
		t.Fatal("the deadline due at 1 s did not run alone")
	}
	p.tick(time.Minute)
	if armed(&pa.timers.zeroKeyMaterial) {
		t.Error("the deadline due at 1 min did not run")
	}
	if n := p.a.e.timerq.len(); n != 0 {
		t.Errorf("%d entries left, want 0", n)
	}
	// A removed peer's entry is dropped when due.
	pa.mu.Lock()
	pa.armLocked(&pa.timers.zeroKeyMaterial, p.clock.Now()+time.Second)
	pa.mu.Unlock()
	p.a.e.RemovePeer(p.b.pub)
	p.tick(time.Second)
	if n := p.a.e.timerq.len(); n != 0 {
		t.Errorf("%d entries left after removal, want 0", n)
	}
}

// TestTimerLoopSleeps: the timer goroutine, on the system clock, does not
// wake for idle peers, and wakes when a deadline is armed: persistent
// keepalives every second go out on time without a tick every 100 ms.
func TestTimerLoopSleeps(t *testing.T) {
	a, b := newLivePair(t, transporttest.NewNetwork(transporttest.Config{}), nil)
	applyRequest(t, a.e, peersRequest(1000))
	t0 := tickCount(a.e)
	time.Sleep(time.Second)
	if n := tickCount(a.e) - t0; n > 1 {
		t.Errorf("%d ticks in 1 s with idle peers, want at most 1", n)
	}
	ka := uint16(1)
	if err := a.e.Apply(&uapi.Change{Peers: []uapi.PeerChange{{PublicKey: b.key.PublicKey(), UpdateOnly: true, PersistentKeepalive: &ka}}}); err != nil {
		t.Fatal(err)
	}
	t0, start := tickCount(a.e), time.Now()
	deadline := start.Add(20 * time.Second) // a safety net for a broken engine
	for keepalives(a.e, b.key.PublicKey()) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("%d keepalives in 20 s with a 1 s interval", keepalives(a.e, b.key.PublicKey()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	el := time.Since(start)
	if n, max := tickCount(a.e)-t0, uint64(el/time.Second)*4+4; n > max {
		t.Errorf("%d ticks in %v for one peer with a 1 s keepalive, want at most %d", n, el, max)
	}
}

// keepalives returns the keepalives e sent to the peer pk.
func keepalives(e *Engine, pk crypto.PublicKey) uint64 {
	for _, c := range e.PeerCounters() {
		if c.PublicKey == pk {
			return c.Keepalives
		}
	}
	return 0
}
