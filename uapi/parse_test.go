package uapi

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/warrenvpn/warren/crypto"
)

const (
	hexA = "58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceae4f2e0fa70" // a private key, clamped form
	hexB = "662e14fd594556f522604703340351258903b64f35553763f19426ab2a515c58"
	hexC = "e818b58db5274087fcc1be5dc728cf53d3b5726b4cef6b9bab8f8f8c2452c25c"
	hexZ = "0000000000000000000000000000000000000000000000000000000000000000"
)

func mustKey(t testing.TB, s string) [32]byte {
	t.Helper()
	k, err := parseKey(s)
	if err != nil {
		t.Fatalf("parseKey(%q): %v", s, err)
	}
	return k
}

func ptr[T any](v T) *T { return &v }

// cmpOpts compares netip values, whose fields are unexported.
var cmpOpts = cmp.Options{
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
}

func TestParseSet(t *testing.T) {
	pubB := crypto.PublicKey(mustKey(t, hexB))
	pubC := crypto.PublicKey(mustKey(t, hexC))
	privA, err := crypto.ParsePrivateKeyHex(hexA)
	if err != nil {
		t.Fatal(err)
	}
	pfx := netip.MustParsePrefix
	tests := []struct {
		name  string
		body  string
		want  *Change
		errno int64
	}{
		{name: "empty", body: "\n", want: &Change{}},
		{name: "eof without blank line", body: "fwmark=7", want: &Change{FwMark: ptr[uint32](7)}},
		{
			name: "device keys",
			body: "private_key=" + hexA + "\nlisten_port=51820\nfwmark=0\nreplace_peers=true\n\n",
			want: &Change{PrivateKey: &privA, ListenPort: ptr[uint16](51820), FwMark: ptr[uint32](0), ReplacePeers: true},
		},
		{
			name: "zero private key removes, not clamped",
			body: "private_key=" + hexZ + "\n\n",
			want: &Change{PrivateKey: &crypto.PrivateKey{}},
		},
		{
			name: "uppercase hex accepted as wireguard-go does",
			body: "public_key=" + strings.ToUpper(hexB) + "\n\n",
			want: &Change{Peers: []PeerChange{{PublicKey: pubB}}},
		},
		{
			name: "CRLF line endings as bufio.ScanLines",
			body: "fwmark=3\r\n\r\n",
			want: &Change{FwMark: ptr[uint32](3)},
		},
		{
			name: "full peer",
			body: "public_key=" + hexB + "\npreshared_key=" + hexC + "\nendpoint=[fd00:7761::2]:51820\n" +
				"persistent_keepalive_interval=25\nprotocol_version=1\nreplace_allowed_ips=true\n" +
				"allowed_ip=198.18.0.93/27\nallowed_ip=-fd00:7761::/64\n\n",
			want: &Change{Peers: []PeerChange{{
				PublicKey:           pubB,
				PresharedKey:        ptr(crypto.PresharedKey(mustKey(t, hexC))),
				Endpoint:            ptr(netip.MustParseAddrPort("[fd00:7761::2]:51820")),
				PersistentKeepalive: ptr[uint16](25),
				ReplaceAllowedIPs:   true,
				AllowedIPs: []AllowedIPChange{
					{Prefix: pfx("198.18.0.93/27")},
					{Prefix: pfx("fd00:7761::/64"), Remove: true},
				},
			}}},
		},
		{
			name: "allowed_ip before replace_allowed_ips becomes insert and removal",
			body: "public_key=" + hexB + "\nallowed_ip=198.18.0.1/32\nallowed_ip=-198.18.0.9/32\nreplace_allowed_ips=true\nallowed_ip=198.18.0.2/32\n\n",
			want: &Change{Peers: []PeerChange{{
				PublicKey: pubB, ReplaceAllowedIPs: true,
				AllowedIPs: []AllowedIPChange{
					{Prefix: pfx("198.18.0.1/32")}, {Prefix: pfx("198.18.0.1/32"), Remove: true},
					{Prefix: pfx("198.18.0.2/32")},
				},
			}}},
		},
		{
			name: "remove ends the entry and ignores later lines",
			body: "public_key=" + hexB + "\nremove=true\nallowed_ip=198.18.0.2/32\nupdate_only=true\n" +
				"public_key=" + hexC + "\nupdate_only=true\nallowed_ip=198.18.0.3/32\n\n",
			want: &Change{Peers: []PeerChange{
				{PublicKey: pubB, Remove: true},
				{PublicKey: pubC, UpdateOnly: true, AllowedIPs: []AllowedIPChange{{Prefix: pfx("198.18.0.3/32")}}},
			}},
		},
		{
			name: "lines before remove stay an entry of their own",
			body: "public_key=" + hexB + "\nendpoint=198.18.0.1:1\nallowed_ip=198.18.0.0/24\nremove=true\nremove=true\n\n",
			want: &Change{Peers: []PeerChange{
				{PublicKey: pubB, Endpoint: ptr(netip.MustParseAddrPort("198.18.0.1:1")), AllowedIPs: []AllowedIPChange{{Prefix: pfx("198.18.0.0/24")}}},
				{PublicKey: pubB, Remove: true},
			}},
		},
		{
			name: "same peer twice stays two entries in order",
			body: "public_key=" + hexB + "\nremove=true\npublic_key=" + hexB + "\nallowed_ip=198.18.0.2/32\n\n",
			want: &Change{Peers: []PeerChange{
				{PublicKey: pubB, Remove: true},
				{PublicKey: pubB, AllowedIPs: []AllowedIPChange{{Prefix: pfx("198.18.0.2/32")}}},
			}},
		},
		// RELIABILITY C1: errno of the first bad line.
		{name: "malformed line", body: "fwmark\n\n", errno: ErrnoProtocol},
		{name: "unknown device key", body: "foo=bar\n\n", errno: ErrnoInvalid},
		{name: "empty key", body: "=1\n\n", errno: ErrnoInvalid},
		{name: "peer key in device section", body: "endpoint=1.2.3.4:5\n\n", errno: ErrnoInvalid},
		{name: "device key in peer section", body: "public_key=" + hexB + "\nlisten_port=1\n\n", errno: ErrnoInvalid},
		{name: "unknown peer key", body: "public_key=" + hexB + "\nfoo=1\n\n", errno: ErrnoInvalid},
		{name: "listen_port too big", body: "listen_port=65536\n\n", errno: ErrnoInvalid},
		{name: "listen_port negative", body: "listen_port=-1\n\n", errno: ErrnoInvalid},
		{name: "fwmark too big", body: "fwmark=4294967296\n\n", errno: ErrnoInvalid},
		{name: "short private key", body: "private_key=abcd\n\n", errno: ErrnoInvalid},
		{name: "base64 public key", body: "public_key=ZiWC/VlFVvUiYEcDNANRJYkDtk81VTdj8ZQmqypRXFg=\n\n", errno: ErrnoInvalid},
		{name: "bad preshared key", body: "public_key=" + hexB + "\npreshared_key=zz\n\n", errno: ErrnoInvalid},
		{name: "endpoint without port", body: "public_key=" + hexB + "\nendpoint=198.18.0.1\n\n", errno: ErrnoInvalid},
		{name: "endpoint host name", body: "public_key=" + hexB + "\nendpoint=example.com:1\n\n", errno: ErrnoInvalid},
		{name: "keepalive too big", body: "public_key=" + hexB + "\npersistent_keepalive_interval=65536\n\n", errno: ErrnoInvalid},
		{name: "bad allowed ip", body: "public_key=" + hexB + "\nallowed_ip=198.18.0.1\n\n", errno: ErrnoInvalid},
		{name: "bad removed allowed ip", body: "public_key=" + hexB + "\nallowed_ip=-198.18.0.0/33\n\n", errno: ErrnoInvalid},
		{name: "replace_peers false", body: "replace_peers=false\n\n", errno: ErrnoInvalid},
		{name: "remove=1", body: "public_key=" + hexB + "\nremove=1\n\n", errno: ErrnoInvalid},
		{name: "update_only=false", body: "public_key=" + hexB + "\nupdate_only=false\n\n", errno: ErrnoInvalid},
		{name: "replace_allowed_ips=yes", body: "public_key=" + hexB + "\nreplace_allowed_ips=yes\n\n", errno: ErrnoInvalid},
		// RELIABILITY C7: protocol_version other than 1 is rejected.
		{name: "protocol_version 2", body: "public_key=" + hexB + "\nprotocol_version=2\n\n", errno: ErrnoInvalid},
		{name: "protocol_version 0", body: "public_key=" + hexB + "\nprotocol_version=0\n\n", errno: ErrnoInvalid},
		{name: "bad line after remove still checked", body: "public_key=" + hexB + "\nremove=true\nallowed_ip=x\n\n", errno: ErrnoInvalid},
		{name: "first error wins", body: "fwmark\nfoo=1\n\n", errno: ErrnoProtocol},
		{name: "line too long", body: "fwmark=" + strings.Repeat("1", maxLine) + "\n\n", errno: ErrnoIO},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSet(strings.NewReader(tc.body))
			if tc.errno != 0 {
				var e *Error
				if !errors.As(err, &e) || e.Errno != tc.errno {
					t.Fatalf("ParseSet(%q) = %v, %v; want errno %d", tc.body, got, err, tc.errno)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSet(%q): %v", tc.body, err)
			}
			if diff := cmp.Diff(got, tc.want, cmpOpts); diff != "" {
				t.Errorf("ParseSet(%q) (-got +want):\n%s", tc.body, diff)
			}
		})
	}
}

