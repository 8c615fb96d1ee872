package tunnel

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/warrenvpn/warren/crypto"
)

// TestInnerPacketChecks covers M7-M10 and M9/N6: authenticated payloads
// that are not IP, have inconsistent lengths, come from a source outside
// the sender's allowed IPs, or are empty.
func TestInnerPacketChecks(t *testing.T) {
	good := ping(innerA, innerB, "ok")
	padded := append(append([]byte(nil), good...), make([]byte, 6)...)
	long := append([]byte(nil), good...)
	binary.BigEndian.PutUint16(long[2:], uint16(len(long)+100)) // past the padding too
	short := append([]byte(nil), good...)
	binary.BigEndian.PutUint16(short[2:], 19)
	long6 := ping(inner6A, inner6B, "ok6")
	binary.BigEndian.PutUint16(long6[4:], 200)
	notIP := append([]byte(nil), good...)
	notIP[0] = 0x55
	spoofed := ping(netip.MustParseAddr("198.19.0.99"), innerB, "spoof")
	for _, tc := range []struct {
		name    string
		payload []byte
		drop    DropReason // numDropReasons: delivered
		want    []byte
	}{
		{"IPv4 delivered", good, numDropReasons, good},
		{"M8 padding trimmed", padded, numDropReasons, good},
		{"M8 IPv4 length past payload", long, DropLengthError, nil},
		{"M8 IPv4 length under 20", short, DropLengthError, nil},
		{"M8 IPv6 length past payload", long6, DropLengthError, nil},
		{"M8 truncated header", good[:12], DropLengthError, nil},
		{"M7 not IP", notIP, DropFrameError, nil},
		{"M9 source outside allowed IPs", spoofed, DropSourceCheck, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := established(t, pairOptions{})
			p.net.inject(outerA, outerB, p.a.sealed(t, tc.payload))
			p.run()
			got := p.b.ad.written()
			if tc.drop != numDropReasons {
				if n := p.b.e.Drops(tc.drop); n != 1 {
					t.Errorf("%v drops = %d, want 1 (all %v)", tc.drop, n, p.b.e.DropCounts())
				}
				if len(got) != 0 {
					t.Errorf("delivered %d packets, want 0", len(got))
				}
				return
			}
			if len(got) != 1 || string(got[0]) != string(tc.want) {
				t.Errorf("delivered %x, want %x", got, tc.want)
			}
		})
	}
}

// TestKeepaliveUpdatesTimers covers M10: an authenticated empty payload
// moves the timers and writes nothing to the adapter.
func TestKeepaliveUpdatesTimers(t *testing.T) {
	p := established(t, pairOptions{})
	pb := p.b.peer()
	// b sent data: it waits for a reply within 15 s.
	p.b.ad.inject(ping(innerB, innerA, "x"))
	p.b.step()
	pb.mu.Lock()
	armed := pb.timers.newHandshake.set
	pb.mu.Unlock()
	if !armed {
		t.Fatal("new-handshake timer not armed after sending")
	}
	p.net.inject(outerA, outerB, p.a.sealed(t, nil))
	p.b.step()
	pb.mu.Lock()
	armed = pb.timers.newHandshake.set
	pb.mu.Unlock()
	if armed {
		t.Error("keepalive did not disarm the new-handshake timer")
	}
	if got := len(p.b.ad.written()); got != 0 {
		t.Errorf("keepalive wrote %d packets", got)
	}
}

// TestSourceCheckMovesWithAllowedIPs is N6 in memory: peer a may send from
// 198.19.241.0/24; once another peer gets .2/32, a's packets from .2 drop.
func TestSourceCheckMovesWithAllowedIPs(t *testing.T) {
	p := established(t, pairOptions{})
	src := netip.MustParseAddr("198.19.241.2")
	cfg := p.b.e.Config()
	cfg.Peers[0].AllowedIPs = append(cfg.Peers[0].AllowedIPs, netip.MustParsePrefix("198.19.241.0/24"))
	if err := p.b.e.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	p.net.inject(outerA, outerB, p.a.sealed(t, ping(src, innerB, "1")))
	p.run()
	if got := payloads(p.b.ad.written()); got != "1" {
		t.Fatalf("before: delivered %q, want 1", got)
	}
	other, _ := crypto.NewPrivateKey(seededRand(9))
	cfg.Peers = append(cfg.Peers, PeerConfig{PublicKey: other.PublicKey(), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("198.19.241.2/32")}})
	if err := p.b.e.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	p.net.inject(outerA, outerB, p.a.sealed(t, ping(src, innerB, "2")))
	p.run()
	if got := payloads(p.b.ad.written()); got != "" {
		t.Errorf("after: delivered %q, want nothing", got)
	}
	if got := p.b.e.Drops(DropSourceCheck); got != 1 {
		t.Errorf("source check drops %d, want 1", got)
	}
}

