package allowedips

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// peer stands in for the engine's *Peer.
type peer struct{ name string }

// op is one step of a table-driven scenario: insert, remove (RemoveFrom with
// the peer, as the kernel selftest's remove), or check a lookup.
type op struct {
	kind   byte // 'i' insert, 'r' RemoveFrom, 'R' RemoveValue, '=' lookup finds p, '!' lookup does not find p
	p      string
	prefix string // prefix for i/r, address for =/!
}

func runOps(t *testing.T, tb *Table[*peer], peers map[string]*peer, ops []op) {
	t.Helper()
	for i, o := range ops {
		var v *peer
		if o.p != "" {
			v = peers[o.p]
			if v == nil {
				v = &peer{o.p}
				peers[o.p] = v
			}
		}
		switch o.kind {
		case 'i':
			tb.Insert(netip.MustParsePrefix(o.prefix), v)
		case 'r':
			tb.RemoveFrom(netip.MustParsePrefix(o.prefix), v)
		case 'R':
			tb.RemoveValue(v)
		case '=', '!':
			got, ok := tb.Lookup(netip.MustParseAddr(o.prefix))
			if (o.kind == '=') != (ok && got == v) {
				gotName := "(none)"
				if ok {
					gotName = got.name
				}
				t.Errorf("step %d: Lookup(%s) = %s, want %c%s", i, o.prefix, gotName, o.kind, o.p)
			}
		}
		checkInvariants(t, tb)
	}
}

// TestKernelVectorsIPv4 replays the static IPv4 vectors of the kernel's
// allowedips selftest (C5).
func TestKernelVectorsIPv4(t *testing.T) {
	var tb Table[*peer]
	peers := map[string]*peer{}
	runOps(t, &tb, peers, []op{
		{'i', "a", "192.168.4.0/24"},
		{'i', "b", "192.168.4.4/32"},
		{'i', "c", "192.168.0.0/16"},
		{'i', "d", "192.95.5.64/27"},
		{'i', "c", "192.95.5.65/27"}, // same prefix as d's: moves to c
		{'i', "e", "0.0.0.0/0"},
		{'i', "g", "64.15.112.0/20"},
		{'i', "h", "64.15.123.211/25"},
		{'i', "a", "10.0.0.0/25"},
		{'i', "b", "10.0.0.128/25"},
		{'i', "a", "10.1.0.0/30"},
		{'i', "b", "10.1.0.4/30"},
		{'i', "c", "10.1.0.8/29"},
		{'i', "d", "10.1.0.16/29"},
		{'=', "a", "192.168.4.20"},
		{'=', "a", "192.168.4.0"},
		{'=', "b", "192.168.4.4"},
		{'=', "c", "192.168.200.182"},
		{'=', "c", "192.95.5.68"},
		{'=', "e", "192.95.5.96"},
		{'=', "g", "64.15.116.26"},
		{'=', "g", "64.15.127.3"},
		{'i', "a", "1.0.0.0/32"},
		{'i', "a", "64.0.0.0/32"},
		{'i', "a", "128.0.0.0/32"},
		{'i', "a", "192.0.0.0/32"},
		{'i', "a", "255.0.0.0/32"},
		{'=', "a", "1.0.0.0"},
		{'=', "a", "64.0.0.0"},
		{'=', "a", "128.0.0.0"},
		{'=', "a", "192.0.0.0"},
		{'=', "a", "255.0.0.0"},
		{'R', "a", ""},
		{'!', "a", "1.0.0.0"},
		{'!', "a", "64.0.0.0"},
		{'!', "a", "128.0.0.0"},
		{'!', "a", "192.0.0.0"},
		{'!', "a", "255.0.0.0"},
		{'R', "a", ""}, {'R', "b", ""}, {'R', "c", ""}, {'R', "d", ""},
		{'R', "e", ""}, {'R', "g", ""}, {'R', "h", ""},
	})
	if r := tb.root.Load(); r.v4 != nil || r.v6 != nil || tb.Len() != 0 {
		t.Fatalf("removing every peer left %d entries, v4 root %p, v6 root %p", tb.Len(), r.v4, r.v6)
	}
	runOps(t, &tb, peers, []op{
		{'i', "a", "192.168.0.0/16"},
		{'i', "a", "192.168.0.0/24"},
		{'R', "a", ""},
		{'!', "a", "192.168.0.1"},
		{'i', "a", "1.0.0.0/32"},
		{'i', "a", "192.0.0.0/24"},
		{'=', "a", "1.0.0.0"},
		{'=', "a", "192.0.0.1"},
		{'r', "a", "192.0.0.0/32"},
		{'=', "a", "192.0.0.1"},
		{'r', "", "192.0.0.0/24"}, // nil peer: not the owner
		{'=', "a", "192.0.0.1"},
		{'r', "b", "192.0.0.0/24"},
		{'=', "a", "192.0.0.1"},
		{'r', "a", "192.0.0.0/24"},
		{'!', "a", "192.0.0.1"},
		{'r', "a", "1.0.0.0/32"},
		{'!', "a", "1.0.0.0"},
	})
}

