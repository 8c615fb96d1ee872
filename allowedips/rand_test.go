package allowedips

import (
	"flag"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// reference is the naive model the table is checked against: a map of
// prefixes, looked up by trying every prefix length from the longest. A
// per-length index of masked addresses only makes that quicker.
type reference struct {
	m     map[netip.Prefix]int
	byLen [129]map[netip.Addr]int // masked address -> value, per prefix length (IPv4 and IPv6 apart by address)
}

func newReference() *reference { return &reference{m: make(map[netip.Prefix]int)} }

func (r *reference) set(p netip.Prefix, v int, ok bool) {
	p = p.Masked()
	idx := r.byLen[p.Bits()]
	if idx == nil {
		idx = make(map[netip.Addr]int)
		r.byLen[p.Bits()] = idx
	}
	if ok {
		r.m[p] = v
		idx[p.Addr()] = v
	} else {
		delete(r.m, p)
		delete(idx, p.Addr())
	}
}

func (r *reference) insert(p netip.Prefix, v int) { r.set(p, v, true) }

func (r *reference) removeFrom(p netip.Prefix, v int) {
	if got, ok := r.m[p.Masked()]; ok && got == v {
		r.set(p, 0, false)
	}
}

func (r *reference) removeValue(v int) {
	for p, got := range r.m {
		if got == v {
			r.set(p, 0, false)
		}
	}
}

func (r *reference) lookup(a netip.Addr) (int, bool) {
	for bits := a.BitLen(); bits >= 0; bits-- {
		if len(r.byLen[bits]) == 0 {
			continue
		}
		p, _ := a.Prefix(bits)
		if v, ok := r.byLen[bits][p.Addr()]; ok {
			return v, true
		}
	}
	return 0, false
}

// prefixGen makes random prefixes that nest: half of them extend or shorten
// one made before, so that lookups cross many levels of the trie.
type prefixGen struct {
	rng  *rand.Rand
	seen []netip.Prefix
}

func (g *prefixGen) addr(is4 bool) netip.Addr {
	if is4 {
		var b [4]byte
		for i := range b {
			b[i] = byte(g.rng.Uint32())
		}
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	for i := range b {
		b[i] = byte(g.rng.Uint32())
	}
	return netip.AddrFrom16(b)
}

func (g *prefixGen) prefix(is4 bool) netip.Prefix {
	a := g.addr(is4)
	bits := g.rng.IntN(a.BitLen() + 1)
	if len(g.seen) > 0 && g.rng.IntN(2) == 0 {
		base := g.seen[g.rng.IntN(len(g.seen))]
		if base.Addr().Is4() == is4 {
			// Keep base's bits and take the rest from a.
			a = mixAddr(base.Addr(), a, base.Bits())
		}
	}
	p := netip.PrefixFrom(a, bits)
	g.seen = append(g.seen, p.Masked())
	return p
}

// query returns an address inside a prefix made before, or a random one.
func (g *prefixGen) query() netip.Addr {
	if len(g.seen) > 0 && g.rng.IntN(4) != 0 {
		base := g.seen[g.rng.IntN(len(g.seen))]
		return mixAddr(base.Addr(), g.addr(base.Addr().Is4()), base.Bits())
	}
	return g.addr(g.rng.IntN(2) == 0)
}

// mixAddr returns the first n bits of hi followed by the rest of lo.
func mixAddr(hi, lo netip.Addr, n int) netip.Addr {
	h, l := hi.AsSlice(), lo.AsSlice()
	for i := range l {
		switch {
		case n >= 8*(i+1):
			l[i] = h[i]
		case n > 8*i:
			m := byte(0xff) << (8 - (n - 8*i))
			l[i] = h[i]&m | l[i]&^m
		}
	}
	a, _ := netip.AddrFromSlice(l)
	return a
}

// newRandomTable builds a table of n random prefixes over peers values (1..peers)
// and the matching reference. It serves tests and benchmarks.
func newRandomTable(seed uint64, n, peers int) (*Table[int], *reference, *prefixGen) {
	g := &prefixGen{rng: rand.New(rand.NewPCG(seed, seed))}
	tb, ref := &Table[int]{}, newReference()
	tb.Update(func(b *Batch[int]) {
		for range n {
			p := g.prefix(g.rng.IntN(3) != 0)
			v := 1 + g.rng.IntN(peers)
			b.Insert(p, v)
			ref.insert(p, v)
		}
	})
	return tb, ref, g
}

// long runs TestDifferential at full size: go test ./allowedips -long.
var long = flag.Bool("long", false, "run TestDifferential at full size (32k prefixes, 3.6M lookups)")

// TestDifferential is RELIABILITY C5: a random table checked against the
// naive reference while peers are removed until it is empty. The default
// size (8k prefixes over 1000 peers, 11 rounds of removals with 30k lookups
// each) keeps plain `go test ./...` quick; -long runs the full size (32k
// prefixes over 2000 peers, 1.2M lookups a round), and -short or -race a
// smaller one.
func TestDifferential(t *testing.T) {
	peers, perPeer, queries, removePerRound := 1000, 8, 30_000, 100
	switch {
	case *long:
		peers, perPeer, queries, removePerRound = 2000, 16, 1_200_000, 1000
	case testing.Short() || raceEnabled:
		peers, perPeer, queries, removePerRound = 300, 8, 20_000, 60
	}
	tb, ref, g := newRandomTable(1, peers*perPeer, peers)
	checkInvariants(t, tb)
	order := g.rng.Perm(peers)
	for round := 0; ; round++ {
		for range queries {
			a := g.query()
			got, gotOK := tb.Lookup(a)
			want, wantOK := ref.lookup(a)
			if got != want || gotOK != wantOK {
				t.Fatalf("round %d: Lookup(%v) = %d, %v; want %d, %v", round, a, got, gotOK, want, wantOK)
			}
		}
		if len(order) == 0 {
			break
		}
		k := min(removePerRound, len(order))
		for _, i := range order[:k] {
			v := i + 1
			if g.rng.IntN(2) == 0 {
				tb.RemoveValue(v)
			} else {
				for _, p := range tb.Entries(v) {
					tb.RemoveFrom(p, v)
				}
			}
			ref.removeValue(v)
		}
		order = order[k:]
		checkInvariants(t, tb)
		if tb.Len() != len(ref.m) {
			t.Fatalf("round %d: Len() = %d, want %d", round, tb.Len(), len(ref.m))
		}
	}
	if r := tb.root.Load(); tb.Len() != 0 || r.v4 != nil || r.v6 != nil {
		t.Fatalf("table not empty after removing every peer: Len() = %d", tb.Len())
	}
}

// FuzzTable runs insert/remove/lookup sequences decoded from the input
// against the reference.
func FuzzTable(f *testing.F) {
	f.Add([]byte{0, 24, 192, 168, 4, 0, 1, 0, 32, 192, 168, 4, 4, 2, 3, 192, 168, 4, 9})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 4, 0, 1, 64, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 2, 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var tb Table[int]
		ref := newReference()
		next := func(n int) []byte {
			if len(data) < n {
				data = append(data, make([]byte, n-len(data))...)
			}
			b := data[:n]
			data = data[n:]
			return b
		}
		for steps := 0; len(data) > 0 && steps < 200; steps++ {
			h := next(2)
			opc, v, bits := h[0]&7, int(h[0]>>3&3), int(h[1])
			var a netip.Addr
			if opc&4 == 0 {
				a = netip.AddrFrom4([4]byte(next(4)))
				bits %= 33
			} else {
				a = netip.AddrFrom16([16]byte(next(16)))
				bits %= 129
			}
			p := netip.PrefixFrom(a, bits)
			switch opc & 3 {
			case 0:
				tb.Insert(p, v)
				ref.insert(p, v)
			case 1:
				tb.RemoveFrom(p, v)
				ref.removeFrom(p, v)
			case 2:
				tb.RemoveValue(v)
				ref.removeValue(v)
			}
			got, gotOK := tb.Lookup(a)
			want, wantOK := ref.lookup(a)
			if got != want || gotOK != wantOK {
				t.Fatalf("Lookup(%v) = %d, %v; want %d, %v", a, got, gotOK, want, wantOK)
			}
		}
		checkInvariants(t, &tb)
		if tb.Len() != len(ref.m) {
			t.Fatalf("Len() = %d, want %d", tb.Len(), len(ref.m))
		}
	})
}

