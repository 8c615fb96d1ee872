package tunnel

import (
	"encoding/hex"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/uapi"
)

// peersRequest returns a UAPI set of n new peers, each with an endpoint
// and one /32, as `wg syncconf` sends it (about 180 bytes a peer).
func peersRequest(n int) string {
	var b strings.Builder
	b.Grow(n * 200)
	b.WriteString("set=1\n")
	r := seededRand(42)
	var pub [32]byte
	for i := range n {
		r.Read(pub[:])
		fmt.Fprintf(&b, "public_key=%s\nendpoint=198.18.%d.%d:51820\nallowed_ip=10.%d.%d.%d/32\n",
			hex.EncodeToString(pub[:]), byte(i>>8), byte(i), byte(i>>16), byte(i>>8), byte(i))
	}
	b.WriteString("\n")
	return b.String()
}

// applyRequest serves req to e as one control connection would.
func applyRequest(tb testing.TB, e *Engine, req string) {
	tb.Helper()
	c := &rwConn{r: strings.NewReader(req)}
	if err := uapi.NewServer(e, nil).ServeConn(c); err != nil {
		tb.Fatal(err)
	}
	if got := c.w.String(); got != "errno=0\n\n" {
		tb.Fatalf("set: %q", got)
	}
}

type rwConn struct {
	r *strings.Reader
	w strings.Builder
}

func (c *rwConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *rwConn) Write(p []byte) (int, error) { return c.w.Write(p) }

// rss returns the resident set of the process after the heap's free pages
// went back to the system, or 0 where /proc is missing.
func rss() uint64 {
	debug.FreeOSMemory()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// BenchmarkSetPeers measures one UAPI set of n new peers on an engine
// that is up, with its timers (the idle cost), while an established peer's
// traffic is pumped through the engine: "s/set" is the set's wall time,
// "B/peer" the live heap it added per peer, and "traffic%" the established
// peer's packet rate during the set against before it; "RSS-B/peer" the
// resident memory it added per peer once the garbage is returned. Run it with
// -benchtime 1x: go test -run X -bench SetPeers -benchtime 1x ./tunnel
func BenchmarkSetPeers(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			for range b.N {
				setPeers(b, n)
			}
		})
	}
}

func setPeers(b *testing.B, n int) {
	b.StopTimer()
	req := peersRequest(n)
	pu := newPump(b, 64, 1400)
	e := pu.p.b.e
	// Traffic from the established peer a to e, counted per batch.
	var batches atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			pu.run()
			batches.Add(1)
		}
	})
	// The timers run as in production, over every peer.
	wg.Go(func() {
		t := time.NewTicker(defaultTickEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				e.Tick()
			}
		}
	})
	time.Sleep(200 * time.Millisecond)
	rssBefore := rss()
	before := heapInUse()
	b0, t0 := batches.Load(), time.Now()
	time.Sleep(time.Second)
	rateBefore := float64(batches.Load()-b0) / time.Since(t0).Seconds()

	b.StartTimer()
	b1, t1 := batches.Load(), time.Now()
	applyRequest(b, e, req)
	el := time.Since(t1)
	rateDuring := float64(batches.Load()-b1) / el.Seconds()
	b.StopTimer()
	close(stop)
	wg.Wait()
	after := heapInUse()
	runtime.KeepAlive(req)
	req = ""
	rssAfter := rss()
	if got := len(e.peerList()); got != n+1 {
		b.Fatalf("%d peers, want %d", got, n+1)
	}
	b.ReportMetric(el.Seconds(), "s/set")
	b.ReportMetric(float64(int64(after)-int64(before))/float64(n), "B/peer")
	b.ReportMetric(100*rateDuring/rateBefore, "traffic%")
	if rssAfter > 0 {
		b.ReportMetric(float64(int64(rssAfter)-int64(rssBefore))/float64(n), "RSS-B/peer")
	}
}

// TestPeerMemory checks what an idle peer costs: at most 2.5 KB of live
// heap each, with 10,000 peers added in one set.
func TestPeerMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("adds 10,000 peers")
	}
	const n = 10000
	req := peersRequest(n)
	k, _ := crypto.NewPrivateKey(seededRand(1))
	e := newEngine(&stepAdapter{mtu: 1420}, newStepNet().transport(outerA), Options{Clock: newFakeClock(), TickInterval: -1})
	t.Cleanup(func() { e.Close() })
	if err := e.SetConfig(Config{PrivateKey: k}); err != nil {
		t.Fatal(err)
	}
	before := heapInUse()
	applyRequest(t, e, req)
	after := heapInUse()
	per := float64(int64(after)-int64(before)) / n
	t.Logf("%.0f bytes per idle peer", per)
	if per > 2500 {
		t.Errorf("%.0f bytes per idle peer, want at most 2500", per)
	}
	runtime.KeepAlive(req)
}

