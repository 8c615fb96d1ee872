package tunnel

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/device/tun/tuntest"
	"github.com/warrenvpn/warren/internal/leakcheck"
	"github.com/warrenvpn/warren/transport/transporttest"
)

// TestHandshakeQueueBound covers D4 and D6 at the engine: a message
// with a bad mac1 takes no queue slot; the queue never holds more than 1024
// messages, the rest are dropped and counted; under-load mode turns on past
// 1000 valid-mac1 messages in a second, not on the queue's length, and
// stays on for 1 s after.
func TestHandshakeQueueBound(t *testing.T) {
	p := newPair(t, pairOptions{})
	for i := range 1500 {
		p.net.inject(spoofed(i), outerB, make148(crypto.InitiationSize, 1))
	}
	p.b.receiveAll(p.net)
	if got := len(p.b.e.handshakes); got != 0 {
		t.Errorf("bad-mac1 messages took %d queue slots", got)
	}
	if got := p.b.e.Drops(DropBadMAC); got != 1500 {
		t.Errorf("bad-mac drops %d, want 1500", got)
	}
	if p.b.e.load.isUnderLoad(p.clock.Now()) {
		t.Error("under load after bad-mac1 messages only")
	}
	newFlooder(t, p.b.pub).floodFrom(p.net, outerB, 1500, spoofed)
	p.b.receiveAll(p.net)
	if got := len(p.b.e.handshakes); got != handshakeQueueSize {
		t.Errorf("queue holds %d, want %d", got, handshakeQueueSize)
	}
	if got := p.b.e.Drops(DropHandshakeQueueFull); got != 1500-handshakeQueueSize {
		t.Errorf("queue-full drops %d, want %d", got, 1500-handshakeQueueSize)
	}
	if !p.b.e.load.isUnderLoad(p.clock.Now()) {
		t.Error("not under load after 1500 messages in a second")
	}
	p.b.e.drainHandshakes()
	p.clock.advance(underLoadAfterTime / 2)
	if !p.b.e.load.isUnderLoad(p.clock.Now()) {
		t.Error("under-load mode ended before 1 s")
	}
	p.clock.advance(underLoadAfterTime)
	if p.b.e.load.isUnderLoad(p.clock.Now()) {
		t.Error("under-load mode still on after 1 s")
	}
}

// TestMessageLimits covers R6 at the engine: past RekeyAfterMessages the
// initiator starts a handshake; at RejectAfterMessages nothing more is
// sealed and a handshake starts.
func TestMessageLimits(t *testing.T) {
	for _, tc := range []struct {
		name    string
		counter uint64
		sent    int // data messages expected on the wire
	}{
		{"rekey after messages", crypto.RekeyAfterMessages + 1, 1},
		{"reject after messages", crypto.RejectAfterMessages, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := established(t, pairOptions{})
			inits, data := 0, 0
			p.net.setHook(func(d *datagram) bool {
				switch crypto.MessageType(d.data[0]) {
				case crypto.MessageInitiation:
					inits++
					return false
				case crypto.MessageData:
					data++
				}
				return true
			})
			cur, _, _ := p.a.keypairs()
			cur.PresetSendCounter(tc.counter)
			p.clock.advance(RekeyTimeout) // past the D8 limit of the first handshake
			p.a.ad.inject(ping(innerA, innerB, "x"))
			p.run()
			if inits != 1 {
				t.Errorf("%d initiations, want 1", inits)
			}
			if data != tc.sent {
				t.Errorf("%d data messages, want %d", data, tc.sent)
			}
			pa := p.a.peer()
			pa.mu.Lock()
			staged := pa.staged.len()
			pa.mu.Unlock()
			if want := 1 - tc.sent; staged != want {
				t.Errorf("%d packets staged, want %d", staged, want)
			}
		})
	}
}

// TestMTUChanges covers L10 and P12: padding follows the adapter MTU from
// the next packet on; 0, negative and huge MTUs are harmless.
func TestMTUChanges(t *testing.T) {
	p := established(t, pairOptions{})
	var sizes []int
	p.net.setHook(func(d *datagram) bool {
		if d.src == outerA {
			sizes = append(sizes, len(d.data))
		}
		return true
	})
	pkt := ping(innerA, innerB, string(make([]byte, 1250))) // 1278 bytes
	mtus := []int{1280, 1278, 0, -1, 65535, 1 << 20, 34736}
	for _, mtu := range mtus {
		p.a.ad.mtu = mtu
		p.a.ad.inject(pkt)
		p.run()
	}
	// 1278 bytes pad to 1280 unless the MTU is 1278.
	want := []int{1280, 1278, 1280, 1280, 1280, 1280, 1280}
	if len(sizes) != len(want) {
		t.Fatalf("sent %v for MTUs %v", sizes, mtus)
	}
	for i := range want {
		if sizes[i] != want[i]+crypto.DataOverhead {
			t.Errorf("MTU %d: message of %d bytes, want %d", mtus[i], sizes[i], want[i]+crypto.DataOverhead)
		}
	}
	if got := len(p.b.ad.written()); got != len(want) {
		t.Errorf("delivered %d, want %d", got, len(want))
	}
}

// flakyTransport fails Receive a given number of times, then works.
type flakyTransport struct {
	*transporttest.Transport
	mu       sync.Mutex // guards failures
	failures int
}

var errTransient = errors.New("transient")

