package crypto

import (
	"sync"
	"testing"
)

// TestReplayWindowKernel is R1: the 34 enumerated cases of the kernel's
// counter selftest (drivers/net/wireguard/selftest/counter.c, also in
// wireguard-go's replay_test.go), run in order on one window.
func TestReplayWindowKernel(t *testing.T) {
	const lim = ReplayWindowSize + 1
	const rej = RejectAfterMessages
	cases := []struct {
		counter uint64
		want    bool
	}{
		{0, true},                  // 1
		{1, true},                  // 2
		{1, false},                 // 3
		{9, true},                  // 4
		{8, true},                  // 5
		{7, true},                  // 6
		{7, false},                 // 7
		{lim, true},                // 8
		{lim - 1, true},            // 9
		{lim - 1, false},           // 10
		{lim - 2, true},            // 11
		{2, true},                  // 12
		{2, false},                 // 13
		{lim + 16, true},           // 14
		{3, false},                 // 15
		{lim + 16, false},          // 16
		{lim * 4, true},            // 17
		{lim*4 - (lim - 1), true},  // 18
		{10, false},                // 19
		{lim*4 - lim, false},       // 20
		{lim*4 - (lim + 1), false}, // 21
		{lim*4 - (lim - 2), true},  // 22
		{lim*4 + 1 - lim, false},   // 23
		{0, false},                 // 24
		{rej, false},               // 25
		{rej - 1, true},            // 26
		{rej, false},               // 27
		{rej - 1, false},           // 28
		{rej - 2, true},            // 29
		{rej + 1, false},           // 30
		{rej + 2, false},           // 31
		{rej - 2, false},           // 32
		{rej - 3, true},            // 33
		{0, false},                 // 34
	}
	if len(cases) != 34 {
		t.Fatalf("%d cases, want 34", len(cases))
	}
	var w ReplayWindow
	for i, tc := range cases {
		if got := w.Accept(tc.counter); got != tc.want {
			t.Fatalf("case %d: Accept(%d) = %v, want %v", i+1, tc.counter, got, tc.want)
		}
	}
}

// TestReplayWindowBulk is R2: the six bulk sweeps of the kernel selftest.
func TestReplayWindowBulk(t *testing.T) {
	const W = ReplayWindowSize
	type check struct {
		counter uint64
		want    bool
	}
	seq := func(from, to uint64) []check { // inclusive, either direction, all accepted
		var out []check
		if from <= to {
			for i := from; i <= to; i++ {
				out = append(out, check{i, true})
			}
		} else {
			for i := from; i >= to; i-- {
				out = append(out, check{i, true})
				if i == 0 {
					break
				}
			}
		}
		return out
	}
	tests := []struct {
		name   string
		checks []check
	}{
		{"1..W then 0", append(seq(1, W), check{0, true}, check{0, false})},
		{"2..W+1 then 1", append(seq(2, W+1), check{1, true}, check{0, false})},
		{"W+1..1 descending", seq(W+1, 1)},
		{"W+2..2 descending then 0", append(seq(W+2, 2), check{0, false})},
		{"W..1 then W+1", append(seq(W, 1), check{W + 1, true}, check{0, false})},
		{"W..1 then 0, W+1", append(seq(W, 1), check{0, true}, check{W + 1, true})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var w ReplayWindow
			for i, c := range tc.checks {
				if got := w.Accept(c.counter); got != c.want {
					t.Fatalf("check %d: Accept(%d) = %v, want %v", i+1, c.counter, got, c.want)
				}
			}
			w.Reset()
			if !w.Accept(0) {
				t.Errorf("after Reset: Accept(0) = false")
			}
		})
	}
}

