package tunnel

import (
	"net/netip"
	"testing"
	"time"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/internal/leakcheck"
	"github.com/warrenvpn/warren/transport/transporttest"
	"github.com/warrenvpn/warren/uapi"
)

// TestL15KeyChangeLive (L15): a's private key changes mid-session, which
// ends its sessions at once; once b has a's new public key, a's next packet
// handshakes and gets through without waiting for a retry (5 s), and b's
// reply comes back.
func TestL15KeyChangeLive(t *testing.T) {
	leakcheck.Check(t)
	a, b := newLivePair(t, transporttest.NewNetwork(transporttest.Config{}), nil)
	if err := a.mem.Inject(ping(innerA, innerB, "before")); err != nil {
		t.Fatal(err)
	}
	if got, err := receive(b.mem, 1); err != nil || payloads(got) != "before" {
		t.Fatalf("before the change: %q, %v", payloads(got), err)
	}
	newKey, _ := crypto.NewPrivateKey(seededRand(50))
	if err := a.e.Apply(&uapi.Change{PrivateKey: &newKey}); err != nil {
		t.Fatal(err)
	}
	if cur, prev, next := a.e.peerByKey(b.key.PublicKey()).keysSnapshot(); cur != nil || prev != nil || next != nil {
		t.Fatal("a kept a session under its old key")
	}
	ep := outerA
	if err := b.e.Apply(&uapi.Change{Peers: []uapi.PeerChange{
		{PublicKey: a.key.PublicKey(), Remove: true},
		{PublicKey: newKey.PublicKey(), Endpoint: &ep, AllowedIPs: []uapi.AllowedIPChange{
			{Prefix: netip.PrefixFrom(innerA, 32)}, {Prefix: netip.PrefixFrom(inner6A, 128)}}},
	}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := a.mem.Inject(ping(innerA, innerB, "after")); err != nil {
		t.Fatal(err)
	}
	got, err := receive(b.mem, 1)
	el := time.Since(start)
	if err != nil || payloads(got) != "after" {
		t.Fatalf("after the change: %q, %v (drops %v / %v)", payloads(got), err, a.e.DropCounts(), b.e.DropCounts())
	}
	if el >= RekeyTimeout {
		t.Errorf("the first packet after the change took %v, want less than the 5 s retry", el)
	}
	if err := b.mem.Inject(ping(innerB, innerA, "reply")); err != nil {
		t.Fatal(err)
	}
	if got, err := receive(a.mem, 1); err != nil || payloads(got) != "reply" {
		t.Errorf("reply: %q, %v", payloads(got), err)
	}
	t.Logf("traffic resumed %v after the swap", el.Round(time.Millisecond))
}
