package lifecycle

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/warrenvpn/warren/tunnel"
)

// TestDecideEndpoint: what one answer of a followed name does to its peer.
func TestDecideEndpoint(t *testing.T) {
	named := netip.MustParseAddrPort("198.18.0.2:51820")  // the address the name gave before
	moved := netip.MustParseAddrPort("198.18.0.3:51820")  // the name's new answer
	roamed := netip.MustParseAddrPort("198.18.0.9:40000") // where an authenticated packet came from
	v6 := netip.MustParseAddrPort("[fd00:7761::3]:51820")
	fresh := tunnel.EndpointInfo{Session: true, SessionAge: 150 * time.Second}
	stale := tunnel.EndpointInfo{Session: true, SessionAge: tunnel.RejectAfterTime}
	at := func(i tunnel.EndpointInfo, ep netip.AddrPort) tunnel.EndpointInfo { i.Endpoint = ep; return i }
	for _, tc := range []struct {
		name     string
		eps      []netip.AddrPort
		err      error
		info     tunnel.EndpointInfo
		want     verdict
		wantAddr netip.AddrPort
	}{
		{"failure keeps", nil, errors.New("timeout"), at(stale, named), verdictFailed, netip.AddrPort{}},
		{"empty answer keeps", nil, nil, at(stale, named), verdictFailed, netip.AddrPort{}},
		{"same address", []netip.AddrPort{named}, nil, at(stale, named), verdictSame, named},
		{"endpoint among several", []netip.AddrPort{moved, named}, nil, at(stale, named), verdictSame, named},
		{"new address moves", []netip.AddrPort{moved}, nil, at(stale, named), verdictMove, moved},
		{"new address moves a fresh peer at the named address", []netip.AddrPort{moved}, nil, at(fresh, named), verdictMove, moved},
		{"to IPv6", []netip.AddrPort{v6}, nil, at(stale, named), verdictMove, v6},
		{"no endpoint yet", []netip.AddrPort{moved}, nil, tunnel.EndpointInfo{}, verdictMove, moved},
		{"roamed and fresh is kept", []netip.AddrPort{moved}, nil, at(fresh, roamed), verdictKeptRoam, moved},
		{"roamed but expired moves", []netip.AddrPort{moved}, nil, at(stale, roamed), verdictMove, moved},
		{"roamed to where the name now points", []netip.AddrPort{roamed}, nil, at(fresh, roamed), verdictSame, roamed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &nameEndpoint{applied: named}
			v, addr := n.decide(tc.eps, tc.err, tc.info)
			if v != tc.want || addr != tc.wantAddr {
				t.Errorf("decide(%v, %v, %+v) = %v, %v, want %v, %v", tc.eps, tc.err, tc.info, v, addr, tc.want, tc.wantAddr)
			}
		})
	}
}

// TestNameSchedule: when a followed name is due: when the handshake turns
// older than ReresolveAfter, then after 5 s doubling up to ReresolveMax; a
// move starts again at 5 s, and a fresh handshake resets the backoff.
func TestNameSchedule(t *testing.T) {
	s := schedule{after: 135 * time.Second, max: time.Minute, retries: 15}
	now := time.Unix(1e9, 0)
	n := &nameEndpoint{applied: netip.MustParseAddrPort("198.18.0.2:51820")}
	fresh := tunnel.EndpointInfo{Session: true, SessionAge: 100 * time.Second}
	if got, want := n.due(now, fresh, true, s), now.Add(35*time.Second); !got.Equal(want) {
		t.Errorf("due with a 100 s old handshake = +%v, want +35s", got.Sub(now))
	}
	old := tunnel.EndpointInfo{Session: true, SessionAge: 135 * time.Second}
	if got := n.due(now, old, true, s); got.After(now) {
		t.Errorf("due with a 135 s old handshake = +%v, want now", got.Sub(now))
	}
	var delays []time.Duration
	for range 6 {
		n.settle(verdictSame, n.applied, now, s)
		delays = append(delays, n.due(now, old, true, s).Sub(now))
	}
	n.settle(verdictMove, netip.MustParseAddrPort("198.18.0.3:51820"), now, s)
	delays = append(delays, n.due(now, old, true, s).Sub(now))
	n.settle(verdictFailed, netip.AddrPort{}, now, s)
	delays = append(delays, n.due(now, old, true, s).Sub(now))
	want := []time.Duration{5e9, 10e9, 20e9, 40e9, 60e9, 60e9, 5e9, 10e9}
	for i := range want {
		if i >= len(delays) || delays[i] != want[i] {
			t.Fatalf("delays = %v, want %v", delays, want)
		}
	}
	n.due(now, fresh, true, s)
	n.settle(verdictSame, n.applied, now, s)
	if got := n.due(now, old, true, s).Sub(now); got != 5*time.Second {
		t.Errorf("delay after a fresh handshake = %v, want 5s again", got)
	}
	if got := n.due(now, old, false, s).Sub(now); got != s.max {
		t.Errorf("due of a peer the engine does not have = +%v, want +%v", got, s.max)
	}
}