// TestKernelVectorsIPv6 replays the static IPv6 vectors of the kernel's
// allowedips selftest (C5).
func TestKernelVectorsIPv6(t *testing.T) {
	var tb Table[*peer]
	peers := map[string]*peer{}
	runOps(t, &tb, peers, []op{
		{'i', "d", "2607:5300:6000:6b00::c05f:543/128"},
		{'i', "c", "2607:5300:6000:6b00::/64"},
		{'i', "e", "::/0"},
		{'i', "f", "::/0"},
		{'i', "g", "2404:6800::/32"},
		{'i', "h", "2404:6800:4004:800:dead:beef:dead:beef/64"},
		{'i', "a", "2404:6800:4004:800:dead:beef:dead:beef/128"},
		{'i', "c", "2444:6800:40e4:800:deae:beef:def:beef/128"},
		{'i', "b", "2444:6800:f0e4:800:eeae:beef::/98"},
		{'=', "d", "2607:5300:6000:6b00::c05f:543"},
		{'=', "c", "2607:5300:6000:6b00::c02e:1ee"},
		{'=', "f", "2607:5300:6000:6b01::"},
		{'=', "g", "2404:6800:4004:806::1006"},
		{'=', "g", "2404:6800:4004:806:0:1234:0:5678"},
		{'=', "f", "2404:67ff:4004:806:0:1234:0:5678"},
		{'=', "f", "2404:6801:4004:806:0:1234:0:5678"},
		{'=', "h", "2404:6800:4004:800:0:1234:0:5678"},
		{'=', "h", "2404:6800:4004:800::"},
		{'=', "h", "2404:6800:4004:800:1010:1010:1010:1010"},
		{'=', "a", "2404:6800:4004:800:dead:beef:dead:beef"},
		{'i', "a", "2444:6801:40e4:800:deae:beef:def:beef/128"},
		{'i', "a", "2444:6800:f0e4:800:eeae:beef::/98"},
		{'=', "a", "2444:6801:40e4:800:deae:beef:def:beef"},
		{'=', "a", "2444:6800:f0e4:800:eeae:beef:1010:1010"},
		{'r', "a", "2444:6801:40e4:800:deae:beef:def:beef/96"},
		{'=', "a", "2444:6801:40e4:800:deae:beef:def:beef"},
		{'r', "", "2444:6801:40e4:800:deae:beef:def:beef/128"},
		{'=', "a", "2444:6801:40e4:800:deae:beef:def:beef"},
		{'r', "b", "2444:6801:40e4:800:deae:beef:def:beef/128"},
		{'=', "a", "2444:6801:40e4:800:deae:beef:def:beef"},
		{'r', "a", "2444:6801:40e4:800:deae:beef:def:beef/128"},
		{'!', "a", "2444:6801:40e4:800:deae:beef:def:beef"},
		{'r', "b", "2444:6800:f0e4:800:eeae:beef::/98"},
		{'=', "a", "2444:6800:f0e4:800:eeae:beef:1010:1010"},
		{'r', "a", "2444:6800:f0e4:800:eeae:beef::/98"},
		{'!', "a", "2444:6800:f0e4:800:eeae:beef:1010:1010"},
	})
}

// TestInsertMasksAndMoves is RELIABILITY C4: host bits are cleared, and the
// same prefix inserted for another value moves to it.
func TestInsertMasksAndMoves(t *testing.T) {
	var tb Table[*peer]
	a, b := &peer{"a"}, &peer{"b"}
	tb.Insert(netip.MustParsePrefix("192.95.5.93/27"), a)
	want := []netip.Prefix{netip.MustParsePrefix("192.95.5.64/27")}
	if got := tb.Entries(a); !slices.Equal(got, want) {
		t.Fatalf("Entries(a) = %v, want %v", got, want)
	}
	tb.Insert(netip.MustParsePrefix("192.95.5.70/27"), b)
	if got := tb.Entries(a); len(got) != 0 {
		t.Errorf("Entries(a) after move = %v, want none", got)
	}
	if got := tb.Entries(b); !slices.Equal(got, want) {
		t.Errorf("Entries(b) = %v, want %v", got, want)
	}
	if got, _ := tb.Lookup(netip.MustParseAddr("192.95.5.65")); got != b {
		t.Errorf("Lookup(192.95.5.65) = %v, want b", got)
	}
	if tb.Len() != 1 {
		t.Errorf("Len() = %d, want 1", tb.Len())
	}
	if tb.RemoveFrom(want[0], a) {
		t.Errorf("RemoveFrom(%v, a) removed b's prefix", want[0])
	}
	if !tb.Remove(netip.MustParsePrefix("192.95.5.66/27")) || tb.Len() != 0 {
		t.Errorf("Remove(192.95.5.66/27) did not remove it, Len() = %d", tb.Len())
	}
}

