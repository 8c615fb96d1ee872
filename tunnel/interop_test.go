package tunnel

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	wgdevice "golang.zx2c4.com/wireguard/device"
	wgtuntest "golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/device/tun/tuntest"
	"github.com/warrenvpn/warren/internal/leakcheck"
	"github.com/warrenvpn/warren/transport/transporttest"
)

// netBind is a wireguard-go conn.Bind over a transporttest network, so
// that a reference wireguard-go device and a warren engine talk in memory.
type netBind struct {
	nw   *transporttest.Network
	addr netip.AddrPort

	mu sync.Mutex // guards tr
	tr *transporttest.Transport
}

type netEndpoint netip.AddrPort

func (e netEndpoint) ClearSrc()           {}
func (e netEndpoint) SrcToString() string { return "" }
func (e netEndpoint) DstToString() string { return netip.AddrPort(e).String() }
func (e netEndpoint) DstToBytes() []byte  { b, _ := netip.AddrPort(e).MarshalBinary(); return b }
func (e netEndpoint) DstIP() netip.Addr   { return netip.AddrPort(e).Addr() }
func (e netEndpoint) SrcIP() netip.Addr   { return netip.Addr{} }

func (b *netBind) Open(uint16) ([]conn.ReceiveFunc, uint16, error) {
	tr, err := b.nw.NewTransport(b.addr)
	if err != nil {
		return nil, 0, err
	}
	b.mu.Lock()
	b.tr = tr
	b.mu.Unlock()
	recv := func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		aps := make([]netip.AddrPort, len(packets))
		locals := make([]netip.Addr, len(packets))
		n, err := tr.Receive(packets, sizes, aps, locals)
		for i := range n {
			eps[i] = netEndpoint(aps[i])
		}
		return n, err
	}
	return []conn.ReceiveFunc{recv}, b.addr.Port(), nil
}

func (b *netBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tr != nil {
		b.tr.Close()
		b.tr = nil
	}
	return nil
}

func (b *netBind) SetMark(uint32) error { return nil }
func (b *netBind) BatchSize() int       { return 1 }

func (b *netBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	b.mu.Lock()
	tr := b.tr
	b.mu.Unlock()
	if tr == nil {
		return net.ErrClosed
	}
	_, err := tr.Send(bufs, netip.AddrPort(ep.(netEndpoint)), netip.Addr{})
	return err
}

func (b *netBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	return netEndpoint(ap), err
}

// TestInteropWireGuardGo covers P4 in memory: warren and wireguard-go's
// device exchange IPv4 and IPv6 packets both ways, each side initiating,
// with and without a preshared key; wireguard-go reports a handshake.
func TestInteropWireGuardGo(t *testing.T) {
	leakcheck.Check(t)
	for _, tc := range []struct {
		name       string
		psk        bool
		wgInitiate bool
	}{
		{"warren initiates", false, false},
		{"wireguard-go initiates", false, true},
		{"psk warren initiates", true, false},
		{"psk wireguard-go initiates", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nw := transporttest.NewNetwork(transporttest.Config{})
			warrenKey, _ := crypto.NewPrivateKey(seededRand(30))
			wgKey, _ := crypto.NewPrivateKey(seededRand(31))
			var psk crypto.PresharedKey
			if tc.psk {
				psk, _ = crypto.NewPresharedKey(seededRand(32))
			}

			tr, err := nw.NewTransport(outerA)
			if err != nil {
				t.Fatal(err)
			}
			mem := tuntest.NewMemory(tuntest.MemoryOptions{})
			e := New(mem, tr, Options{TickInterval: 10 * time.Millisecond})
			t.Cleanup(func() { e.Close() })
			if err := e.SetConfig(Config{PrivateKey: warrenKey, Peers: []PeerConfig{{
				PublicKey: wgKey.PublicKey(), PresharedKey: psk, Endpoint: outerB,
				AllowedIPs: []netip.Prefix{netip.PrefixFrom(innerB, 32), netip.PrefixFrom(inner6B, 128)},
			}}}); err != nil {
				t.Fatal(err)
			}
			if err := e.Up(); err != nil {
				t.Fatal(err)
			}

			ctun := wgtuntest.NewChannelTUN()
			wg := wgdevice.NewDevice(ctun.TUN(), &netBind{nw: nw, addr: outerB}, wgdevice.NewLogger(wgdevice.LogLevelSilent, ""))
			t.Cleanup(wg.Close)
			cfg := fmt.Sprintf("private_key=%s\nlisten_port=%d\npublic_key=%s\npreshared_key=%s\nendpoint=%s\nallowed_ip=%s/32\nallowed_ip=%s/128\n",
				wgKey.Hex(), outerB.Port(), warrenKey.PublicKey().Hex(), psk.Hex(), outerA, innerA, inner6A)
			if err := wg.IpcSet(cfg); err != nil {
				t.Fatal(err)
			}
			if err := wg.Up(); err != nil {
				t.Fatal(err)
			}

			toWG := func(pkts ...[]byte) {
				t.Helper()
				if err := mem.Inject(pkts...); err != nil {
					t.Fatal(err)
				}
				for _, want := range pkts {
					select {
					case got := <-ctun.Inbound:
						if string(got) != string(want) {
							t.Fatalf("wireguard-go got %x, want %x", got, want)
						}
					case <-time.After(20 * time.Second):
						t.Fatalf("wireguard-go received nothing (warren drops %v)", e.DropCounts())
					}
				}
			}
			toWarren := func(pkts ...[]byte) {
				t.Helper()
				for _, p := range pkts {
					select {
					case ctun.Outbound <- p:
					case <-time.After(20 * time.Second):
						t.Fatal("wireguard-go does not read")
					}
				}
				got, err := receive(mem, len(pkts))
				if err != nil {
					t.Fatalf("warren: %v (drops %v)", err, e.DropCounts())
				}
				for i := range pkts {
					if string(got[i]) != string(pkts[i]) {
						t.Fatalf("warren got %x, want %x", got[i], pkts[i])
					}
				}
			}
			fromA := [][]byte{ping(innerA, innerB, "a4"), ping(inner6A, inner6B, "a6")}
			fromB := [][]byte{ping(innerB, innerA, "b4"), ping(inner6B, inner6A, "b6")}
			if tc.wgInitiate {
				toWarren(fromB...)
				toWG(fromA...)
			} else {
				toWG(fromA...)
				toWarren(fromB...)
			}
			state, err := wg.IpcGet()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(state, "last_handshake_time_sec=0\n") {
				t.Errorf("wireguard-go reports no handshake:\n%s", state)
			}
			if st := e.Stats()[0]; st.LastHandshake.IsZero() {
				t.Error("warren reports no handshake")
			}
		})
	}
}