func benchmarkLookup(b *testing.B, n int, is4 bool) {
	tb, _, g := newRandomTable(2, 0, 1)
	tb.Update(func(bt *Batch[int]) {
		for i := range n {
			bt.Insert(g.prefix(is4), i)
		}
	})
	addrs := make([]netip.Addr, 4096)
	for i := range addrs {
		addrs[i] = g.query()
		if addrs[i].Is4() != is4 {
			addrs[i] = g.addr(is4)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		tb.Lookup(addrs[i&4095])
	}
}

func BenchmarkLookupIPv4Prefixes100k(b *testing.B) { benchmarkLookup(b, 100_000, true) }
func BenchmarkLookupIPv6Prefixes100k(b *testing.B) { benchmarkLookup(b, 100_000, false) }
func BenchmarkLookupIPv4Prefixes1k(b *testing.B)   { benchmarkLookup(b, 1000, true) }

// BenchmarkLookupPacketSrcParallel measures the engine's inbound check from
// all cores at once against a 100k-prefix table.
func BenchmarkLookupPacketSrcParallel(b *testing.B) {
	tb, _, _ := newRandomTable(3, 100_000, 1000)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		pkt := make([]byte, 20)
		pkt[0] = 0x45
		var i uint32
		for pb.Next() {
			i = i*1664525 + 1013904223
			pkt[12], pkt[13], pkt[14], pkt[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
			tb.LookupPacketSrc(pkt)
		}
	})
}

// prefixes100k returns the same 100,000 random prefixes (two thirds IPv4)
// for every build benchmark.
func prefixes100k() []netip.Prefix {
	g := &prefixGen{rng: rand.New(rand.NewPCG(4, 4))}
	ps := make([]netip.Prefix, 100_000)
	for i := range ps {
		ps[i] = g.prefix(i%3 != 0)
	}
	return ps
}

// BenchmarkInsert100k measures building a 100k-prefix table one Insert at a
// time (each one published), per prefix.
func BenchmarkInsert100k(b *testing.B) {
	ps := prefixes100k()
	b.ReportAllocs()
	for b.Loop() {
		var tb Table[int]
		for i, p := range ps {
			tb.Insert(p, i%1000)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ps)), "ns/prefix")
}

// BenchmarkUpdate100k measures building a 100k-prefix table in one batch
// (as the engine applies a configuration), per prefix.
func BenchmarkUpdate100k(b *testing.B) {
	ps := prefixes100k()
	b.ReportAllocs()
	for b.Loop() {
		var tb Table[int]
		tb.Update(func(bt *Batch[int]) {
			for i, p := range ps {
				bt.Insert(p, i%1000)
			}
		})
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ps)), "ns/prefix")
}
