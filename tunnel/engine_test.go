package tunnel

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/warrenvpn/warren/crypto"
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

// TestMultiplePeers checks the per-peer split of one batch: packets to two
// peers interleaved in one read reach each peer in order, and a peer
// without a session (c, unreachable) holds up nobody else.
func TestMultiplePeers(t *testing.T) {
	p := established(t, pairOptions{})
	outerC := netip.MustParseAddrPort("198.18.0.3:51822")
	innerC := netip.MustParseAddr("198.19.0.3")
	c := newNode(t, p.clock, p.net, 3, outerC)
	if err := c.e.SetConfig(Config{PrivateKey: c.key, Peers: []PeerConfig{{PublicKey: p.a.pub,
		AllowedIPs: []netip.Prefix{netip.PrefixFrom(innerA, 32)}}}}); err != nil {
		t.Fatal(err)
	}
	if err := c.e.Up(); err != nil {
		t.Fatal(err)
	}
	if err := p.a.e.AddPeer(PeerConfig{PublicKey: c.pub, Endpoint: outerC,
		AllowedIPs: []netip.Prefix{netip.PrefixFrom(innerC, 32)}}); err != nil {
		t.Fatal(err)
	}
	blockC := true
	p.net.setHook(func(d *datagram) bool { return !blockC || (d.dst != outerC && d.src != outerC) })
	var batch [][]byte
	for i := range 8 {
		batch = append(batch, ping(innerA, innerB, fmt.Sprint("b", i)), ping(innerA, innerC, fmt.Sprint("c", i)))
	}
	p.a.ad.inject(batch...)
	step := func() {
		for moved := true; moved; {
			moved = p.a.step()
			moved = p.b.step() || moved
			moved = c.step() || moved
		}
	}
	step()
	if got, want := payloads(p.b.ad.written()), "b0,b1,b2,b3,b4,b5,b6,b7"; got != want {
		t.Errorf("b got %q, want %q", got, want)
	}
	blockC = false
	p.clock.advance(RekeyTimeout + RekeyTimeoutJitter)
	p.a.e.Tick()
	step()
	if got, want := payloads(c.ad.written()), "c0,c1,c2,c3,c4,c5,c6,c7"; got != want {
		t.Errorf("c got %q, want %q", got, want)
	}
}

// TestConfigValidation checks that a bad configuration is refused as a
// whole: nothing of it is applied.
func TestConfigValidation(t *testing.T) {
	p := established(t, pairOptions{})
	before := p.a.e.Config()
	other, _ := crypto.NewPrivateKey(seededRand(50))
	good := PeerConfig{PublicKey: other.PublicKey(), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("198.19.50.0/24")}}
	for _, tc := range []struct {
		name string
		peer PeerConfig
	}{
		{"negative keepalive", PeerConfig{PublicKey: other.PublicKey(), PersistentKeepalive: -time.Second}},
		{"keepalive past 65535 s", PeerConfig{PublicKey: other.PublicKey(), PersistentKeepalive: 65536 * time.Second}},
		{"invalid prefix", PeerConfig{PublicKey: other.PublicKey(), AllowedIPs: []netip.Prefix{{}}}},
		{"duplicate peer", good},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := before
			cfg.Peers = append(append([]PeerConfig(nil), before.Peers...), good, tc.peer)
			if err := p.a.e.SetConfig(cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("SetConfig = %v, want ErrInvalidConfig", err)
			}
			if tc.name != "duplicate peer" {
				if err := p.a.e.AddPeer(tc.peer); !errors.Is(err, ErrInvalidConfig) {
					t.Errorf("AddPeer = %v, want ErrInvalidConfig", err)
				}
			}
			if n := len(p.a.e.Config().Peers); n != 1 {
				t.Errorf("%d peers after a refused config, want 1", n)
			}
		})
	}
}

// TestRemovePeer checks that a removed peer's routes, sessions and indices
// are gone, and that its packets are then dropped as unroutable.
func TestRemovePeer(t *testing.T) {
	p := established(t, pairOptions{})
	if !p.a.e.RemovePeer(p.b.pub) {
		t.Fatal("RemovePeer = false")
	}
	if p.a.e.RemovePeer(p.b.pub) {
		t.Error("second RemovePeer = true")
	}
	if n := p.a.e.indices.len(); n != 0 {
		t.Errorf("%d indices left", n)
	}
	p.a.ad.inject(ping(innerA, innerB, "x"))
	p.net.inject(outerB, outerA, p.b.sealed(t, ping(innerB, innerA, "y")))
	p.run()
	if got := p.a.e.DropCounts(); got["no_route"] != 1 || got["unknown_index"] != 1 {
		t.Errorf("drops %v, want one no_route and one unknown_index", got)
	}
	if DropReason(-1).String() != "unknown" || numDropReasons.String() != "unknown" {
		t.Error("out-of-range drop reasons need a name")
	}
	if p.a.e.IsUp() != true {
		t.Error("engine went down")
	}
}
