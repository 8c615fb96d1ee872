package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"slices"
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
		"  allowed ips: 198.19.0.2/32, fd00:7761:1::2/128\n  latest handshake: 1 minute, 30 seconds ago\n" +
		"  transfer: 1.34 KiB received, 1.43 KiB sent\n  persistent keepalive: every 25 seconds\n" +
		"\npeer: " + pubC.String() + "\n  allowed ips: (none)\n"
	meshExtras := []uapi.Extra{
		{Key: "warren_mesh_network", Value: "lab"}, {Key: "warren_mesh_connected", Value: "1"},
		{Key: "warren_mesh_revision", Value: "42"}, {Key: "warren_mesh_nodes", Value: "3"},
		{Key: "warren_mesh_peers", Value: "1"}, {Key: "warren_mesh_events_total", Value: "17"},
		{Key: "warren_mesh_errors_total", Value: "2"}, {Key: "warren_mesh_last_error", Value: "watch: etcd down"},
		{Key: "warren_other_thing", Value: "x"},
	}
	meshPeers := strings.Replace(peers, "\npeer: "+pubB.String()+"\n", "\npeer: "+pubB.String()+"\n  mesh node: site-b\n", 1)
	tests := []struct {
		name       string
		drops      []uapi.Drop
		extras     []uapi.Extra
		peerExtras []uapi.Extra // of the peer with every field set
		warren     bool
		want       string
	}{
		{"drops by reason", []uapi.Drop{{Reason: "no_route", Count: 3}, {Reason: "send_error", Count: 2}}, nil, nil, true,
			head + "  dropped packets: 5\n    no_route: 3\n    send_error: 2\n" + peers},
		{"no drops", nil, nil, nil, true, head + "  dropped packets: 0\n" + peers},
		{"not warren", nil, nil, nil, false, head + "  dropped packets: (not reported by this daemon)\n" + peers},
		{"mesh", nil, meshExtras, []uapi.Extra{{Key: "warren_mesh_node", Value: "site-b"}}, true,
			head + "  dropped packets: 0\n  mesh: network lab, connected to the store, revision 42\n" +
				"    nodes: 3, peers: 1, events: 17, errors: 2\n    last error: watch: etcd down\n  other thing: x\n" + meshPeers},
		{"mesh disconnected", nil, []uapi.Extra{{Key: "warren_mesh_network", Value: "lab"}, {Key: "warren_mesh_connected", Value: "0"},
			{Key: "warren_mesh_revision", Value: "0"}, {Key: "warren_mesh_nodes", Value: "0"}, {Key: "warren_mesh_peers", Value: "0"},
			{Key: "warren_mesh_events_total", Value: "0"}, {Key: "warren_mesh_errors_total", Value: "0"}}, nil, true,
			head + "  dropped packets: 0\n  mesh: network lab, not connected to the store, revision 0\n" +
				"    nodes: 0, peers: 0, events: 0, errors: 0\n" + peers},
		{"path MTU", nil, nil, []uapi.Extra{{Key: "warren_path_mtu", Value: "1280 1220"}}, true,
			head + "  dropped packets: 0\n" + strings.Replace(peers, "  endpoint: 198.18.0.2:51821\n",
				"  endpoint: 198.18.0.2:51821\n  path MTU: 1280 (1220 inside the tunnel)\n", 1)},
		{"local address and path MTU", nil, nil, []uapi.Extra{{Key: "warren_path_mtu", Value: "1280 1220"}, {Key: "warren_local", Value: "198.18.0.5"}}, true,
			head + "  dropped packets: 0\n" + strings.Replace(peers, "  endpoint: 198.18.0.2:51821\n",
				"  endpoint: 198.18.0.2:51821\n  local address: 198.18.0.5\n  path MTU: 1280 (1220 inside the tunnel)\n", 1)},
	}
	now := st.Peers[0].LastHandshake.Add(90*time.Second + 400*time.Millisecond)
	// wg show lists the latest handshake first, whatever the daemon's order.
	st.Peers[0], st.Peers[1] = st.Peers[1], st.Peers[0]
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := *st
			s.Drops = tc.drops
			s.Extras = tc.extras
			s.Peers = slices.Clone(st.Peers)
			s.Peers[1].Extras = tc.peerExtras
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
	st.Extras = []uapi.Extra{{Key: "warren_mesh_connected", Value: "1"}, {Key: "warren_mesh_revision", Value: "42"}}
	st.Peers[0].Extras = []uapi.Extra{{Key: "warren_mesh_node", Value: "site-b"}, {Key: "warren_path_mtu", Value: "1280 1220"}, {Key: "warren_local", Value: "198.18.0.5"}}
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
          "persistent_keepalive": 25,
          "mesh_node": "site-b",
          "local_address": "198.18.0.5",
          "path_mtu": 1280,
          "inner_mtu": 1220
        },
        {
          "public_key": "` + pubC.String() + `",
          "preshared_key": false,
          "endpoint": "",
          "allowed_ips": [],
          "latest_handshake": null,
          "rx_bytes": 0,
          "tx_bytes": 0,
          "persistent_keepalive": 0,
          "mesh_node": "",
          "local_address": "",
          "path_mtu": 0,
          "inner_mtu": 0
        }
      ],
      "drops": {
        "no_route": 3,
        "send_error": 2
      },
      "extras": {
        "warren_mesh_connected": "1",
        "warren_mesh_revision": "42"
      },
      "macs": null
    },
    {
      "name": "wg1",
      "public_key": "",
      "listen_port": 0,
      "fwmark": 0,
      "peers": [],
      "drops": null,
      "extras": null,
      "macs": null
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

func TestHumanBytes(t *testing.T) {
	tests := []struct {
		b    uint64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.00 KiB"},
		{1372, "1.34 KiB"},
		{1024*1024 - 1, "1024.00 KiB"}, // as wg: %.2f rounds up, the unit does not change
		{17808052, "16.98 MiB"},
		{5 << 30, "5.00 GiB"},
		{3 << 40, "3.00 TiB"},
		{1 << 60, "1048576.00 TiB"},
	}
	for _, tc := range tests {
		if got := humanBytes(tc.b); got != tc.want {
			t.Errorf("humanBytes(%d) = %q, want %q", tc.b, got, tc.want)
		}
	}
}

func TestHumanDuration(t *testing.T) {
	tests := []struct {
		secs uint64
		want string
	}{
		{0, ""},
		{1, "1 second"},
		{25, "25 seconds"},
		{60, "1 minute"},
		{66, "1 minute, 6 seconds"},
		{3600, "1 hour"},
		{2*86400 + 3600 + 2, "2 days, 1 hour, 2 seconds"},
		{365*86400 + 86400 + 120, "1 year, 1 day, 2 minutes"},
		{65535, "18 hours, 12 minutes, 15 seconds"},
	}
	for _, tc := range tests {
		if got := humanDuration(tc.secs); got != tc.want {
			t.Errorf("humanDuration(%d) = %q, want %q", tc.secs, got, tc.want)
		}
	}
}

func TestAgo(t *testing.T) {
	now := time.Date(2026, 12, 2, 13, 0, 0, 900e6, time.UTC)
	tests := []struct {
		t    time.Time
		want string
	}{
		{now.Add(-66 * time.Second), "1 minute, 6 seconds ago"},
		{now.Add(-500 * time.Millisecond), "Now"},             // the same second, as wg compares them
		{now.Add(-time.Second + 200*time.Millisecond), "Now"}, // 13:00:00.1: still the same second
		{now.Add(-901 * time.Millisecond), "1 second ago"},    // 12:59:59.999
		{now.Add(time.Hour), "(System clock wound backward; connection problems may ensue.)"},
	}
	for _, tc := range tests {
		if got := ago(tc.t, now); got != tc.want {
			t.Errorf("ago(%v, %v) = %q, want %q", tc.t, now, got, tc.want)
		}
	}
}

// TestPrintView checks each VIEW of `warren show NAME VIEW` against wg
// show's formats (show.c, ugly_print and dump_print), for one interface
// and, with its name on each line, for all.
func TestPrintView(t *testing.T) {
	st := showFixture(t)
	priv, _ := crypto.ParsePrivateKeyHex(uapitest.KeyA)
	pubB, _ := crypto.ParsePublicKeyHex(uapitest.KeyB)
	pubC, _ := crypto.ParsePublicKeyHex(uapitest.KeyC)
	psk := crypto.PresharedKey{1}
	B, C := pubB.String(), pubC.String()
	hs := fmt.Sprint(st.Peers[0].LastHandshake.Unix())
	tests := []struct {
		view, want, wantAll string
	}{
		{"public-key", priv.PublicKey().String() + "\n", ""},
		{"private-key", priv.String() + "\n", ""},
		{"listen-port", "51820\n", ""},
		{"fwmark", "0xca6c\n", ""},
		{"peers", B + "\n" + C + "\n", ""},
		{"preshared-keys", B + "\t" + psk.String() + "\n" + C + "\t(none)\n", ""},
		{"endpoints", B + "\t198.18.0.2:51821\n" + C + "\t(none)\n",
			// wg names the interface once, not on every line.
			"wg0\t" + B + "\t198.18.0.2:51821\n" + C + "\t(none)\n"},
		{"allowed-ips", B + "\t198.19.0.2/32 fd00:7761:1::2/128\n" + C + "\t(none)\n", ""},
		{"latest-handshakes", B + "\t" + hs + "\n" + C + "\t0\n", ""},
		{"transfer", B + "\t1372\t1460\n" + C + "\t0\t0\n", ""},
		{"persistent-keepalive", B + "\t25\n" + C + "\toff\n", ""},
		{"dump", priv.String() + "\t" + priv.PublicKey().String() + "\t51820\t0xca6c\n" +
			B + "\t" + psk.String() + "\t198.18.0.2:51821\t198.19.0.2/32,fd00:7761:1::2/128\t" + hs + "\t1372\t1460\t25\n" +
			C + "\t(none)\t(none)\t(none)\t0\t0\t0\toff\n", ""},
	}
	if len(tests) != len(showViews) {
		t.Fatalf("%d views tested, %d exist", len(tests), len(showViews))
	}
	for _, tc := range tests {
		t.Run(tc.view, func(t *testing.T) {
			var b strings.Builder
			printView(&b, shownTunnel{name: "wg0", state: st}, tc.view, false)
			if diff := cmp.Diff(b.String(), tc.want); diff != "" {
				t.Errorf("printView(%s) (-got +want):\n%s", tc.view, diff)
			}
			wantAll := tc.wantAll
			if wantAll == "" {
				for line := range strings.Lines(tc.want) {
					wantAll += "wg0\t" + line
				}
			}
			b.Reset()
			printView(&b, shownTunnel{name: "wg0", state: st}, tc.view, true)
			if diff := cmp.Diff(b.String(), wantAll); diff != "" {
				t.Errorf("printView(%s, all) (-got +want):\n%s", tc.view, diff)
			}
		})
	}
	var b strings.Builder
	printView(&b, shownTunnel{name: "wg1", state: &uapi.State{}}, "dump", false)
	if want := "(none)\t(none)\t0\toff\n"; b.String() != want {
		t.Errorf("printView(dump) of an empty device = %q, want %q", b.String(), want)
	}
}