// setconfRequest returns what `wg setconf` sends for n peers as
// peersRequest makes them: replace_peers, then each peer with
// replace_allowed_ips.
func setconfRequest(n int) string {
	req := peersRequest(n)
	req = strings.Replace(req, "set=1\n", "set=1\nreplace_peers=true\n", 1)
	return strings.ReplaceAll(req, "\nallowed_ip=", "\nreplace_allowed_ips=true\nallowed_ip=")
}

// BenchmarkSetconfSame measures a `wg setconf` that replaces n peers with
// the same set, as a reload does: "s/set" is its wall time.
// go test -run X -bench SetconfSame -benchtime 1x ./tunnel
func BenchmarkSetconfSame(b *testing.B) {
	for _, n := range []int{10000} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			k, _ := crypto.NewPrivateKey(seededRand(1))
			e := newEngine(&stepAdapter{mtu: 1420}, newStepNet().transport(outerA), Options{Clock: newFakeClock(), TickInterval: -1})
			b.Cleanup(func() { e.Close() })
			if err := e.SetConfig(Config{PrivateKey: k}); err != nil {
				b.Fatal(err)
			}
			req := setconfRequest(n)
			applyRequest(b, e, req)
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				applyRequest(b, e, req)
				b.ReportMetric(time.Since(t0).Seconds(), "s/set")
			}
			if got := len(e.peerList()); got != n {
				b.Fatalf("%d peers, want %d", got, n)
			}
		})
	}
}

// TestSetPacer checks when a set pauses between chunks (C16): only after
// setFree of work, only while the engine carries traffic, for
// (1-setDuty)/setDuty of the chunk's time, and never after setPauseBudget.
func TestSetPacer(t *testing.T) {
	e := newEngine(&stepAdapter{mtu: 1420}, newStepNet().transport(outerA), Options{Clock: newFakeClock(), TickInterval: -1})
	t.Cleanup(func() { e.Close() })
	var pauses []time.Duration
	s := newSetPacer(e)
	s.sleep = func(d time.Duration) { pauses = append(pauses, d) }
	chunk := func(took time.Duration, traffic bool) {
		if traffic {
			e.batches.transportSend.add(1)
		}
		s.chunk = time.Now().Add(-took)
		s.chunkDone()
	}
	// Idle engine: flat out, however long the set has worked.
	chunk(2*setFree, false)
	chunk(10*time.Millisecond, false)
	if len(pauses) != 0 {
		t.Fatalf("idle engine paused: %v", pauses)
	}
	// Traffic: the pause is (1-setDuty)/setDuty of the chunk.
	chunk(10*time.Millisecond, true)
	if len(pauses) != 1 || pauses[0] < 50*time.Millisecond || pauses[0] > 60*time.Millisecond {
		t.Fatalf("pauses %v, want one of about 57 ms", pauses)
	}
	// A long chunk pauses at most setMaxPause.
	chunk(time.Second, true)
	if len(pauses) != 2 || pauses[1] != setMaxPause {
		t.Fatalf("pauses %v, want the second %v", pauses, setMaxPause)
	}
	// After setPauseBudget the set runs flat out to its end.
	s.start = time.Now().Add(-setPauseBudget)
	chunk(10*time.Millisecond, true)
	chunk(10*time.Millisecond, true)
	if len(pauses) != 2 {
		t.Fatalf("paused after the budget: %v", pauses)
	}

	// A set that has worked less than setFree does not pause, traffic or not.
	s = newSetPacer(e)
	s.sleep = func(d time.Duration) { pauses = append(pauses, d) }
	pauses = nil
	chunk(setFree/4, true)
	chunk(setFree/4, true)
	if len(pauses) != 0 {
		t.Fatalf("a short set paused: %v", pauses)
	}

	// Once Close is asked, the set stops pausing: Close waits for the
	// rest of its work, not for its pauses.
	s = newSetPacer(e)
	s.sleep = func(d time.Duration) { pauses = append(pauses, d) }
	e.closeAsked.Store(true)
	chunk(2*setFree, true)
	chunk(10*time.Millisecond, true)
	if len(pauses) != 0 {
		t.Fatalf("paused while the engine closes: %v", pauses)
	}
}
