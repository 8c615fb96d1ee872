package tunnel

import (
	"net/netip"
	"testing"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/uapi"
)

// TestReplacePeersKeepsSessions: a replace_peers change (`wg setconf`)
// that names a peer again keeps the peer and its session and configures it
// as a new peer (settings not given are reset); peers it does not name, or
// names only with update_only, are removed (L14).
func TestReplacePeersKeepsSessions(t *testing.T) {
	p := established(t, pairOptions{})
	pb := p.a.e.peerByKey(p.b.pub)
	cur, _, _ := pb.keysSnapshot()
	other, _ := crypto.NewPrivateKey(seededRand(9))
	otherEP := netip.MustParseAddrPort("198.18.0.9:9")
	psk := crypto.PresharedKey{1}
	ka := uint16(25)
	ep := outerB
	apply := func(c *uapi.Change) {
		t.Helper()
		if err := p.a.e.Apply(c); err != nil {
			t.Fatal(err)
		}
	}
	ips := func(ps ...string) []uapi.AllowedIPChange {
		var out []uapi.AllowedIPChange
		for _, s := range ps {
			out = append(out, uapi.AllowedIPChange{Prefix: netip.MustParsePrefix(s)})
		}
		return out
	}
	// The peer with a session, as `wg setconf` names it, and a new one
	// with a preshared key and keepalive.
	apply(&uapi.Change{ReplacePeers: true, Peers: []uapi.PeerChange{
		{PublicKey: p.b.pub, Endpoint: &ep, ReplaceAllowedIPs: true, AllowedIPs: ips("198.19.0.2/32", "fd00:7761:1::2/128")},
		{PublicKey: other.PublicKey(), Endpoint: &otherEP, PresharedKey: &psk, PersistentKeepalive: &ka, AllowedIPs: ips("198.19.9.0/24")},
	}})
	if got := p.a.e.peerByKey(p.b.pub); got != pb {
		t.Fatal("the peer was rebuilt")
	}
	if now, _, _ := pb.keysSnapshot(); now != cur {
		t.Fatal("the session was replaced")
	}
	p.net.takeLog()
	p.a.ad.inject(ping(innerA, innerB, "kept"))
	p.run()
	if got := payloads(p.b.ad.written()); got != "kept" {
		t.Errorf("after replace: b got %q", got)
	}
	if log := p.net.takeLog(); countFrom(log, outerA, crypto.MessageInitiation) != 0 {
		t.Errorf("after replace: %q, want no handshake", describe(log))
	}
	// Named again without endpoint, key or keepalive, and without a
	// session: it is as new (wireguard-go's semantics). The peer with the
	// session keeps its endpoint when the change gives none.
	apply(&uapi.Change{ReplacePeers: true, Peers: []uapi.PeerChange{
		{PublicKey: other.PublicKey(), AllowedIPs: ips("198.19.8.0/24")},
		{PublicKey: p.b.pub, AllowedIPs: ips("198.19.0.2/32")},
	}})
	po := p.a.e.peerByKey(other.PublicKey())
	st, err := p.a.e.State()
	if err != nil {
		t.Fatal(err)
	}
	for _, ps := range st.Peers {
		switch ps.PublicKey {
		case other.PublicKey():
			if ps.Endpoint.IsValid() || !ps.PresharedKey.IsZero() || ps.PersistentKeepalive != 0 ||
				len(ps.AllowedIPs) != 1 || ps.AllowedIPs[0] != netip.MustParsePrefix("198.19.8.0/24") {
				t.Errorf("replaced peer without a session: %+v, want no endpoint, key or keepalive and only 198.19.8.0/24", ps)
			}
		case p.b.pub:
			if ps.Endpoint != outerB || ps.LastHandshake.IsZero() || len(ps.AllowedIPs) != 1 {
				t.Errorf("replaced peer with a session: %+v, want its endpoint, handshake and one allowed IP", ps)
			}
		}
	}
	if now, _, _ := pb.keysSnapshot(); now != cur {
		t.Error("the session was replaced on the second change")
	}
	// update_only does not bring a peer back; a removal of a peer the
	// change removed anyway is no error; an unnamed peer goes.
	apply(&uapi.Change{ReplacePeers: true, Peers: []uapi.PeerChange{
		{PublicKey: p.b.pub, UpdateOnly: true, Endpoint: &otherEP},
		{PublicKey: other.PublicKey(), Remove: true},
	}})
	if n := len(p.a.e.peerList()); n != 0 {
		t.Errorf("%d peers left, want 0", n)
	}
	pb.mu.Lock()
	removed, ep2 := pb.removed, pb.endpoint
	pb.mu.Unlock()
	if !removed || ep2 == otherEP {
		t.Errorf("update_only peer: removed %v, endpoint %v", removed, ep2)
	}
	if po == nil || !po.removed {
		t.Error("the unnamed peer is not removed")
	}
}
