package tunnel

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/warrenvpn/warren/internal/leakcheck"
	"github.com/warrenvpn/warren/transport/transporttest"
	"github.com/warrenvpn/warren/uapi"
)

// TestL1UpDownCycles covers L1 as the kernel's test does it: 10 rounds of
// 50 down/up cycles of two linked engines, while packets flow both ways and
// persistent keepalives run every second. After each round traffic gets
// through both ways; nothing fails, deadlocks or leaves a goroutine.
func TestL1UpDownCycles(t *testing.T) {
	leakcheck.Check(t)
	a, b := newLivePair(t, transporttest.NewNetwork(transporttest.Config{}), nil)
	ka := uint16(1)
	for _, x := range []struct{ n, peer *liveNode }{{a, b}, {b, a}} {
		if err := x.n.e.Apply(&uapi.Change{Peers: []uapi.PeerChange{{PublicKey: x.peer.key.PublicKey(), UpdateOnly: true, PersistentKeepalive: &ka}}}); err != nil {
			t.Fatal(err)
		}
	}
	// Markers seen by each side's drainer, by payload.
	var mu sync.Mutex
	seen := map[string]bool{}
	var drained sync.WaitGroup
	for _, n := range []*liveNode{a, b} {
		drained.Go(func() {
			for p := range n.mem.Written() {
				if s := payloadOf(p); len(s) > 0 && s[0] == 'm' {
					mu.Lock()
					seen[s] = true
					mu.Unlock()
				}
			}
		})
	}
	stop := make(chan struct{})
	var traffic sync.WaitGroup
	send := func(n *liveNode, fromA bool, payload string) error {
		if fromA {
			return n.mem.Inject(ping(innerA, innerB, payload))
		}
		return n.mem.Inject(ping(innerB, innerA, payload))
	}
	for _, fromA := range []bool{true, false} {
		n := a
		if !fromA {
			n = b
		}
		traffic.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if send(n, fromA, fmt.Sprint(i)) != nil {
					return
				}
				time.Sleep(200 * time.Microsecond) // pacing, not waiting for an event
			}
		})
	}
	// through waits until a marker sent each way arrives, resending it
	// every second: a handshake lost to a down engine is retried after 5 s.
	through := func(round int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second) // a safety net for a broken engine
		for _, fromA := range []bool{true, false} {
			n := a
			if !fromA {
				n = b
			}
			marker := fmt.Sprintf("m%d-%v", round, fromA)
			for {
				if err := send(n, fromA, marker); err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				ok := seen[marker]
				mu.Unlock()
				if ok {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("round %d: no traffic (from a: %v) after the cycles (drops %v / %v)", round, fromA, a.e.DropCounts(), b.e.DropCounts())
				}
				for range 100 {
					time.Sleep(10 * time.Millisecond)
					mu.Lock()
					ok = seen[marker]
					mu.Unlock()
					if ok {
						break
					}
				}
			}
		}
	}
	for round := range 10 {
		for j := range 50 {
			e := a.e
			if j%2 == 1 {
				e = b.e
			}
			if err := e.Down(); err != nil {
				t.Fatalf("round %d cycle %d: Down: %v", round, j, err)
			}
			if err := e.Up(); err != nil {
				t.Fatalf("round %d cycle %d: Up: %v", round, j, err)
			}
		}
		through(round)
	}
	close(stop)
	traffic.Wait()
	for _, n := range []*liveNode{a, b} {
		if err := n.e.Close(); err != nil {
			t.Fatal(err)
		}
		if err := n.e.Err(); err != nil {
			t.Errorf("engine failed: %v", err)
		}
	}
	drained.Wait()
}
