package tunnel

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenvpn/warren/crypto"
)

// equateAddrPort compares netip.AddrPort values, whose fields cmp cannot
// see, with ==.
var equateAddrPort = cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })

// TestEndpointInfo: the read API lifecycle's re-resolution of endpoint
// names uses reports the endpoint (configured, then roamed), the last
// handshake and the session's age on the engine's clock, fresh until
// Reject-After-Time.
func TestEndpointInfo(t *testing.T) {
	p := newPair(t, pairOptions{})
	info := func() EndpointInfo {
		t.Helper()
		i, ok := p.a.e.EndpointInfo(p.b.pub)
		if !ok {
			t.Fatal("EndpointInfo of a's peer = false, want true")
		}
		return i
	}
	if diff := cmp.Diff(info(), EndpointInfo{Endpoint: outerB}, equateAddrPort); diff != "" {
		t.Errorf("before any handshake (-got +want):\n%s", diff)
	}
	if info().IsFresh() {
		t.Error("IsFresh without a session = true, want false")
	}

	p.a.ad.inject(ping(innerA, innerB, "hello"))
	p.run()
	wall := p.clock.Wall()
	p.clock.advance(100 * time.Second)
	want := EndpointInfo{Endpoint: outerB, LastHandshake: wall, Session: true, SessionAge: 100 * time.Second}
	if diff := cmp.Diff(info(), want, equateAddrPort); diff != "" {
		t.Errorf("100 s after the handshake (-got +want):\n%s", diff)
	}
	if !info().IsFresh() {
		t.Error("IsFresh 100 s after the handshake = false, want true")
	}

	// b answers from another address: a follows it (RO1).
	moved := netip.MustParseAddrPort("198.18.9.9:9999")
	p.net.inject(moved, outerA, p.b.sealed(t, ping(innerB, innerA, "moved")))
	p.run()
	if got := info().Endpoint; got != moved {
		t.Errorf("Endpoint after an authenticated packet from %v = %v, want it", moved, got)
	}

	p.clock.advance(RejectAfterTime - 100*time.Second)
	if info().IsFresh() {
		t.Errorf("IsFresh at Reject-After-Time = true, want false (%+v)", info())
	}

	if _, ok := p.a.e.EndpointInfo(crypto.PublicKey{1}); ok {
		t.Error("EndpointInfo of an unknown key = true, want false")
	}
}