func TestEntriesOrderAndFamilies(t *testing.T) {
	var tb Table[int]
	in := []string{"fd00:7761::/32", "198.18.0.0/15", "10.0.0.1/32", "::/0", "0.0.0.0/0", "::ffff:198.18.0.0/120"}
	for _, s := range in {
		tb.Insert(netip.MustParsePrefix(s), 1)
	}
	tb.Insert(netip.MustParsePrefix("198.18.0.0/15"), 1) // re-insert moves to the end
	want := []string{"fd00:7761::/32", "10.0.0.1/32", "::/0", "0.0.0.0/0", "::ffff:198.18.0.0/120", "198.18.0.0/15"}
	var got []string
	for _, p := range tb.Entries(1) {
		got = append(got, p.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("Entries = %v, want %v", got, want)
	}
	tests := []struct {
		addr string
		ok   bool
	}{
		{"1.2.3.4", true},
		{"::1", true},
		{"::ffff:1.2.3.4", true}, // IPv6 ::/0
	}
	for _, tc := range tests {
		if _, ok := tb.Lookup(netip.MustParseAddr(tc.addr)); ok != tc.ok {
			t.Errorf("Lookup(%s) found = %v, want %v", tc.addr, ok, tc.ok)
		}
	}
	tb.Remove(netip.MustParsePrefix("::/0"))
	if _, ok := tb.Lookup(netip.MustParseAddr("::ffff:1.2.3.4")); ok {
		t.Errorf("Lookup(::ffff:1.2.3.4) found 0.0.0.0/0 through the IPv4 trie")
	}
	if v, ok := tb.Lookup(netip.MustParseAddr("::ffff:198.18.0.9")); !ok || v != 1 {
		t.Errorf("Lookup(::ffff:198.18.0.9) = %v, %v; want 1, true", v, ok)
	}
	if _, ok := tb.Lookup(netip.Addr{}); ok {
		t.Errorf("Lookup(invalid) found something")
	}
	if n := tb.RemoveValue(1); n != 5 || tb.Len() != 0 {
		t.Errorf("RemoveValue = %d, Len() = %d; want 5, 0", n, tb.Len())
	}
}

func TestLookupPacket(t *testing.T) {
	var tb Table[string]
	tb.Insert(netip.MustParsePrefix("198.18.0.0/24"), "src4")
	tb.Insert(netip.MustParsePrefix("198.19.0.0/24"), "dst4")
	tb.Insert(netip.MustParsePrefix("fd00:7761::/64"), "src6")
	tb.Insert(netip.MustParsePrefix("fd00:7761:1::/64"), "dst6")
	v4 := make([]byte, 20)
	v4[0] = 0x45
	copy(v4[12:], []byte{198, 18, 0, 1})
	copy(v4[16:], []byte{198, 19, 0, 1})
	v6 := make([]byte, 40)
	v6[0] = 0x60
	a, b := netip.MustParseAddr("fd00:7761::1").As16(), netip.MustParseAddr("fd00:7761:1::1").As16()
	copy(v6[8:], a[:])
	copy(v6[24:], b[:])
	tests := []struct {
		name     string
		pkt      []byte
		src, dst string
	}{
		{"ipv4", v4, "src4", "dst4"},
		{"ipv6", v6, "src6", "dst6"},
		{"short ipv4", v4[:19], "", ""},
		{"short ipv6", v6[:39], "", ""},
		{"empty", nil, "", ""},
		{"version 5", append([]byte{0x50}, v4[1:]...), "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, _ := tb.LookupPacketSrc(tc.pkt); got != tc.src {
				t.Errorf("LookupPacketSrc = %q, want %q", got, tc.src)
			}
			if got, _ := tb.LookupPacketDst(tc.pkt); got != tc.dst {
				t.Errorf("LookupPacketDst = %q, want %q", got, tc.dst)
			}
		})
	}
	if _, ok := tb.lookupBytes(make([]byte, 5)); ok {
		t.Errorf("lookupBytes of 5 bytes found something")
	}
}