// TestRoaming covers RO1-RO4: the endpoint follows the outer source of the
// latest authenticated packet, over IPv4 and IPv6, even when the source
// check then drops it; an unauthenticated packet moves nothing.
func TestRoaming(t *testing.T) {
	for _, tc := range []struct {
		name    string
		from    string
		payload func(p *pair) []byte
		moves   bool
		written int
	}{
		{"RO1 new IPv4 address and port", "127.212.121.99:9999",
			func(p *pair) []byte { return p.a.sealed(t, ping(innerA, innerB, "x")) }, true, 1},
		{"RO2 IPv6", "[::1]:9998",
			func(p *pair) []byte { return p.a.sealed(t, ping(innerA, innerB, "x")) }, true, 1},
		{"RO3 authenticated, source check fails", "[::1]:9997",
			func(p *pair) []byte {
				return p.a.sealed(t, ping(netip.MustParseAddr("198.19.0.99"), innerB, "x"))
			}, true, 0},
		{"RO4 spoofed, unauthenticated", "127.0.0.9:9",
			func(p *pair) []byte {
				m := p.a.sealed(t, ping(innerA, innerB, "x"))
				m[len(m)-1] ^= 1
				return m
			}, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := established(t, pairOptions{})
			from := netip.MustParseAddrPort(tc.from)
			p.net.inject(from, outerB, tc.payload(p))
			p.run()
			if got := len(p.b.ad.written()); got != tc.written {
				t.Errorf("written %d, want %d", got, tc.written)
			}
			want := outerA
			if tc.moves {
				want = from
			}
			if got := p.b.e.Stats()[0].Endpoint; got != want {
				t.Errorf("endpoint %v, want %v", got, want)
			}
		})
	}
	t.Run("replies follow the roamed endpoint", func(t *testing.T) {
		p := established(t, pairOptions{})
		moved := netip.MustParseAddrPort("198.18.7.7:7777")
		// A NAT: a's packets appear from moved; packets to moved reach a.
		p.net.setHook(func(d *datagram) bool {
			if d.src == outerA {
				d.src = moved
			}
			if d.dst == moved {
				d.dst = outerA
			}
			return true
		})
		p.a.ad.inject(ping(innerA, innerB, "ping"))
		p.run()
		p.b.ad.inject(ping(innerB, innerA, "pong"))
		p.run()
		if got := payloads(p.a.ad.written()); got != "pong" {
			t.Errorf("a got %q, want pong", got)
		}
		if got := p.b.e.Stats()[0].Endpoint; got != moved {
			t.Errorf("endpoint %v, want %v", got, moved)
		}
	})
}

// TestMalformedInput covers M1-M5 at the engine: each bad datagram is
// dropped by reason and changes no state.
func TestMalformedInput(t *testing.T) {
	p := established(t, pairOptions{})
	valid := p.a.sealed(t, ping(innerA, innerB, "x"))
	unknownIndex := append([]byte(nil), valid...)
	unknownIndex[4] ^= 0xff
	reserved := append([]byte(nil), valid...)
	reserved[1] = 1
	for _, tc := range []struct {
		name string
		msg  []byte
		drop DropReason
	}{
		{"M1 under 4 bytes", []byte{4, 0}, DropShort},
		{"M1 data under 32 bytes", valid[:31], DropShort},
		{"M2 initiation of wrong size", make148(147, 1), DropUnknownType},
		{"M3 reserved bytes", reserved, DropUnknownType},
		{"M4 type 0", make148(148, 0), DropUnknownType},
		{"M4 type 5", make148(148, 5), DropUnknownType},
		{"M5 unknown index", unknownIndex, DropUnknownIndex},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := p.b.e.Drops(tc.drop)
			p.net.inject(netip.MustParseAddrPort("127.0.0.2:2"), outerB, tc.msg)
			p.run()
			if got := p.b.e.Drops(tc.drop) - before; got != 1 {
				t.Errorf("%v drops %d, want 1 (%v)", tc.drop, got, p.b.e.DropCounts())
			}
			if got := p.b.e.Stats()[0].Endpoint; got != outerA {
				t.Errorf("endpoint moved to %v", got)
			}
		})
	}
	// The valid packet still passes: nothing above moved the window.
	p.net.inject(outerA, outerB, valid)
	p.run()
	if got := payloads(p.b.ad.written()); got != "x" {
		t.Errorf("valid packet after the bad ones: %q, want x", got)
	}
}

func make148(n int, typ byte) []byte {
	b := make([]byte, n)
	b[0] = typ
	return b
}

// TestRoamingAcrossKeypairs: within one batch the endpoint follows the
// latest authenticated packet even when an earlier packet of the batch
// used a newer keypair of the same peer.
func TestRoamingAcrossKeypairs(t *testing.T) {
	p := established(t, pairOptions{})
	old := p.a.sealed(t, ping(innerA, innerB, "old"))
	p.clock.advance(RekeyAfterTime)
	p.a.ad.inject(ping(innerA, innerB, "rekey"))
	p.run()
	if _, prev, _ := p.a.keypairs(); prev == nil {
		t.Fatal("no rotation")
	}
	newer := p.a.sealed(t, ping(innerA, innerB, "new"))
	first, second := netip.MustParseAddrPort("198.18.3.1:1"), netip.MustParseAddrPort("198.18.3.2:2")
	p.net.inject(first, outerB, newer)
	p.net.inject(second, outerB, old)
	p.b.step()
	if got := p.b.e.Stats()[0].Endpoint; got != second {
		t.Errorf("endpoint %v, want %v (the latest packet's source)", got, second)
	}
}
