package uapi_test

import (
	"bufio"
	"errors"
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

var netipCmp = cmp.Options{
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
}

func TestStateRoundTrip(t *testing.T) {
	priv, _ := crypto.ParsePrivateKeyHex(hexA)
	pubB, _ := crypto.ParsePublicKeyHex(hexB)
	pubC, _ := crypto.ParsePublicKeyHex(hexC)
	psk, _ := crypto.ParsePresharedKeyHex(hexC)
	tests := []struct {
		name string
		s    *uapi.State
	}{
		{"empty", &uapi.State{}},
		{"full", &uapi.State{PrivateKey: priv, ListenPort: 51820, FwMark: 0xca6c, Peers: []uapi.PeerState{
			{PublicKey: pubB, PresharedKey: psk, Endpoint: netip.MustParseAddrPort("[fd00:7761::2%eth0]:1"),
				LastHandshake: time.Unix(1764067200, 999999999), TxBytes: 1 << 40, RxBytes: 3, PersistentKeepalive: 65535,
				AllowedIPs: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("::/0")}},
			{PublicKey: pubC},
		}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			if err := uapi.WriteState(&b, tc.s); err != nil {
				t.Fatal(err)
			}
			b.WriteString("errno=0\n\n")
			got, err := uapi.ReadState(bufio.NewReader(strings.NewReader(b.String())))
			if err != nil {
				t.Fatalf("ReadState(%q): %v", b.String(), err)
			}
			if diff := cmp.Diff(got, tc.s, netipCmp); diff != "" {
				t.Errorf("ReadState(WriteState(s)) (-got +want):\n%s", diff)
			}
		})
	}
	for _, bad := range []string{"", "fwmark=1\n", "errno=-22\n\n", "foo=1\nerrno=0\n\n", "public_key=00\nerrno=0\n\n",
		"public_key=" + hexB + "\nprotocol_version=2\nerrno=0\n\n", "listen_port\nerrno=0\n\n",
		"warren_drop_=1\nerrno=0\n\n", "warren_drop_No=1\nerrno=0\n\n", "warren_drop_a=x\nerrno=0\n\n",
		"public_key=" + hexB + "\nwarren_drop_a=1\nerrno=0\n\n"} {
		if s, err := uapi.ReadState(bufio.NewReader(strings.NewReader(bad))); err == nil {
			t.Errorf("ReadState(%q) = %+v, want an error", bad, s)
		}
	}
}

// TestClient drives a Server through Get and Set on an in-memory pipe.
func TestClient(t *testing.T) {
	dev := &uapitest.Device{BusyPorts: map[uint16]bool{4242: true}}
	cli, srv := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- uapi.NewServer(dev, nil).ServeConn(srv) }()
	defer func() {
		cli.Close()
		<-done
	}()
	pubB, _ := crypto.ParsePublicKeyHex(hexB)
	port := uint16(51820)
	c := &uapi.Change{ListenPort: &port, Peers: []uapi.PeerChange{{PublicKey: pubB,
		AllowedIPs: []uapi.AllowedIPChange{{Prefix: netip.MustParsePrefix("198.18.0.9/24")}}}}}
	if err := uapi.Set(cli, c); err != nil {
		t.Fatalf("Set: %v", err)
	}
	busy := uint16(4242)
	var e *uapi.Error
	if err := uapi.Set(cli, &uapi.Change{ListenPort: &busy}); !errors.As(err, &e) || e.Errno != uapi.ErrnoPortInUse {
		t.Errorf("Set(busy port) = %v, want errno %d", err, uapi.ErrnoPortInUse)
	}
	got, err := uapi.Get(cli)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	want := &uapi.State{ListenPort: 51820, Peers: []uapi.PeerState{{PublicKey: pubB,
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")}}}}
	if diff := cmp.Diff(got, want, netipCmp); diff != "" {
		t.Errorf("Get (-got +want):\n%s", diff)
	}

	dev.SetDrops(uapi.Drop{Reason: "no_route", Count: 2}, uapi.Drop{Reason: "down", Count: 0})
	if got, err := uapi.Get(cli); err != nil || got.Drops != nil {
		t.Errorf("Get with drops = %+v, %v; want no drops", got, err)
	}
	got, err = uapi.GetWarren(cli)
	if err != nil {
		t.Fatalf("GetWarren: %v", err)
	}
	want.Drops = []uapi.Drop{{Reason: "no_route", Count: 2}}
	if diff := cmp.Diff(got, want, netipCmp); diff != "" {
		t.Errorf("GetWarren (-got +want):\n%s", diff)
	}
}

// TestGetWarrenNotWarren checks GetWarren against a daemon that closes the
// connection on an operation it does not know, as wireguard-go does.
func TestGetWarrenNotWarren(t *testing.T) {
	cli, srv := net.Pipe()
	go func() {
		bufio.NewReader(srv).ReadString('\n')
		srv.Close()
	}()
	defer cli.Close()
	if s, err := uapi.GetWarren(cli); !errors.Is(err, uapi.ErrNotWarren) {
		t.Errorf("GetWarren = %+v, %v; want ErrNotWarren", s, err)
	}
}