// FuzzParseSet checks that no request body makes the parser panic, and
// that what it accepts is well formed.
func FuzzParseSet(f *testing.F) {
	f.Add("private_key=" + hexA + "\nlisten_port=51820\nreplace_peers=true\npublic_key=" + hexB +
		"\nallowed_ip=198.18.0.0/24\nallowed_ip=-::/0\nendpoint=[::1]:1\nremove=true\n\n")
	f.Add("public_key=" + hexC + "\nupdate_only=true\nreplace_allowed_ips=true\npersistent_keepalive_interval=25\n")
	f.Add("fwmark\n=\n\n\n")
	f.Fuzz(func(t *testing.T, body string) {
		c, err := ParseSet(strings.NewReader(body))
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Errno >= 0 {
				t.Fatalf("ParseSet error %v is not an *Error with a negative errno", err)
			}
			return
		}
		again, err := ParseSet(bytes.NewReader(AppendChange(nil, c)))
		if err != nil {
			t.Fatalf("ParseSet(AppendChange(%+v)): %v", c, err)
		}
		if diff := cmp.Diff(again, c, cmpOpts); diff != "" {
			t.Fatalf("ParseSet(AppendChange(c)) (-got +want):\n%s", diff)
		}
		for _, p := range c.Peers {
			if p.Remove && (p.UpdateOnly || p.Endpoint != nil || len(p.AllowedIPs) != 0) {
				t.Fatalf("removed peer carries changes: %+v", p)
			}
			for _, a := range p.AllowedIPs {
				if !a.Prefix.IsValid() {
					t.Fatalf("invalid prefix accepted: %+v", a)
				}
			}
		}
	})
}
