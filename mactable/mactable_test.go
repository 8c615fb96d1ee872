package mactable

import (
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

func mac(b byte) MAC { return MAC{0x02, 0, 0, 0, 0, b} }

func TestLearn(t *testing.T) {
	const local, a, b = 0, 1, 2
	type step struct {
		at       time.Duration
		mac      MAC
		port     int
		want     Result
		wantPrev int
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"new then refresh", []step{{0, mac(1), a, Learned, 0}, {time.Second, mac(1), a, Refreshed, 0}}},
		{"move to another peer", []step{{0, mac(1), a, Learned, 0}, {time.Second, mac(1), b, Moved, a}}},
		{"move from local", []step{{0, mac(1), local, Learned, 0}, {time.Second, mac(1), a, Moved, local}}},
		{"expired is learned anew", []step{{0, mac(1), a, Learned, 0}, {DefaultAgeing, mac(1), b, Learned, 0}}},
		{"expired same port", []step{{0, mac(1), a, Learned, 0}, {DefaultAgeing, mac(1), a, Learned, 0}}},
		{"broadcast", []step{{0, MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, a, Group, 0}}},
		{"multicast", []step{{0, MAC{0x33, 0x33, 0, 0, 0, 1}, a, Group, 0}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := New[int](0, 0, 0)
			for _, s := range tc.steps {
				got, prev := tb.Learn(s.mac, s.port, s.at)
				if got != s.want || prev != s.wantPrev {
					t.Errorf("at %v Learn(%v, %d) = %v, %d, want %v, %d", s.at, s.mac, s.port, got, prev, s.want, s.wantPrev)
				}
			}
		})
	}
}

func TestLookupAgeing(t *testing.T) {
	tb := New[int](10*time.Second, 0, 0)
	tb.Learn(mac(1), 7, 0)
	if p, ok := tb.Lookup(mac(1), 9*time.Second); !ok || p != 7 {
		t.Errorf("Lookup before ageing = %d, %v, want 7, true", p, ok)
	}
	if _, ok := tb.Lookup(mac(1), 10*time.Second); ok {
		t.Errorf("Lookup at ageing = true, want false")
	}
	if _, ok := tb.Lookup(MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0); ok {
		t.Errorf("Lookup(broadcast) = true, want false")
	}
	if n := tb.Sweep(10 * time.Second); n != 1 || tb.Len() != 0 {
		t.Errorf("Sweep = %d, Len = %d, want 1, 0", n, tb.Len())
	}
}

func TestBounds(t *testing.T) {
	tb := New[int](time.Minute, 4, 2)
	for i, want := range []Result{Learned, Learned, Full} {
		if got, _ := tb.Learn(mac(byte(i)), 1, 0); got != want {
			t.Errorf("port 1 entry %d: Learn = %v, want %v", i, got, want)
		}
	}
	tb.Learn(mac(10), 2, 0)
	tb.Learn(mac(11), 2, 0)
	if got, _ := tb.Learn(mac(12), 3, 0); got != Full {
		t.Errorf("past the total: Learn = %v, want full", got)
	}
	// A move into a full port is refused and leaves the binding.
	if got, _ := tb.Learn(mac(10), 1, 0); got != Full {
		t.Errorf("move into a full port: Learn = %v, want full", got)
	}
	if p, _ := tb.Lookup(mac(10), 0); p != 2 {
		t.Errorf("after the refused move: Lookup = %d, want 2", p)
	}
	// Once expired, entries make room.
	if got, _ := tb.Learn(mac(12), 3, time.Minute); got != Learned {
		t.Errorf("after ageing: Learn = %v, want learned", got)
	}
	tb.RemovePort(3)
	if tb.Len() != 0 && func() bool { _, ok := tb.Lookup(mac(12), time.Minute); return ok }() {
		t.Errorf("RemovePort left its entry")
	}
}