func (f *flakyTransport) Receive(bufs [][]byte, sizes []int, eps []netip.AddrPort, locals []netip.Addr) (int, error) {
	f.mu.Lock()
	if f.failures > 0 {
		f.failures--
		f.mu.Unlock()
		return 0, errTransient
	}
	f.mu.Unlock()
	return f.Transport.Receive(bufs, sizes, eps, locals)
}

// TestReceiveErrors covers L8: transient receive errors are retried and the
// engine recovers; a permanent error stops the receiver with a fatal error
// that Close reports.
func TestReceiveErrors(t *testing.T) {
	leakcheck.Check(t)
	for _, tc := range []struct {
		name     string
		failures int
		fatal    bool
	}{
		{"transient", 3, false},
		{"permanent", 1000, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nw := transporttest.NewNetwork(transporttest.Config{})
			tr, err := nw.NewTransport(outerB)
			if err != nil {
				t.Fatal(err)
			}
			ft := &flakyTransport{Transport: tr, failures: tc.failures}
			e := newEngine(tuntest.NewMemory(tuntest.MemoryOptions{}), ft, Options{})
			e.retryDelay = time.Millisecond
			e.wg.Go(e.receiveLoop)
			if err := e.Up(); err != nil {
				t.Fatal(err)
			}
			if tc.fatal {
				<-e.Done()
				e.wg.Wait() // the receiver stops by itself
				if err := e.Err(); !errors.Is(err, errTransient) {
					t.Errorf("Err = %v, want the receive error", err)
				}
				if err := e.Close(); !errors.Is(err, errTransient) {
					t.Errorf("Close = %v, want the receive error", err)
				}
				return
			}
			// A junk datagram shows that the receiver is back.
			nw.Inject(transporttest.Packet{Src: outerA, Dst: outerB, Data: []byte{1}})
			for e.Drops(DropShort) == 0 {
				time.Sleep(time.Millisecond) // polling a counter; there is no event to wait on
			}
			if err := e.Close(); err != nil {
				t.Errorf("Close = %v, want nil", err)
			}
		})
	}
}

// TestIndexCollision covers P13's last clause: an index already taken (or
// 0, which means none) is not handed out; a fresh random one is drawn.
func TestIndexCollision(t *testing.T) {
	var tab indexTable
	tab.init()
	draws := [][4]byte{{1, 0, 0, 0}, {1, 0, 0, 0}, {0, 0, 0, 0}, {2, 0, 0, 0}}
	next := func(b []byte) error {
		copy(b, draws[0][:])
		draws = draws[1:]
		return nil
	}
	a, _ := tab.newIndex(indexEntry{}, next)
	b, _ := tab.newIndex(indexEntry{}, next)
	if a != 1 || b != 2 {
		t.Errorf("indices %d, %d, want 1, 2", a, b)
	}
}

// TestPersistentKeepalive checks that an idle peer with a persistent
// keepalive of 25 s sends one every 25 s, and that an unrelated peer
// without one stays silent.
func TestPersistentKeepalive(t *testing.T) {
	p := established(t, pairOptions{keepalive: 25 * time.Second})
	p.net.takeLog()
	var at []time.Duration
	start := p.clock.Now()
	p.net.setHook(func(d *datagram) bool {
		if d.src == outerA && len(d.data) == crypto.KeepaliveSize {
			at = append(at, p.clock.Now()-start)
		}
		return true
	})
	p.ticks(80*time.Second, 500*time.Millisecond)
	if len(at) != 3 {
		t.Fatalf("keepalives at %v, want 3 in 80 s", at)
	}
	for i := 1; i < len(at); i++ {
		if gap := at[i] - at[i-1]; gap < 25*time.Second || gap > 26*time.Second {
			t.Errorf("keepalive gap %v, want 25 s", gap)
		}
	}
	if n := countFrom(p.net.takeLog(), outerB, crypto.MessageData); n != 0 {
		t.Errorf("b without persistent keepalive sent %d messages", n)
	}
}

// FuzzInbound feeds arbitrary datagrams to an engine with one established
// peer: nothing may panic, the peer's session stays put, and its endpoint
// moves only to the source of a datagram that authenticated (RO4, M6: only
// the sealed seed can, once).
func FuzzInbound(f *testing.F) {
	p := established(f, pairOptions{})
	f.Add(p.a.sealed(f, ping(innerA, innerB, "seed")))
	f.Add(make148(148, 1))
	f.Add(make148(92, 2))
	f.Add(make148(64, 3))
	f.Add([]byte{4, 0, 0, 0})
	f.Add([]byte{})
	cur, _, _ := p.b.keypairs()
	src := netip.MustParseAddrPort("198.18.0.3:3")
	f.Fuzz(func(t *testing.T, data []byte) {
		before := p.b.peer().stats()
		p.net.inject(src, outerB, data)
		p.b.step()
		if now, _, _ := p.b.keypairs(); now != cur {
			t.Fatal("session changed")
		}
		after := p.b.peer().stats()
		switch {
		case after.RxBytes == before.RxBytes && after.Endpoint != before.Endpoint:
			t.Fatalf("endpoint moved from %v to %v on a datagram that did not authenticate", before.Endpoint, after.Endpoint)
		case after.RxBytes != before.RxBytes && after.Endpoint != src:
			t.Fatalf("endpoint %v after an authenticated datagram from %v", after.Endpoint, src)
		}
		p.b.ad.written()
	})
}
