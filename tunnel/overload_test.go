package tunnel

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenvpn/warren/internal/leakcheck"
	"github.com/warrenvpn/warren/transport/transporttest"
)

// TestD10Overload covers D10: with UDP offered to an engine at more than
// twice what it takes (a data stream from its peer plus a flood of garbage
// and valid-mac1 initiations, into a bounded socket queue), every queue
// stays bounded, nothing deadlocks (the tunnel carries a ping both ways
// afterwards, Close returns), and no goroutine or pooled buffer is left.
func TestD10Overload(t *testing.T) {
	leakcheck.Check(t)
	nw := transporttest.NewNetwork(transporttest.Config{QueueLen: 256})
	a, b := newLivePair(t, nw, nil)
	if err := a.mem.Inject(ping(innerA, innerB, "hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := receive(b.mem, 1); err != nil {
		t.Fatalf("no session: %v", err)
	}

	garbage := garbageMessages(1024)
	f := newFlooder(t, b.key.PublicKey())
	inits := make([][]byte, 1024)
	for i := range inits {
		inits[i] = f.initiation()
	}
	var wg sync.WaitGroup
	after := make(chan struct{}, 1)
	wg.Go(func() { // b's host reads what b delivers until Close
		for p := range b.mem.Written() {
			if payloadOf(p) == "after" {
				select {
				case after <- struct{}{}:
				default:
				}
			}
		}
	})
	stopStream := make(chan struct{})
	var stream sync.WaitGroup
	stream.Go(func() { // a's host sends a stream to b
		for i := range 20000 {
			select {
			case <-stopStream:
				return
			default:
			}
			if a.mem.Inject(ping(innerA, innerB, fmt.Sprint(i))) != nil {
				return
			}
		}
	})
	bAddr := b.tr.Addr()
	// The flood, from many sources and several goroutines, until it has
	// offered at least twice what b took: how much b takes depends on
	// scheduling (the race detector, 386, a loaded machine), so the
	// flood's length does too, within a bound.
	const minFlood, maxFlood, flooders = 200000, 8000000, 4
	var injected atomic.Int64
	stopFlood := make(chan struct{})
	var flood sync.WaitGroup
	for w := range flooders {
		flood.Go(func() {
			for i := w; ; i += flooders {
				select {
				case <-stopFlood:
					return
				default:
				}
				data := garbage[i%len(garbage)]
				if i%2 == 0 {
					data = inits[i%len(inits)]
				}
				nw.Inject(transporttest.Packet{Src: spoofed(i), Dst: bAddr, Data: data})
				injected.Add(1)
			}
		})
	}
	for {
		if got := len(b.e.handshakes); got > handshakeQueueSize {
			t.Errorf("handshake queue holds %d, more than %d", got, handshakeQueueSize)
		}
		if got := len(b.e.handshakesMAC2); got > handshakeMAC2QueueSize {
			t.Errorf("mac2 queue holds %d, more than %d", got, handshakeMAC2QueueSize)
		}
		n := injected.Load()
		if st := nw.Stats(); n >= maxFlood || (n >= minFlood && st.QueueFull >= st.Delivered) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(stopFlood)
	flood.Wait()
	st := nw.Stats()
	if st.QueueFull < st.Delivered {
		t.Errorf("offered %d, taken %d: not twice what the engine takes; the test proves nothing", st.Delivered+st.QueueFull, st.Delivered)
	}
	t.Logf("network %+v; b's drops %v", st, b.e.DropCounts())

	close(stopStream)
	stream.Wait()

	// Nothing is stuck: a ping goes through both ways once the flood ends.
	// The network may still lose one to a queue the stream filled: each
	// try waits for the ping or for 2 s.
	for try := 0; ; try++ {
		if try == 10 {
			t.Fatalf("ping a to b after the flood: not delivered in 10 tries (drops %v)", b.e.DropCounts())
		}
		if err := a.mem.Inject(ping(innerA, innerB, "after")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-after:
		case <-time.After(2 * time.Second):
			continue
		}
		break
	}
	if err := b.mem.Inject(ping(innerB, innerA, "after")); err != nil {
		t.Fatal(err)
	}
	if _, err := receive(a.mem, 1); err != nil {
		t.Fatalf("ping b to a after the flood: %v (drops %v)", err, a.e.DropCounts())
	}
	a.e.Close()
	b.e.Close()
	wg.Wait()
	for _, n := range []*liveNode{a, b} {
		if out := n.e.pool.out.Load(); out != 0 {
			t.Errorf("%d pooled buffers not returned", out)
		}
	}
}
