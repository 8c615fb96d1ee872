package tunnel

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/uapi"
)

// uapiRequest sends req to a uapi.Server over e and returns the reply.
func uapiRequest(t testing.TB, e *Engine, req string) string {
	t.Helper()
	var out bytes.Buffer
	rw := struct {
		io.Reader
		io.Writer
	}{strings.NewReader(req), &out}
	if err := uapi.NewServer(e, nil).ServeConn(rw); err != nil {
		t.Fatalf("ServeConn: %v", err)
	}
	return out.String()
}

// TestUAPIGet checks what `wg show` sees after a handshake: keys, port,
// endpoint, allowed IPs in order, handshake time and byte counters as wg
// counts them (N1's arithmetic: 148-byte initiation, 92-byte response,
// data at 32 bytes of overhead after padding).
func TestUAPIGet(t *testing.T) {
	p := established(t, pairOptions{keepalive: 25 * time.Second})
	got := uapiRequest(t, p.a.e, "get=1\n\n")
	// a sent: initiation 148, the persistent keepalive staged at Up (32)
	// and "hello" (IPv4+UDP 33 bytes, padded to 48) as 80; received:
	// response 92, "hello" 80.
	want := fmt.Sprintf("private_key=%s\nlisten_port=%d\npublic_key=%s\npreshared_key=%s\n"+
		"protocol_version=1\nendpoint=%s\nlast_handshake_time_sec=%d\nlast_handshake_time_nsec=%d\n"+
		"tx_bytes=%d\nrx_bytes=%d\npersistent_keepalive_interval=25\n"+
		"allowed_ip=%s/32\nallowed_ip=%s/128\nerrno=0\n\n",
		p.a.key.Hex(), outerA.Port(), p.b.pub.Hex(), strings.Repeat("0", 64), outerB,
		p.a.e.Stats()[0].LastHandshake.Unix(), p.a.e.Stats()[0].LastHandshake.Nanosecond(),
		148+32+80, 92+80, innerB, inner6B)
	if d := cmp.Diff(got, want); d != "" {
		t.Errorf("get (-got +want):\n%s", d)
	}

	// A drop shows in get=warren only, after the device's lines.
	p.a.ad.inject(ping(innerA, netip.MustParseAddr("198.19.9.9"), "nowhere"))
	p.run()
	if got := uapiRequest(t, p.a.e, "get=1\n\n"); got != want {
		t.Errorf("get=1 after a drop (-got +want):\n%s", cmp.Diff(got, want))
	}
	device := fmt.Sprintf("private_key=%s\nlisten_port=%d\n", p.a.key.Hex(), outerA.Port())
	// The peer wrote to a's own address: its section names it (RO5).
	wantWarren := device + "warren_drop_no_route=1\n" + strings.Replace(strings.TrimPrefix(want, device),
		"errno=0\n", "warren_local="+outerA.Addr().String()+"\nerrno=0\n", 1)
	if d := cmp.Diff(uapiRequest(t, p.a.e, "get=warren\n\n"), wantWarren); d != "" {
		t.Errorf("get=warren (-got +want):\n%s", d)
	}
}

// prefixes lets cmp compare netip.Prefix values.
var prefixes = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

