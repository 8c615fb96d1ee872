package config

import (
	"fmt"
	"strings"
	"testing"

	"github.com/warrenvpn/warren/crypto"
)

// bigConfig returns a file with peers peers of prefixes allowed IPs each,
// every peer's prefixes on one line.
func bigConfig(tb testing.TB, peers, prefixes int) string {
	tb.Helper()
	var b strings.Builder
	b.WriteString(minimal)
	for i := range peers {
		var k crypto.PublicKey
		k[0], k[1], k[2] = byte(i>>16), byte(i>>8), byte(i)
		fmt.Fprintf(&b, "[Peer]\nPublicKey = %s\nAllowedIPs = ", k)
		for j := range prefixes {
			if j > 0 {
				b.WriteString(", ")
			}
			n := i*prefixes + j
			fmt.Fprintf(&b, "10.%d.%d.%d/32", n>>16&0xff, n>>8&0xff, n&0xff)
		}
		b.WriteString("\nEndpoint = 198.18.0.1:51820\n")
	}
	return b.String()
}

// TestParseBig parses one peer with 130,560 allowed IPs on one line (C2's
// largest case) and 1000 peers with 52 each.
func TestParseBig(t *testing.T) {
	for _, size := range []struct{ peers, prefixes int }{{1, 130560}, {1000, 52}} {
		c, err := Parse("wg0.conf", strings.NewReader(bigConfig(t, size.peers, size.prefixes)))
		if err != nil {
			t.Fatalf("Parse(%d peers × %d) error = %v", size.peers, size.prefixes, err)
		}
		got := 0
		for _, p := range c.Peers {
			got += len(p.AllowedIPs)
		}
		if len(c.Peers) != size.peers || got != size.peers*size.prefixes {
			t.Errorf("Parse(%d peers × %d) = %d peers, %d prefixes", size.peers, size.prefixes, len(c.Peers), got)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	text := bigConfig(b, 1000, 52)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("wg0.conf", strings.NewReader(text)); err != nil {
			b.Fatal(err)
		}
	}
}