// TestUpdateAtomic checks that lookups running during updates see a batch
// entirely or not at all, and that updates never hide an unrelated prefix
// (run with -race).
func TestUpdateAtomic(t *testing.T) {
	var tb Table[int]
	stable := netip.MustParseAddr("198.18.255.1")
	tb.Insert(netip.MustParsePrefix("198.18.255.0/24"), -1)
	x, y := netip.MustParsePrefix("198.18.1.0/24"), netip.MustParsePrefix("fd00:7761::/48")
	xa, ya := netip.MustParseAddr("198.18.1.1"), netip.MustParseAddr("fd00:7761::1")
	var stop atomic.Bool
	var wg sync.WaitGroup
	var torn, lost atomic.Int64
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
				// Each batch raises the values of y and then x together, so
				// reading y first, x can never be older, unless a batch was
				// published in pieces.
				vy, _ := tb.Lookup(ya)
				vx, _ := tb.Lookup(xa)
				if vx < vy {
					torn.Add(1)
				}
				if v, ok := tb.Lookup(stable); !ok || v != -1 {
					lost.Add(1)
				}
			}
		})
	}
	for i := range 3000 {
		tb.Update(func(b *Batch[int]) {
			b.Insert(y, i)
			b.Insert(x, i)
		})
		if i%3 == 0 {
			tb.Insert(netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)), i)
		}
	}
	stop.Store(true)
	wg.Wait()
	if torn.Load() != 0 || lost.Load() != 0 {
		t.Errorf("lookups saw %d torn batches and lost a stable prefix %d times", torn.Load(), lost.Load())
	}
}

func TestLookupAllocs(t *testing.T) {
	tb, _, _ := newRandomTable(1, 1000, 1)
	addr4 := netip.MustParseAddr("198.18.0.1")
	addr6 := netip.MustParseAddr("fd00:7761::1")
	pkt := make([]byte, 40)
	pkt[0] = 0x60
	tests := []struct {
		name string
		f    func()
	}{
		{"Lookup v4", func() { tb.Lookup(addr4) }},
		{"Lookup v6", func() { tb.Lookup(addr6) }},
		{"lookupBytes", func() { tb.lookupBytes(pkt[8:24]) }},
		{"LookupPacketSrc", func() { tb.LookupPacketSrc(pkt) }},
		{"LookupPacketDst", func() { tb.LookupPacketDst(pkt) }},
	}
	for _, tc := range tests {
		if n := testing.AllocsPerRun(100, tc.f); n != 0 {
			t.Errorf("%s: %v allocs per run, want 0", tc.name, n)
		}
	}
}

// checkInvariants verifies the shape of both tries against the index.
func checkInvariants[V comparable](t testing.TB, tb *Table[V]) {
	t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	r := tb.root.Load()
	if r == nil {
		if len(tb.owner) != 0 {
			t.Fatalf("no tries but %d owners", len(tb.owner))
		}
		return
	}
	count := 0
	var walk func(n *node[V], parentBits int, maxBits int, is4 bool)
	walk = func(n *node[V], parentBits int, maxBits int, is4 bool) {
		if n == nil {
			return
		}
		if int(n.bits) <= parentBits || int(n.bits) > maxBits {
			t.Fatalf("node /%d below /%d (max %d)", n.bits, parentBits, maxBits)
		}
		if n.key != n.key.masked(int(n.bits)) {
			t.Fatalf("node /%d has an unmasked key", n.bits)
		}
		for i, c := range n.child {
			if c != nil && (!n.matches(c.key) || c.key.bit(n.bits) != i) {
				t.Fatalf("child %d of /%d is misplaced", i, n.bits)
			}
		}
		if n.has {
			count++
			var p netip.Prefix
			if is4 {
				p = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(n.key.hi >> 56), byte(n.key.hi >> 48), byte(n.key.hi >> 40), byte(n.key.hi >> 32)}), int(n.bits))
			} else {
				var b [16]byte
				for i := range 8 {
					b[i], b[8+i] = byte(n.key.hi>>(56-8*i)), byte(n.key.lo>>(56-8*i))
				}
				p = netip.PrefixFrom(netip.AddrFrom16(b), int(n.bits))
			}
			if e, ok := tb.owner[p]; !ok || e.value != n.value {
				t.Fatalf("trie holds %v, index does not agree", p)
			}
		} else if n.child[0] == nil || n.child[1] == nil {
			t.Fatalf("valueless node /%d without two children", n.bits)
		}
		walk(n.child[0], int(n.bits), maxBits, is4)
		walk(n.child[1], int(n.bits), maxBits, is4)
	}
	walk(r.v4, -1, 32, true)
	walk(r.v6, -1, 128, false)
	if count != len(tb.owner) {
		t.Fatalf("tries hold %d prefixes, index %d", count, len(tb.owner))
	}
}
