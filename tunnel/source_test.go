package tunnel

import (
	"net/netip"
	"strings"
	"testing"
)

// outerB2Addr is b's second address in the source address tests: a host with
// two addresses on its underlay.
var outerB2Addr = netip.MustParseAddr("198.18.0.12")

// sourcesTo returns the distinct sources of the datagrams in log that went
// to dst, in order of appearance.
func sourcesTo(log []datagram, dst netip.AddrPort) []netip.AddrPort {
	var srcs []netip.AddrPort
	for _, d := range log {
		if d.dst == dst && (len(srcs) == 0 || srcs[len(srcs)-1] != d.src) {
			srcs = append(srcs, d.src)
		}
	}
	return srcs
}

// multiHomed returns a pair in which b has a second address and a knows b
// only by it, with a session that a started through it.
func multiHomed(t *testing.T) (p *pair, outerB2 netip.AddrPort) {
	t.Helper()
	p = newPair(t, pairOptions{})
	outerB2 = p.b.tr.addAddr(outerB2Addr)
	p.a.peer().setEndpoint(outerB2)
	p.net.takeLog()
	p.a.ad.inject(ping(innerA, innerB, "to b2"))
	p.run()
	p.b.ad.inject(ping(innerB, innerA, "reply"))
	p.run()
	if got := payloads(p.b.ad.written()); got != "to b2" {
		t.Fatalf("b got %q, want to b2", got)
	}
	if got := payloads(p.a.ad.written()); got != "reply" {
		t.Fatalf("a got %q, want reply", got)
	}
	return p, outerB2
}

// TestRO6RepliesFromAddressReached covers RO6 in memory: b has two
// addresses and a writes to the second, which is not b's first (the
// system's choice). b's handshake response, its data, and its own
// initiation later all leave from the second address, and a's view of b's
// endpoint stays on it. A configured endpoint forgets the learnt source.
func TestRO6RepliesFromAddressReached(t *testing.T) {
	p, outerB2 := multiHomed(t)
	log := p.net.takeLog()
	if got := sourcesTo(log, outerA); len(got) != 1 || got[0] != outerB2 {
		t.Errorf("b's datagrams to a came from %v, want only %v", got, outerB2)
	}
	if got := sourcesTo(log, outerB2); len(got) != 1 || got[0] != outerA {
		t.Errorf("a's datagrams to b came from %v, want only %v", got, outerA)
	}
	bp := p.b.peer()
	bp.mu.Lock()
	ep, local := bp.endpoint, bp.local
	bp.mu.Unlock()
	if ep != outerA || local != outerB2Addr {
		t.Errorf("b's peer: endpoint %v, local %v; want %v, %v", ep, local, outerA, outerB2Addr)
	}

	// b starts the next handshake: initiation and key confirmation leave
	// from the second address too.
	p.clock.advance(RekeyTimeout)
	bp.sendInitiation(false)
	p.run()
	log = p.net.takeLog()
	if len(log) < 3 {
		t.Fatalf("b's handshake moved %d datagrams, want initiation, response, keepalive", len(log))
	}
	if got := sourcesTo(log, outerA); len(got) != 1 || got[0] != outerB2 {
		t.Errorf("b's handshake datagrams to a came from %v, want only %v", got, outerB2)
	}
	if got := p.a.peer().currentEndpoint(); got != outerB2 {
		t.Errorf("a's endpoint of b is %v, want %v", got, outerB2)
	}

	// Configuration sets the endpoint: the system chooses the source.
	bp.setEndpoint(outerA)
	bp.mu.Lock()
	local = bp.local
	bp.mu.Unlock()
	if local.IsValid() {
		t.Errorf("after a configured endpoint b's source is %v, want the system's choice", local)
	}
}

