package uapi_test

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/uapi"
	"github.com/warrenvpn/warren/uapi/uapitest"
)

// extrasDevice returns a device with a listen port and peer hexB, and an
// Extras func that adds device and peer lines, some of them invalid.
func extrasDevice(t testing.TB) (*uapitest.Device, func(*uapi.State)) {
	t.Helper()
	dev := &uapitest.Device{}
	if got := exchange(t, dev, "set=1\nlisten_port=51820\npublic_key="+hexB+"\nallowed_ip=198.18.0.0/24\n\n"); got != "errno=0\n\n" {
		t.Fatalf("set: got %q", got)
	}
	extras := func(s *uapi.State) {
		s.Extras = append(s.Extras,
			uapi.Extra{Key: "warren_mesh_connected", Value: "1"},
			uapi.Extra{Key: "warren_mesh_last_error", Value: "dial tcp 198.18.0.1:2379: connection refused"},
			uapi.Extra{Key: "warren_drop_no_route", Value: "9"}, // a drop counter's key: left out
			uapi.Extra{Key: "mesh_revision", Value: "7"},        // not warren_: left out
			uapi.Extra{Key: "warren_bad", Value: "two\nlines"},  // a newline: left out
			uapi.Extra{Key: "warren_Upper", Value: "1"},         // not [a-z0-9_]: left out
		)
		for i := range s.Peers {
			s.Peers[i].Extras = append(s.Peers[i].Extras, uapi.Extra{Key: "warren_mesh_node", Value: "site-b"})
		}
	}
	return dev, extras
}

// TestExtrasFormat checks that a Server's Extras appear in get=warren only,
// device lines after the drops and peer lines at the end of their peer.
func TestExtrasFormat(t *testing.T) {
	dev, extras := extrasDevice(t)
	dev.SetDrops(uapi.Drop{Reason: "no_route", Count: 3})
	plain := exchange(t, dev, "get=1\n\n")
	serve := func(req string) string {
		c := &rw{Reader: strings.NewReader(req)}
		s := uapi.NewServer(dev, nil)
		s.Extras = extras
		s.ServeConn(c)
		return c.Buffer.String()
	}
	if got := serve("get=1\n\n"); got != plain {
		t.Errorf("get=1 with Extras:\n got %q\nwant %q (as without)", got, plain)
	}
	want := "listen_port=51820\nwarren_drop_no_route=3\nwarren_mesh_connected=1\n" +
		"warren_mesh_last_error=dial tcp 198.18.0.1:2379: connection refused\n" +
		"public_key=" + hexB + "\npreshared_key=" + hexZ + "\nprotocol_version=1\n" +
		"last_handshake_time_sec=0\nlast_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\npersistent_keepalive_interval=0\n" +
		"allowed_ip=198.18.0.0/24\nwarren_mesh_node=site-b\nerrno=0\n\n"
	if got := serve("get=warren\n\n"); got != want {
		t.Errorf("get=warren:\n got %q\nwant %q", got, want)
	}
}

// TestExtrasRoundTrip checks that GetWarren reads the extras back and Get
// never sees them.
func TestExtrasRoundTrip(t *testing.T) {
	dev, extras := extrasDevice(t)
	cli, srv := net.Pipe()
	done := make(chan error, 1)
	s := uapi.NewServer(dev, nil)
	s.Extras = extras
	go func() { done <- s.ServeConn(srv) }()
	defer func() {
		cli.Close()
		<-done
	}()
	pubB, _ := crypto.ParsePublicKeyHex(hexB)
	want := &uapi.State{ListenPort: 51820, Peers: []uapi.PeerState{{PublicKey: pubB,
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")}}}}
	got, err := uapi.Get(cli)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if diff := cmp.Diff(got, want, netipCmp); diff != "" {
		t.Errorf("Get (-got +want):\n%s", diff)
	}
	got, err = uapi.GetWarren(cli)
	if err != nil {
		t.Fatalf("GetWarren: %v", err)
	}
	want.Extras = []uapi.Extra{
		{Key: "warren_mesh_connected", Value: "1"},
		{Key: "warren_mesh_last_error", Value: "dial tcp 198.18.0.1:2379: connection refused"},
	}
	want.Peers[0].Extras = []uapi.Extra{{Key: "warren_mesh_node", Value: "site-b"}}
	if diff := cmp.Diff(got, want, netipCmp); diff != "" {
		t.Errorf("GetWarren (-got +want):\n%s", diff)
	}
}
