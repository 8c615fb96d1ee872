package uapi_test

import (
	"net"
	"strings"
	"testing"

	"github.com/warrenvpn/warren/uapi"
	"github.com/warrenvpn/warren/uapi/uapitest"
)

// TestWireGuardGoCompat runs the conformance sessions, and some on the
// listen port and fwmark, against wireguard-go's own UAPI handler and a
// Server with the reference device, and compares the replies byte for byte
// (RELIABILITY C1, C2, C3, C6, C7).
func TestWireGuardGoCompat(t *testing.T) {
	sessions := append(uapitest.ConformanceSessions(),
		uapitest.Session{Name: "port and mark", Requests: []string{"set=1\nlisten_port=0\nfwmark=51820\n\n", "get=1\n\n",
			"set=1\nfwmark=0\nlisten_port=0\n\n", "get=1\n\n"}},
		uapitest.Session{Name: "zoned endpoint", Requests: []string{"set=1\npublic_key=" + hexB + "\nendpoint=[fe80::1%lo]:1\n\n", "get=1\n\n"}},
		uapitest.Session{Name: "bad fwmark", Requests: []string{"set=1\nfwmark=-1\n\n"}},
	)
	uapitest.CompareWithWireGuardGo(t, sessions, func(*testing.T) uapi.Device { return &uapitest.Device{} })
}

// FuzzWireGuardGoCompat sends a set request with an arbitrary body to
// wireguard-go and to a Server, and compares the first replies: the errno
// of every way a request can be wrong must be wireguard-go's (C1).
func FuzzWireGuardGoCompat(f *testing.F) {
	f.Add("private_key=" + hexA + "\nlisten_port=1\nfwmark=2\nreplace_peers=true\npublic_key=" + hexB +
		"\nallowed_ip=-198.18.0.0/24\nendpoint=[::1]:1\npersistent_keepalive_interval=3\nprotocol_version=1\nremove=true\n")
	f.Add("public_key=" + hexC + "\nupdate_only=true\nreplace_allowed_ips=true\npreshared_key=" + hexZ + "\n")
	f.Add("fwmark\n")
	f.Add("listen_port=65536\n")
	f.Add("public_key=" + hexB + "\nallowed_ip=1.2.3.4/33\n")
	f.Fuzz(func(t *testing.T, body string) {
		req := []string{"set=1\n" + body + "\n\n"}
		first := func(s string) string {
			if i := strings.Index(s, "\n\n"); i >= 0 {
				return s[:i+2]
			}
			return s
		}
		want := first(uapitest.Talk(t, uapitest.WireGuardGo(t).IpcHandle, req))
		srv := uapi.NewServer(&uapitest.Device{}, nil)
		got := first(uapitest.Talk(t, func(c net.Conn) {
			srv.ServeConn(c)
			c.Close()
		}, req))
		if got != want {
			t.Errorf("set body %q: first reply %q, wireguard-go %q", body, got, want)
		}
	})
}
