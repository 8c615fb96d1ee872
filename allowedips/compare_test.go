package allowedips

import (
	"testing"

	"golang.zx2c4.com/wireguard/device"
)

// benchmarkWireGuardGo runs the workload of benchmarkLookup on wireguard-go's
// own allowed-IPs trie, as a yardstick (same prefixes and queries).
func benchmarkWireGuardGo(b *testing.B, n int, is4 bool) {
	_, _, g := newRandomTable(2, 0, 1)
	var t device.AllowedIPs
	peers := make([]device.Peer, 16)
	for i := range n {
		t.Insert(g.prefix(is4), &peers[i%len(peers)])
	}
	addrs := make([][]byte, 4096)
	for i := range addrs {
		a := g.query()
		if a.Is4() != is4 {
			a = g.addr(is4)
		}
		addrs[i] = a.AsSlice()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		t.Lookup(addrs[i&4095])
	}
}

func BenchmarkWireGuardGoIPv4Prefixes100k(b *testing.B) { benchmarkWireGuardGo(b, 100_000, true) }
func BenchmarkWireGuardGoIPv6Prefixes100k(b *testing.B) { benchmarkWireGuardGo(b, 100_000, false) }
