package tunnel

import (
	"encoding/binary"
	"runtime"
	"testing"

	"github.com/warrenvpn/warren/internal/leakcheck"
)

// withHelpers gives both engines of pu n crypto helpers, started, and the
// pump's scratch their forks.
func withHelpers(pu *pump, n int) {
	for _, e := range []*Engine{pu.p.a.e, pu.p.b.e} {
		e.helpers = newHelperPool(n)
		e.startHelpers()
	}
	pu.out.fork = pu.p.a.e.newFork()
	pu.in.fork = pu.p.b.e.newFork()
}

// TestCryptoHelpersOrder: batches of one flow sealed and opened with
// helpers arrive complete and in order, the same datagrams again are all
// dropped as replays, and Close ends the helpers (leak check). Run it with
// -race.
func TestCryptoHelpersOrder(t *testing.T) {
	leakcheck.Check(t)
	const batch, rounds = 64, 20
	pu := newPump(t, batch, 200)
	withHelpers(pu, 2)
	dst := &stepAdapter{mtu: 1420}
	pu.p.b.e.adapter = dst
	seq := uint32(0)
	for round := range rounds {
		for i := range pu.templates {
			binary.BigEndian.PutUint32(pu.templates[i][28:], seq) // in the UDP payload
			seq++
		}
		pu.run()
		got := dst.written()
		if len(got) != batch {
			t.Fatalf("round %d: %d of %d packets arrived (drops %v / %v)", round, len(got), batch, pu.p.a.e.DropCounts(), pu.p.b.e.DropCounts())
		}
		for i, pkt := range got {
			if want := seq - batch + uint32(i); binary.BigEndian.Uint32(pkt[28:]) != want {
				t.Fatalf("round %d: packet %d carries %d, want %d", round, i, binary.BigEndian.Uint32(pkt[28:]), want)
			}
		}
	}
	// One more batch, its datagrams kept as an attacker would keep them,
	// then delivered twice: the second time every one is a replay.
	for i, tpl := range pu.templates {
		pu.out.sizes[i] = copy(pu.out.bufs[i][Offset:], tpl)
	}
	pu.sink.n = 0
	pu.p.a.e.processOutbound(pu.out, batch)
	saved := make([][]byte, pu.sink.n)
	for i := range saved {
		saved[i] = append([]byte(nil), pu.in.bufs[i][:pu.in.sizes[i]]...)
	}
	pu.p.b.e.processInbound(pu.in, len(saved))
	if n := len(dst.written()); n != batch {
		t.Fatalf("%d of %d packets arrived", n, batch)
	}
	before := pu.p.b.e.Drops(DropReplay)
	for i, m := range saved {
		pu.in.sizes[i] = copy(pu.in.bufs[i], m)
		pu.in.eps[i] = outerA
	}
	pu.p.b.e.processInbound(pu.in, len(saved))
	if n := len(dst.written()); n != 0 {
		t.Errorf("%d replayed packets were written", n)
	}
	if got := pu.p.b.e.Drops(DropReplay) - before; got != uint64(len(saved)) {
		t.Errorf("%d replays dropped, want %d", got, len(saved))
	}
}

// TestForkHelperDoesPart makes sure a helper, not the owner, seals a part:
// the owner's own part waits until every offered part is claimed; each
// message then carries the counter of its place.
func TestForkHelperDoesPart(t *testing.T) {
	leakcheck.Check(t)
	pu := newPump(t, 64, 100)
	withHelpers(pu, 1)
	a := pu.p.a.e
	kp := a.peerList()[0].keys.current
	f := pu.out.fork
	msgs := make([][]byte, 64)
	sizes := make([]int, 64)
	for i := range msgs {
		msgs[i] = make([]byte, bufferSize)
		sizes[i] = copy(msgs[i][Offset:], pu.templates[i])
	}
	first, got, err := kp.ReserveCounters(len(msgs))
	if err != nil || got != len(msgs) {
		t.Fatal(got, err)
	}
	gen := f.gen
	f.run(got, func(p *forkPart, lo, hi int) {
		p.kp, p.msgs, p.sizes, p.mtu, p.first = kp, msgs[lo:hi], sizes[lo:hi], 1420, first+uint64(lo)
	}, func(lo, hi int) {
		for f.parts[0].state.Load() == gen {
			runtime.Gosched() // until the helper claims its part
		}
		sealRange(kp, msgs[lo:hi], sizes[lo:hi], 1420, first+uint64(lo))
	})
	for i, m := range msgs {
		if c := binary.LittleEndian.Uint64(m[8:]); len(m) < 32 || c != first+uint64(i) {
			t.Fatalf("message %d: length %d, counter %d, want %d", i, len(m), c, first+uint64(i))
		}
	}
}

// TestCryptoHelpersAllocs: with helpers the batch path still allocates
// nothing.
func TestCryptoHelpersAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	pu := newPump(t, 64, 1420)
	withHelpers(pu, 1)
	pu.run()
	if allocs := testing.AllocsPerRun(100, pu.run); allocs != 0 {
		t.Errorf("%v allocations per batch with helpers, want 0", allocs)
	}
	if want := 102 * 64; pu.dst.packets != want {
		t.Errorf("delivered %d packets, want %d (drops %v / %v)", pu.dst.packets, want, pu.p.a.e.DropCounts(), pu.p.b.e.DropCounts())
	}
}

// TestHelperCount: explicit, none, and automatic (cores beyond two per
// pipeline, never negative).
func TestHelperCount(t *testing.T) {
	if n := helperCount(3, 4); n != 3 {
		t.Errorf("helperCount(3, 4) = %d", n)
	}
	if n := helperCount(-1, 1); n != 0 {
		t.Errorf("helperCount(-1, 1) = %d", n)
	}
	if n, want := helperCount(0, 1), max(0, runtime.GOMAXPROCS(0)-2); n != want {
		t.Errorf("helperCount(0, 1) = %d, want %d", n, want)
	}
	if n := helperCount(0, runtime.GOMAXPROCS(0)); n != 0 {
		t.Errorf("helperCount(0, GOMAXPROCS) = %d, want 0", n)
	}
	if newHelperPool(0) != nil {
		t.Error("newHelperPool(0) is not nil")
	}
}