// TestRO5SourceAddressGone covers RO5 in memory: b's second address, the
// one a writes to, disappears. What b sends next fails from it and goes
// from b's first address instead, with nothing counted as dropped; b
// forgets the address and logs it once; a authenticates the packet from b's
// first address and moves its endpoint there (RO1), so a's packets reach b
// again, and b learns its first address as the source.
func TestRO5SourceAddressGone(t *testing.T) {
	for _, tc := range []struct {
		name string
		send func(p *pair) // b sends to a
	}{
		{"data", func(p *pair) { p.b.ad.inject(ping(innerB, innerA, "after")) }},
		{"handshake", func(p *pair) {
			p.clock.advance(RekeyTimeout)
			p.b.peer().sendInitiation(false)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := multiHomed(t)
			rec := p.b.record()
			p.b.tr.removeAddr(outerB2Addr)

			// a's packets to the gone address are lost.
			p.a.ad.inject(ping(innerA, innerB, "lost"))
			p.run()
			if got := payloads(p.b.ad.written()); got != "" {
				t.Fatalf("b got %q through a removed address", got)
			}

			p.net.takeLog()
			tc.send(p)
			p.run()
			if got := sourcesTo(p.net.takeLog(), outerA); len(got) != 1 || got[0] != outerB {
				t.Errorf("after the removal b's datagrams to a came from %v, want only %v", got, outerB)
			}
			if tc.name == "data" {
				if got := payloads(p.a.ad.written()); got != "after" {
					t.Errorf("a got %q, want after", got)
				}
			}
			if d := p.b.e.drops[DropSendError].Load(); d != 0 {
				t.Errorf("b counted %d send errors, want 0 (sent again from the system's choice)", d)
			}
			bp := p.b.peer()
			bp.mu.Lock()
			local := bp.local
			bp.mu.Unlock()
			if local == outerB2Addr {
				t.Errorf("b still sends from %v", local) // else none, or outerB after a's handshake response
			}
			if got := p.a.peer().currentEndpoint(); got != outerB {
				t.Errorf("a's endpoint of b is %v, want %v", got, outerB)
			}
			if n := strings.Count(strings.Join(rec.take(), "\n"), "source address gone"); n != 1 {
				t.Errorf("b logged the gone source %d times, want once", n)
			}

			// a reaches b again, at the first address, which b learns.
			p.a.ad.inject(ping(innerA, innerB, "again"))
			p.run()
			if got := payloads(p.b.ad.written()); got != "again" {
				t.Errorf("b got %q, want again", got)
			}
			bp.mu.Lock()
			local = bp.local
			bp.mu.Unlock()
			if local != outerB.Addr() {
				t.Errorf("b sends from %v, want %v", local, outerB.Addr())
			}
		})
	}
}

// TestRO8RouteChange covers RO8 in memory: a preferred route with a new
// source address appears on a (a third address becomes the system's choice
// toward b), and b's view of a's endpoint follows; a learns the new address
// when b writes to it.
//
// When a's source is the system's choice anyway (b writes to a's first
// address), a sends without one, and so from the new address at once. When
// b writes to a's second address, a sends from it until its next look at
// the system's choice, within sourceCheckInterval of b's next packet, then
// forgets it and logs that once.
func TestRO8RouteChange(t *testing.T) {
	newAddr := netip.MustParseAddr("198.18.0.31")
	for _, tc := range []struct {
		name   string
		second bool // b writes to a's second address
	}{{"first address", false}, {"second address", true}} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, pairOptions{})
			from := outerA
			if tc.second {
				from = p.a.tr.addAddr(netip.MustParseAddr("198.18.0.11"))
				p.b.peer().setEndpoint(from)
			}
			ap := p.a.peer()
			localOf := func() netip.Addr {
				ap.mu.Lock()
				defer ap.mu.Unlock()
				return ap.local
			}
			exchange := func(what string) {
				t.Helper()
				p.b.ad.inject(ping(innerB, innerA, what))
				p.run()
				p.a.ad.inject(ping(innerA, innerB, what+" back"))
				p.run()
				if got := payloads(p.a.ad.written()); got != what {
					t.Fatalf("a got %q, want %s", got, what)
				}
				if got := payloads(p.b.ad.written()); got != what+" back" {
					t.Fatalf("b got %q, want %s back", got, what)
				}
			}
			exchange("hello")
			if got := localOf(); got != from.Addr() {
				t.Fatalf("a's source is %v, want %v", got, from.Addr())
			}
			rec := p.a.record()
			outerA3 := p.a.tr.addAddr(newAddr)
			p.a.tr.setRoute(newAddr)

			p.clock.advance(sourceCheckInterval / 2)
			exchange("soon")
			got := p.b.peer().currentEndpoint()
			if !tc.second && got != outerA3 {
				t.Errorf("b's endpoint of a is %v, want %v at once", got, outerA3)
			}
			if tc.second && got != from {
				t.Errorf("b's endpoint of a moved to %v before a looked", got)
			}
			p.clock.advance(sourceCheckInterval)
			exchange("later")
			if got := p.b.peer().currentEndpoint(); got != outerA3 {
				t.Errorf("b's endpoint of a is %v, want %v (RO8)", got, outerA3)
			}
			exchange("after")
			if got := localOf(); got != newAddr {
				t.Errorf("a's source is %v, want %v learnt anew", got, newAddr)
			}
			want := 0
			if tc.second {
				want = 1
			}
			if n := strings.Count(strings.Join(rec.take(), "\n"), "route toward peer changed"); n != want {
				t.Errorf("a logged the route change %d times, want %d", n, want)
			}
		})
	}
}
