package main

import (
	"bufio"
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/uapi"
	"github.com/warrenvpn/warren/uapi/uapitest"
)

// showFixture returns a tunnel state with two peers, one of them with
// every field set.
func showFixture(t testing.TB) *uapi.State {
	t.Helper()
	priv, err := crypto.ParsePrivateKeyHex(uapitest.KeyA)
	if err != nil {
		t.Fatal(err)
	}
	pubB, _ := crypto.ParsePublicKeyHex(uapitest.KeyB)
	pubC, _ := crypto.ParsePublicKeyHex(uapitest.KeyC)
	return &uapi.State{PrivateKey: priv, ListenPort: 51820, FwMark: 0xca6c, Peers: []uapi.PeerState{
		{PublicKey: pubB, PresharedKey: crypto.PresharedKey{1}, Endpoint: netip.MustParseAddrPort("198.18.0.2:51821"),
			LastHandshake: time.Date(2026, 12, 2, 13, 0, 0, 0, time.UTC), TxBytes: 1460, RxBytes: 1372, PersistentKeepalive: 25,
			AllowedIPs: []netip.Prefix{netip.MustParsePrefix("198.19.0.2/32"), netip.MustParsePrefix("fd00:7761:1::2/128")}},
		{PublicKey: pubC},
	}}
}

func TestPrintShow(t *testing.T) {
	st := showFixture(t)
	priv, _ := crypto.ParsePrivateKeyHex(uapitest.KeyA)
	pubB, _ := crypto.ParsePublicKeyHex(uapitest.KeyB)
	pubC, _ := crypto.ParsePublicKeyHex(uapitest.KeyC)
	head := "interface: wg0\n  public key: " + priv.PublicKey().String() + "\n  private key: (hidden)\n" +
		"  listening port: 51820\n  fwmark: 0xca6c\n"
	peers := "\npeer: " + pubB.String() + "\n  preshared key: (hidden)\n  endpoint: 198.18.0.2:51821\n" +
		"  allowed ips: 198.19.0.2/32, fd00:7761:1::2/128\n  latest handshake: 1m30s ago\n" +
		"  transfer: 1372 B received, 1460 B sent\n  persistent keepalive: every 25 seconds\n" +
		"\npeer: " + pubC.String() + "\n  allowed ips: (none)\n  transfer: 0 B received, 0 B sent\n"
	tests := []struct {
		name   string
		drops  []uapi.Drop
		warren bool
		want   string
	}{
		{"drops by reason", []uapi.Drop{{Reason: "no_route", Count: 3}, {Reason: "send_error", Count: 2}}, true,
			head + "  dropped packets: 5\n    no_route: 3\n    send_error: 2\n" + peers},
		{"no drops", nil, true, head + "  dropped packets: 0\n" + peers},
		{"not warren", nil, false, head + "  dropped packets: (not reported by this daemon)\n" + peers},
	}
	now := st.Peers[0].LastHandshake.Add(90*time.Second + 400*time.Millisecond)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := *st
			s.Drops = tc.drops
			var b strings.Builder
			printShow(&b, shownTunnel{name: "wg0", state: &s, drops: tc.warren}, now)
			if diff := cmp.Diff(b.String(), tc.want); diff != "" {
				t.Errorf("printShow (-got +want):\n%s", diff)
			}
		})
	}
}

func TestPrintShowJSON(t *testing.T) {
	st := showFixture(t)
	st.Drops = []uapi.Drop{{Reason: "no_route", Count: 3}, {Reason: "send_error", Count: 2}}
	priv, _ := crypto.ParsePrivateKeyHex(uapitest.KeyA)
	pubB, _ := crypto.ParsePublicKeyHex(uapitest.KeyB)
	pubC, _ := crypto.ParsePublicKeyHex(uapitest.KeyC)
	var b bytes.Buffer
	err := printShowJSON(&b, []shownTunnel{
		{name: "wg0", state: st, drops: true},
		{name: "wg1", state: &uapi.State{}, drops: false},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "interfaces": [
    {
      "name": "wg0",
      "public_key": "` + priv.PublicKey().String() + `",
      "listen_port": 51820,
      "fwmark": 51820,
      "peers": [
        {
          "public_key": "` + pubB.String() + `",
          "preshared_key": true,
          "endpoint": "198.18.0.2:51821",
          "allowed_ips": [
            "198.19.0.2/32",
            "fd00:7761:1::2/128"
          ],
          "latest_handshake": "2026-12-02T13:00:00Z",
          "rx_bytes": 1372,
          "tx_bytes": 1460,
          "persistent_keepalive": 25
        },
        {
          "public_key": "` + pubC.String() + `",
          "preshared_key": false,
          "endpoint": "",
          "allowed_ips": [],
          "latest_handshake": null,
          "rx_bytes": 0,
          "tx_bytes": 0,
          "persistent_keepalive": 0
        }
      ],
      "drops": {
        "no_route": 3,
        "send_error": 2
      }
    },
    {
      "name": "wg1",
      "public_key": "",
      "listen_port": 0,
      "fwmark": 0,
      "peers": [],
      "drops": null
    }
  ]
}
`
	if diff := cmp.Diff(b.String(), want); diff != "" {
		t.Errorf("printShowJSON (-got +want):\n%s", diff)
	}
}

// TestGetShown reads a state over the control protocol from a warren
// daemon (drops included) and from one that closes the connection on
// get=warren as wireguard-go does (asked again with get=1).
func TestGetShown(t *testing.T) {
	dev := &uapitest.Device{}
	pubB, _ := crypto.ParsePublicKeyHex(uapitest.KeyB)
	port := uint16(51820)
	if err := dev.Apply(&uapi.Change{ListenPort: &port, Peers: []uapi.PeerChange{{PublicKey: pubB}}}); err != nil {
		t.Fatal(err)
	}
	dev.SetDrops(uapi.Drop{Reason: "no_route", Count: 7})
	serve := func() (net.Conn, error) {
		cli, srv := net.Pipe()
		go func() {
			uapi.NewServer(dev, nil).ServeConn(srv)
			srv.Close()
		}()
		return cli, nil
	}
	refuseFirst := func() func() (net.Conn, error) {
		calls := 0
		return func() (net.Conn, error) {
			if calls++; calls > 1 {
				return serve()
			}
			cli, srv := net.Pipe()
			go func() {
				bufio.NewReader(srv).ReadString('\n')
				srv.Close()
			}()
			return cli, nil
		}
	}
	tests := []struct {
		name      string
		dial      func() (net.Conn, error)
		wantDrops []uapi.Drop
		warren    bool
	}{
		{"warren", serve, []uapi.Drop{{Reason: "no_route", Count: 7}}, true},
		{"wireguard-go", refuseFirst(), nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := getShown("wg0", tc.dial)
			if err != nil {
				t.Fatalf("getShown = %v", err)
			}
			if got.drops != tc.warren || got.state.ListenPort != port || len(got.state.Peers) != 1 {
				t.Errorf("getShown = %+v, %+v; want drops reported %v, port %d, one peer", got, got.state, tc.warren, port)
			}
			if diff := cmp.Diff(got.state.Drops, tc.wantDrops); diff != "" {
				t.Errorf("drops (-got +want):\n%s", diff)
			}
		})
	}
}