// TestUAPIApply covers C6/C7 semantics through Engine.Apply and the
// all-or-nothing rule: a refused listen port changes nothing.
func TestUAPIApply(t *testing.T) {
	p := established(t, pairOptions{})
	e := p.a.e
	other, _ := crypto.NewPrivateKey(seededRand(20))
	pfx := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }
	ka := uint16(5)
	ep := netip.MustParseAddrPort("198.18.5.5:5")
	err := e.Apply(&uapi.Change{Peers: []uapi.PeerChange{
		{PublicKey: other.PublicKey(), Endpoint: &ep, PersistentKeepalive: &ka,
			AllowedIPs: []uapi.AllowedIPChange{{Prefix: pfx("198.19.5.0/24")}, {Prefix: pfx("198.19.6.0/24")}}},
		{PublicKey: p.b.pub, AllowedIPs: []uapi.AllowedIPChange{{Prefix: netip.PrefixFrom(innerB, 32), Remove: true}}},
		{PublicKey: p.a.pub, AllowedIPs: []uapi.AllowedIPChange{{Prefix: pfx("198.19.7.0/24")}}}, // our own key: ignored
	}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.Config()
	if len(cfg.Peers) != 2 {
		t.Fatalf("%d peers, want 2", len(cfg.Peers))
	}
	if d := cmp.Diff(cfg.Peers[0].AllowedIPs, []netip.Prefix{netip.PrefixFrom(inner6B, 128)}, prefixes); d != "" {
		t.Errorf("b's allowed IPs (-got +want):\n%s", d)
	}
	if d := cmp.Diff(cfg.Peers[1].AllowedIPs, []netip.Prefix{pfx("198.19.5.0/24"), pfx("198.19.6.0/24")}, prefixes); d != "" {
		t.Errorf("new peer's allowed IPs (-got +want):\n%s", d)
	}
	if cfg.Peers[1].PersistentKeepalive != 5*time.Second || cfg.Peers[1].Endpoint != ep {
		t.Errorf("new peer %+v", cfg.Peers[1])
	}

	// Refused rebind: the private key in the same request is not applied.
	port := uint16(1)
	newKey, _ := crypto.NewPrivateKey(seededRand(21))
	err = e.Apply(&uapi.Change{PrivateKey: &newKey, ListenPort: &port})
	var ue *uapi.Error
	if !errors.As(err, &ue) || ue.Errno != uapi.ErrnoPortInUse {
		t.Fatalf("Apply(listen_port) = %v, want ErrnoPortInUse", err)
	}
	if !e.Config().PrivateKey.Equal(p.a.key) {
		t.Error("private key changed by a refused request")
	}

	// C6: our new private key equals a peer's public key → that peer goes.
	err = e.Apply(&uapi.Change{PrivateKey: &other, Peers: []uapi.PeerChange{{PublicKey: p.b.pub, UpdateOnly: true, ReplaceAllowedIPs: true}}})
	if err != nil {
		t.Fatal(err)
	}
	cfg = e.Config()
	if len(cfg.Peers) != 1 || cfg.Peers[0].PublicKey != p.b.pub || len(cfg.Peers[0].AllowedIPs) != 0 {
		t.Errorf("after key change: %+v", cfg.Peers)
	}
	if cur, _, _ := p.a.keypairs(); cur != nil {
		t.Error("session survived a private key change")
	}

	// replace_peers and remove.
	if err := e.Apply(&uapi.Change{ReplacePeers: true}); err != nil {
		t.Fatal(err)
	}
	if n := len(e.Config().Peers); n != 0 {
		t.Errorf("%d peers after replace_peers", n)
	}
}

// TestUAPIRebind checks that a listen port change with Options.Rebind moves
// the engine to the new transport.
func TestUAPIRebind(t *testing.T) {
	p := established(t, pairOptions{})
	moved := netip.MustParseAddrPort("198.18.0.1:4000")
	newTr := p.net.transport(moved)
	p.a.e.rebind = func(port uint16, mark uint32) (Transport, error) {
		if port != moved.Port() {
			return nil, fmt.Errorf("port %d", port)
		}
		return newTr, nil
	}
	port := moved.Port()
	if err := p.a.e.Apply(&uapi.Change{ListenPort: &port}); err != nil {
		t.Fatal(err)
	}
	if !p.a.tr.closed {
		t.Error("old transport not closed")
	}
	p.a.tr = newTr
	p.a.ad.inject(ping(innerA, innerB, "from new port"))
	p.run()
	if got := p.b.e.Stats()[0].Endpoint; got != moved {
		t.Errorf("b sees endpoint %v, want %v", got, moved)
	}
	if got := payloads(p.b.ad.written()); got != "from new port" {
		t.Errorf("b got %q", got)
	}
}

// TestTransferCounters is N1's arithmetic in memory: 10 pings of 84 bytes
// from b and their replies → b counts tx 1428 (148 + 10 × 128) and rx 1372
// (92 + 10 × 128), a the mirror image.
func TestTransferCounters(t *testing.T) {
	p := newPair(t, pairOptions{})
	for i := range 10 {
		p.b.ad.inject(ping(innerB, innerA, fmt.Sprintf("%056d", i))) // 84 bytes
		p.run()
		for _, req := range p.a.ad.written() {
			if len(req) != 84 {
				t.Fatalf("request of %d bytes", len(req))
			}
			p.a.ad.inject(ping(innerA, innerB, payloadOf(req)))
		}
		p.run()
	}
	if got := len(p.b.ad.written()); got != 10 {
		t.Fatalf("%d replies, want 10", got)
	}
	sb, sa := p.b.e.Stats()[0], p.a.e.Stats()[0]
	if sb.TxBytes != 1428 || sb.RxBytes != 1372 {
		t.Errorf("b: tx %d rx %d, want 1428 and 1372", sb.TxBytes, sb.RxBytes)
	}
	if sa.TxBytes != 1372 || sa.RxBytes != 1428 {
		t.Errorf("a: tx %d rx %d, want 1372 and 1428", sa.TxBytes, sa.RxBytes)
	}
}

// socketDropTransport reports drops the kernel made at its socket, as
// transport.UDP does.
type socketDropTransport struct {
	*stepTransport
	drops uint64
}

func (t *socketDropTransport) SocketDrops() (uint64, error) { return t.drops, nil }

// TestUAPISocketDrops: what the kernel dropped at the socket before the
// engine read it (the socket filter's refusals, receive-buffer overflows)
// shows in get=warren and in DropCounts (the metrics) as the drop reason
// "socket", and not at all while it is 0.
func TestUAPISocketDrops(t *testing.T) {
	p := newPair(t, pairOptions{})
	tr := &socketDropTransport{stepTransport: p.a.tr}
	p.a.e.tr.Store(newTransportBox(tr))
	st, err := p.a.e.State()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Drops) != 0 {
		t.Errorf("drops %v with none at the socket, want none", st.Drops)
	}
	tr.drops = 7
	if st, _ = p.a.e.State(); !slices.Contains(st.Drops, uapi.Drop{Reason: "socket", Count: 7}) {
		t.Errorf("drops %v, want socket: 7", st.Drops)
	}
	// The metrics read DropCounts.
	if got := p.a.e.DropCounts()["socket"]; got != 7 {
		t.Errorf("DropCounts()[socket] = %d, want 7", got)
	}
}