// TestDifferential compares the table with a plain map under random
// operations.
func TestDifferential(t *testing.T) {
	const ageing = 50
	tb := New[int](ageing, 64, 32)
	type ref struct {
		port int
		seen time.Duration
	}
	model := map[MAC]ref{}
	per := func(p int, now time.Duration) int {
		n := 0
		for _, r := range model {
			if r.port == p && now-r.seen < ageing {
				n++
			}
		}
		return n
	}
	r := rand.New(rand.NewPCG(1, 2))
	var now time.Duration
	for range 20000 {
		now += time.Duration(r.IntN(3))
		m := mac(byte(r.IntN(100)))
		port := 1 + r.IntN(3)
		if r.IntN(2) == 0 {
			got, ok := tb.Lookup(m, now)
			want, wok := model[m]
			wok = wok && now-want.seen < ageing
			if ok != wok || ok && got != want.port {
				t.Fatalf("at %d Lookup(%v) = %d, %v, want %d, %v", now, m, got, ok, want.port, wok)
			}
			continue
		}
		for k, v := range model {
			if now-v.seen >= ageing {
				delete(model, k)
			}
		}
		res, _ := tb.Learn(m, port, now)
		cur, known := model[m]
		live := 0
		for _, v := range model {
			if now-v.seen < ageing {
				live++
			}
		}
		switch {
		case known && cur.port == port:
			model[m] = ref{port, now}
		case per(port, now) >= 32 || !known && live >= 64:
			if res != Full {
				t.Fatalf("at %d Learn(%v, %d) = %v, want full", now, m, port, res)
			}
			continue
		default:
			model[m] = ref{port, now}
		}
		if res == Full {
			t.Fatalf("at %d Learn(%v, %d) = full, want a binding", now, m, port)
		}
	}
}

// TestFloodBounded floods one port with a million random source addresses:
// the table stays at its bound and the heap does not grow.
func TestFloodBounded(t *testing.T) {
	tb := New[int](0, 0, 100)
	r := rand.New(rand.NewPCG(3, 4))
	var before, after runtime.MemStats
	learn := func(n int) {
		for range n {
			var m MAC
			v := r.Uint64()
			for i := range m {
				m[i] = byte(v >> (8 * i))
			}
			m[0] &^= 1
			tb.Learn(m, 1, 0)
		}
	}
	learn(1000)
	runtime.GC()
	runtime.ReadMemStats(&before)
	learn(1_000_000)
	runtime.GC()
	runtime.ReadMemStats(&after)
	if tb.Len() != 100 {
		t.Errorf("Len = %d, want 100", tb.Len())
	}
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 1<<20 {
		t.Errorf("heap grew %d bytes during the flood, want flat", grew)
	}
}

func TestAllocs(t *testing.T) {
	tb := New[*int](0, 0, 0)
	p := new(int)
	tb.Learn(mac(1), p, 0)
	if n := testing.AllocsPerRun(1000, func() {
		tb.Learn(mac(1), p, time.Second)
		tb.Learn(mac(2), nil, time.Second)
		tb.Lookup(mac(1), time.Second)
	}); n != 0 {
		t.Errorf("Learn and Lookup: %v allocations, want 0", n)
	}
}

func BenchmarkLearnLookup(b *testing.B) {
	tb := New[*int](0, 0, 0)
	p := new(int)
	b.ReportAllocs()
	for b.Loop() {
		tb.Learn(mac(1), p, 0)
		tb.Lookup(mac(2), 0)
	}
}

func TestString(t *testing.T) {
	if got, want := (MAC{0x02, 0xab, 0, 1, 2, 0xff}).String(), "02:ab:00:01:02:ff"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}

// TestRunFrames: LearnFrames, LookupFrames and CountFrames count a run of
// frames at once, as that many calls of Learn and Lookup would, and
// CountFrames counts only on the port the MAC is still bound to.
func TestRunFrames(t *testing.T) {
	tab := New[int](time.Minute, 8, 8)
	a, b := MAC{2, 0, 0, 0, 0, 1}, MAC{2, 0, 0, 0, 0, 2}
	if r, _ := tab.LearnFrames(a, 1, 0, 5); r != Learned {
		t.Fatalf("LearnFrames: %v, want Learned", r)
	}
	tab.Learn(b, 2, 0)
	if p, ok := tab.LookupFrames(b, 0, 3); !ok || p != 2 {
		t.Fatalf("LookupFrames: %v %v, want 2 true", p, ok)
	}
	tab.CountFrames(a, 1, 4)
	tab.CountFrames(b, 1, 100) // bound to 2: not counted
	got := map[MAC]uint64{}
	for _, e := range tab.Entries(0) {
		got[e.MAC] = e.Frames
	}
	if got[a] != 9 || got[b] != 4 {
		t.Errorf("frames %v, want %v: 9, %v: 4", got, a, b)
	}
	if r, old := tab.LearnFrames(a, 2, 0, 2); r != Moved || old != 1 {
		t.Errorf("LearnFrames to another port: %v from %v, want Moved from 1", r, old)
	}
}
