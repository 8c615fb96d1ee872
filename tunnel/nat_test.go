package tunnel

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// natAddr is the outside address of the source NAT in front of a.
var natAddr = netip.MustParseAddr("198.18.200.1")

// sourceNAT puts a (outerA) behind a source NAT whose mapping expires after
// timeout without an outbound packet (a conntrack timeout) and can vanish
// at once (a NAT reboot). a is reachable only through the mapping. Its hook
// runs under the stepNet's lock.
type sourceNAT struct {
	clock    *fakeClock
	timeout  time.Duration
	ext      netip.AddrPort // current mapping; invalid when none
	last     time.Duration  // Clock.Now of the last outbound packet
	mappings int            // mappings made so far
}

func (n *sourceNAT) hook(d *datagram) bool {
	now := n.clock.Now()
	if n.ext.IsValid() && now-n.last >= n.timeout {
		n.ext = netip.AddrPort{}
	}
	switch {
	case d.src == outerA:
		if !n.ext.IsValid() {
			n.mappings++
			n.ext = netip.AddrPortFrom(natAddr, uint16(40000+n.mappings))
		}
		n.last = now
		d.src = n.ext
	case d.dst == outerA:
		return false // only through the NAT
	case d.dst.Addr() == natAddr:
		if d.dst != n.ext {
			return false // no mapping: dropped, as a NAT does
		}
		d.dst = outerA
	}
	return true
}

// TestRO9KeepaliveHoldsNAT covers RO9 in memory: behind a source NAT with a
// 5 s mapping timeout, a 1 s persistent keepalive keeps the mapping alive
// through a minute without traffic, so the responder's packet reaches the
// initiator at once; without it the mapping is gone and the packet lost.
func TestRO9KeepaliveHoldsNAT(t *testing.T) {
	for _, tc := range []struct {
		keepalive time.Duration
		delivered bool
	}{{time.Second, true}, {0, false}} {
		t.Run(fmt.Sprintf("keepalive=%v", tc.keepalive), func(t *testing.T) {
			p := newPair(t, pairOptions{keepalive: tc.keepalive})
			n := &sourceNAT{clock: p.clock, timeout: 5 * time.Second}
			p.net.setHook(n.hook)
			p.a.ad.inject(ping(innerA, innerB, "out"))
			p.run()
			p.b.ad.inject(ping(innerB, innerA, "back"))
			p.run()
			if got := payloads(p.a.ad.written()); got != "back" {
				t.Fatalf("before the idle minute a got %q, want back", got)
			}
			p.ticks(time.Minute, 100*time.Millisecond)
			p.b.ad.inject(ping(innerB, innerA, "later"))
			p.run()
			got := payloads(p.a.ad.written()) == "later"
			if got != tc.delivered {
				t.Errorf("after a minute: delivered %v, want %v (%d mappings)", got, tc.delivered, n.mappings)
			}
			if tc.delivered && n.mappings != 1 {
				t.Errorf("%d NAT mappings, want the first one kept", n.mappings)
			}
		})
	}
}

// TestRO10NATRecovery covers RO10 in memory: when the NAT mapping in front
// of the initiator vanishes, the responder's packets are lost until the
// initiator's next packet makes a new mapping and moves the responder's
// endpoint (RO1): its 25 s persistent keepalive at the latest, here its new
// handshake 15 s after its data went unanswered (the responder's passive
// keepalive was lost with the mapping). The time to recover is measured and
// reported, and bounded by the keepalive interval.
func TestRO10NATRecovery(t *testing.T) {
	const keepalive = 25 * time.Second
	p := newPair(t, pairOptions{keepalive: keepalive})
	n := &sourceNAT{clock: p.clock, timeout: time.Hour}
	p.net.setHook(n.hook)
	p.a.ad.inject(ping(innerA, innerB, "out"))
	p.run()
	p.ticks(7*time.Second, 100*time.Millisecond)

	p.net.mu.Lock()
	n.ext = netip.AddrPort{} // the NAT reboots
	p.net.mu.Unlock()
	lost := p.clock.Now()
	for i := 0; ; i++ {
		if p.clock.Now()-lost > 2*keepalive {
			t.Fatalf("not recovered %v after the mapping vanished (a's drops %v, b's %v)", p.clock.Now()-lost, p.a.e.DropCounts(), p.b.e.DropCounts())
		}
		if i%10 == 0 { // b pings a every second
			p.b.ad.inject(ping(innerB, innerA, fmt.Sprint(i)))
		}
		p.tick(100 * time.Millisecond)
		if len(p.a.ad.written()) > 0 {
			break
		}
	}
	took := p.clock.Now() - lost
	t.Logf("recovered %v after the NAT mapping vanished (persistent keepalive %v)", took, keepalive)
	if took > keepalive+time.Second {
		t.Errorf("recovery took %v, want at most the keepalive interval %v + 1 s", took, keepalive)
	}
	if n.mappings != 2 {
		t.Errorf("%d NAT mappings, want 2", n.mappings)
	}
}
