package tunnel

import (
	"testing"
)

// TestPingBothWays: two engines pass IPv4 and IPv6 packets both ways; each
// side initiates in turn; with and without a PSK (P3/P4 at engine level).
func TestPingBothWays(t *testing.T) {
	for _, tc := range []struct {
		name      string
		psk       bool
		initiator string
	}{
		{"a initiates", false, "a"},
		{"b initiates", false, "b"},
		{"psk a initiates", true, "a"},
		{"psk b initiates", true, "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts pairOptions
			if tc.psk {
				opts.psk[0], opts.psk[31] = 7, 9
			}
			p := newPair(t, opts)
			first, second := p.a, p.b
			src, dst, src6, dst6 := innerA, innerB, inner6A, inner6B
			if tc.initiator == "b" {
				first, second = p.b, p.a
				src, dst, src6, dst6 = innerB, innerA, inner6B, inner6A
			}
			first.ad.inject(ping(src, dst, "v4-1"), ping(src6, dst6, "v6-1"))
			p.run()
			if got, want := payloads(second.ad.written()), "v4-1,v6-1"; got != want {
				t.Fatalf("delivered %q, want %q (drops %v / %v)", got, want, first.e.DropCounts(), second.e.DropCounts())
			}
			second.ad.inject(ping(dst, src, "v4-2"), ping(dst6, src6, "v6-2"))
			p.run()
			if got, want := payloads(first.ad.written()), "v4-2,v6-2"; got != want {
				t.Fatalf("reply delivered %q, want %q (drops %v / %v)", got, want, first.e.DropCounts(), second.e.DropCounts())
			}
			st := first.e.Stats()[0]
			if st.LastHandshake.IsZero() || st.TxBytes == 0 || st.RxBytes == 0 {
				t.Errorf("initiator stats %+v: want handshake time and bytes", st)
			}
		})
	}
}
