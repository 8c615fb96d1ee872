package uapi_test

import (
	"net"
	"strings"
	"testing"

	"github.com/warrenvpn/warren/crypto"
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
		// The own public key is all zeros until a private key is set, then
		// that of the key, even the zero key.
		uapitest.Session{Name: "zero public key without private key", Requests: []string{"set=1\npublic_key=" + hexZ + "\n\n", "get=1\n\n"}},
		uapitest.Session{Name: "own key after clearing the private key", Requests: []string{
			"set=1\nprivate_key=" + hexA + "\n\n", "set=1\nprivate_key=" + hexZ + "\npublic_key=" + hexZ +
				"\npublic_key=" + crypto.PrivateKey{}.PublicKey().Hex() + "\n\n", "get=1\n\n"}},
		// Lines before remove=true and replace_allowed_ips=true had their
		// effect on other peers' allowed IPs.
		uapitest.Session{Name: "allowed ip taken before remove", Requests: []string{
			"set=1\npublic_key=" + hexB + "\nallowed_ip=198.18.0.0/24\npublic_key=" + hexC + "\nallowed_ip=198.18.0.0/24\nremove=true\n\n", "get=1\n\n"}},
		uapitest.Session{Name: "allowed ip taken before replace", Requests: []string{
			"set=1\npublic_key=" + hexB + "\nallowed_ip=198.18.0.0/24\npublic_key=" + hexC + "\nallowed_ip=198.18.0.0/24\nreplace_allowed_ips=true\nallowed_ip=::/0\n\n", "get=1\n\n"}},
	)
	uapitest.CompareWithWireGuardGo(t, sessions, func(*testing.T) uapi.Device { return &uapitest.Device{} })
}

// FuzzWireGuardGoCompat sends a set request with an arbitrary body and then
// a get to wireguard-go and to a Server with the reference device. The
// status of the set must be wireguard-go's (C1), and after a successful set
// so must be the state, unless a peer entry uses remove or update_only: there
// wireguard-go first applies the entry's earlier allowed_ip lines (taking
// those prefixes from other peers) and then drops the peer, where warren
// applies nothing of the entry.
func FuzzWireGuardGoCompat(f *testing.F) {
	f.Add("private_key=" + hexA + "\nlisten_port=1\nfwmark=2\nreplace_peers=true\npublic_key=" + hexB +
		"\nallowed_ip=-198.18.0.0/24\nendpoint=[::1]:1\npersistent_keepalive_interval=3\nprotocol_version=1\nremove=true\n")
	f.Add("public_key=" + hexC + "\nupdate_only=true\nreplace_allowed_ips=true\npreshared_key=" + hexZ + "\n")
	f.Add("public_key=" + hexB + "\nallowed_ip=198.18.0.0/15\nallowed_ip=198.18.0.0/24\npublic_key=" + hexC +
		"\nallowed_ip=198.18.0.7/24\nreplace_allowed_ips=true\nallowed_ip=::/0\npublic_key=" + hexB + "\nallowed_ip=-198.18.0.0/15\n")
	f.Add("fwmark\n")
	f.Add("listen_port=65536\n")
	f.Add("public_key=" + hexB + "\nallowed_ip=1.2.3.4/33\n")
	f.Fuzz(func(t *testing.T, body string) {
		// Keep it one request: no blank line inside (a lone CR is one too).
		body = strings.ReplaceAll(body, "\r", "")
		for strings.Contains(body, "\n\n") {
			body = strings.ReplaceAll(body, "\n\n", "\n")
		}
		body = strings.TrimSuffix(strings.TrimPrefix(body, "\n"), "\n")
		set := "set=1\n"
		if body != "" {
			set += body + "\n"
		}
		reqs := []string{set + "\n", "get=1\n\n"}
		want := uapitest.Normalize(uapitest.Talk(t, uapitest.WireGuardGo(t).IpcHandle, reqs))
		srv := uapi.NewServer(&uapitest.Device{}, nil)
		got := uapitest.Normalize(uapitest.Talk(t, func(c net.Conn) {
			srv.ServeConn(c)
			c.Close()
		}, reqs))
		first := func(s string) string { return s[:strings.Index(s+"\n\n", "\n\n")] }
		if first(got) != first(want) {
			t.Fatalf("set body %q: status %q, wireguard-go %q", body, first(got), first(want))
		}
		if first(got) != "errno=0" {
			return // wireguard-go ends the session on the rest of a failed request
		}
		c, err := uapi.ParseSet(strings.NewReader(body))
		if err != nil {
			t.Fatalf("ParseSet(%q) failed after the server accepted it: %v", body, err)
		}
		for _, p := range c.Peers {
			if p.Remove || p.UpdateOnly {
				return
			}
		}
		if got != want {
			t.Errorf("set body %q: replies differ from wireguard-go's:\n got %q\nwant %q", body, got, want)
		}
	})
}