// TestReplayWindowDifferential compares the window with a naive reference
// (a set plus the highest counter) on random walks.
func TestReplayWindowDifferential(t *testing.T) {
	r := newTestRand(42)
	var b [8]byte
	for round := range 20 {
		var w ReplayWindow
		seen := map[uint64]bool{}
		var top uint64
		var any bool
		base := uint64(round) * 1000
		for range 5000 {
			r.Read(b[:])
			c := base + uint64(b[0])<<8 | uint64(b[1])
			if b[2] < 8 { // occasional big jump ahead
				c += uint64(b[3]) * 100
			}
			want := !seen[c] && (!any || c+ReplayWindowSize >= top)
			if got := w.Accept(c); got != want {
				t.Fatalf("round %d: Accept(%d) = %v, want %v (top %d)", round, c, got, want, top)
			}
			if want {
				seen[c] = true
				if !any || c > top {
					top = c
				}
				any = true
			}
			base = max(base, top-min(top, 4000))
		}
	}
}

// TestReplayWindowConcurrent is R5: several workers accept counters on one
// window under -race; every counter is accepted exactly once.
func TestReplayWindowConcurrent(t *testing.T) {
	var w ReplayWindow
	const n, workers = 4000, 4
	accepted := make([][]uint64, workers)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			// Every worker offers every counter; order differs per worker.
			for i := range n {
				c := uint64(i)
				if g%2 == 1 {
					c = uint64(n - 1 - i)
				}
				if w.Accept(c) {
					accepted[g] = append(accepted[g], c)
				}
			}
		})
	}
	wg.Wait()
	count := map[uint64]int{}
	for _, a := range accepted {
		for _, c := range a {
			count[c]++
		}
	}
	for c := range uint64(n) {
		if count[c] != 1 {
			t.Errorf("counter %d accepted %d times", c, count[c])
		}
	}
}

// acceptBatchEquivalent replays the script data on two windows, one
// counter at a time with Accept and in batches with AcceptBatch, and fails
// on the first difference. Each step takes 3 bytes: a counter move (a jump
// ahead, a step back, or a repeat), whether the entry is offered (ok on
// input), and whether a batch ends after it.
func acceptBatchEquivalent(t *testing.T, data []byte, start uint64) {
	t.Helper()
	var one, many ReplayWindow
	var counters []uint64
	var ok, offered []bool
	flush := func() {
		many.AcceptBatch(counters, ok)
		for i, c := range counters {
			want := offered[i] && one.Accept(c)
			if ok[i] != want {
				t.Fatalf("AcceptBatch gave %v for counter %d (offered %v), Accept %v", ok[i], c, offered[i], want)
			}
		}
		counters, ok, offered = counters[:0], ok[:0], offered[:0]
	}
	c := start
	for ; len(data) >= 3; data = data[3:] {
		switch m := data[0]; {
		case m < 128:
			c += uint64(m)
		case m < 192:
			c -= min(c, uint64(m-128)*200) // may fall out of the window
		case m < 250:
			// the same counter again
		default:
			c = RejectAfterMessages - 1 + uint64(m-250)%3 // the limit
		}
		counters = append(counters, c)
		ok = append(ok, data[1]&1 == 0)
		offered = append(offered, data[1]&1 == 0)
		if data[2]&3 == 0 {
			flush()
		}
	}
	flush()
}

// TestReplayWindowAcceptBatch checks AcceptBatch against Accept on random
// scripts (one lock per batch, the same answers in the same order).
func TestReplayWindowAcceptBatch(t *testing.T) {
	r := newTestRand(7)
	for round := range 50 {
		data := make([]byte, 3*2000)
		r.Read(data)
		acceptBatchEquivalent(t, data, uint64(round)*1e6)
	}
	// Empty and all-skipped batches change nothing.
	var w ReplayWindow
	w.AcceptBatch(nil, nil)
	ok := []bool{false, false}
	w.AcceptBatch([]uint64{5, 6}, ok)
	if ok[0] || ok[1] || !w.Accept(5) {
		t.Errorf("skipped entries were recorded or reported: %v", ok)
	}
}

// FuzzReplayAcceptBatch: AcceptBatch answers as Accept does, in order.
func FuzzReplayAcceptBatch(f *testing.F) {
	f.Add([]byte{1, 0, 0, 1, 0, 1, 200, 0, 0, 130, 0, 0}, uint64(0))
	f.Add([]byte{255, 0, 1, 254, 0, 0, 0, 1, 0}, uint64(1<<40))
	f.Fuzz(func(t *testing.T, data []byte, start uint64) {
		acceptBatchEquivalent(t, data, start)
	})
}
