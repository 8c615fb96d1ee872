package uapi_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/uapi"
	"github.com/warrenvpn/warren/uapi/uapitest"
)

const (
	hexA = "58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceae4f2e0fa70"
	hexB = "662e14fd594556f522604703340351258903b64f35553763f19426ab2a515c58"
	hexC = "e818b58db5274087fcc1be5dc728cf53d3b5726b4cef6b9bab8f8f8c2452c25c"
	hexZ = "0000000000000000000000000000000000000000000000000000000000000000"
)

// rw is a connection that reads a fixed request and collects the replies.
type rw struct {
	*strings.Reader
	bytes.Buffer
}

func (c *rw) Read(p []byte) (int, error)  { return c.Reader.Read(p) }
func (c *rw) Write(p []byte) (int, error) { return c.Buffer.Write(p) }

// exchange sends req to a Server for dev on one connection and returns
// everything it answered before the connection ended.
func exchange(t testing.TB, dev uapi.Device, req string) string {
	t.Helper()
	c := &rw{Reader: strings.NewReader(req)}
	uapi.NewServer(dev, nil).ServeConn(c)
	return c.Buffer.String()
}

func TestGetFormat(t *testing.T) {
	dev := &uapitest.Device{}
	got := exchange(t, dev, "set=1\nprivate_key="+hexA+"\nlisten_port=51820\nfwmark=51820\n"+
		"public_key="+hexB+"\npreshared_key="+hexC+"\nendpoint=[fd00:7761::2%eth0]:51821\n"+
		"persistent_keepalive_interval=25\nallowed_ip=198.18.0.93/27\nallowed_ip=fd00:7761::/32\n"+
		"public_key="+hexC+"\nendpoint=198.18.0.2:1\n\n")
	if got != "errno=0\n\n" {
		t.Fatalf("set: got %q", got)
	}
	pubB, _ := crypto.ParsePublicKeyHex(hexB)
	dev.SetStats(pubB, 1460, 1372, time.Unix(1764067200, 123456789))
	want := "private_key=" + hexA + "\nlisten_port=51820\nfwmark=51820\n" +
		"public_key=" + hexB + "\npreshared_key=" + hexC + "\nprotocol_version=1\nendpoint=[fd00:7761::2%eth0]:51821\n" +
		"last_handshake_time_sec=1764067200\nlast_handshake_time_nsec=123456789\ntx_bytes=1460\nrx_bytes=1372\n" +
		"persistent_keepalive_interval=25\nallowed_ip=198.18.0.64/27\nallowed_ip=fd00:7761::/32\n" +
		"public_key=" + hexC + "\npreshared_key=" + hexZ + "\nprotocol_version=1\nendpoint=198.18.0.2:1\n" +
		"last_handshake_time_sec=0\nlast_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\npersistent_keepalive_interval=0\n" +
		"errno=0\n\n"
	if got := exchange(t, dev, "get=1\n\n"); got != want {
		t.Errorf("get:\n got %q\nwant %q", got, want)
	}

	// Drop counters are warren's: get=1 stays as it was, get=warren adds
	// the non-zero ones to the device section.
	dev.SetDrops(uapi.Drop{Reason: "no_route", Count: 3}, uapi.Drop{Reason: "replay", Count: 0},
		uapi.Drop{Reason: "send_error", Count: 1 << 40}, uapi.Drop{Reason: "bad\nreason", Count: 1})
	if got := exchange(t, dev, "get=1\n\n"); got != want {
		t.Errorf("get=1 with drops:\n got %q\nwant %q", got, want)
	}
	head := "private_key=" + hexA + "\nlisten_port=51820\nfwmark=51820\n"
	wantWarren := head + "warren_drop_no_route=3\nwarren_drop_send_error=1099511627776\n" + strings.TrimPrefix(want, head)
	if got := exchange(t, dev, "get=warren\n\n"); got != wantWarren {
		t.Errorf("get=warren:\n got %q\nwant %q", got, wantWarren)
	}
}

// TestErrno is RELIABILITY C1: the status of each kind of request, and what
// happens to the rest of the connection.
func TestErrno(t *testing.T) {
	tests := []struct {
		name string
		dev  *uapitest.Device
		req  string
		want string
	}{
		{"get empty", nil, "get=1\n\n", "errno=0\n\n"},
		{"set empty", nil, "set=1\n\n", "errno=0\n\n"},
		{"unknown key", nil, "set=1\nfoo=1\n\n", "errno=-22\n\n"},
		{"malformed line", nil, "set=1\nfoo\n\n", "errno=-71\n\n"},
		{"port in use", &uapitest.Device{BusyPorts: map[uint16]bool{51820: true}}, "set=1\nlisten_port=51820\n\n", "errno=-98\n\n"},
		{"other apply error", &uapitest.Device{ApplyErr: errors.New("boom")}, "set=1\n\n", "errno=-55\n\n"},
		{"typed apply error", &uapitest.Device{ApplyErr: uapi.Errorf(uapi.ErrnoInvalid, "no")}, "set=1\n\n", "errno=-22\n\n"},
		{"apply errno -5 keeps the session", &uapitest.Device{ApplyErr: uapi.Errorf(uapi.ErrnoIO, "closed")}, "set=1\n\nget=1\n\n", "errno=-5\n\nerrno=0\n\n"},
		{"get then garbage", nil, "get=1\nx", "errno=-22\n\n"},
		{"get then a line", nil, "get=1\nfoo\n", "errno=-22\n\n"},
		{"unknown operation", nil, "foo=1\n\n", ""},
		{"get=2", nil, "get=2\n\n", ""},
		{"get warren empty", nil, "get=warren\n\n", "errno=0\n\n"},
		{"get warren then garbage", nil, "get=warren\nx", "errno=-22\n\n"},
		{"get=warren2", nil, "get=warren2\n\n", ""},
		{"CRLF operation", nil, "get=1\r\n\r\n", ""},
		{"operation without newline", nil, "get=1", ""},
		{"get without blank line", nil, "get=1\n", ""},
		{"several requests", nil, "set=1\nfwmark=1\n\nget=1\n\nget=1\n\n", "errno=0\n\nfwmark=1\nerrno=0\n\nfwmark=1\nerrno=0\n\n"},
		{"unknown operation ends the session", nil, "get=1\n\nfoo\nget=1\n\n", "errno=0\n\n"},
		{"set at end of input is applied", nil, "set=1\nfwmark=2\n", "errno=0\n\n"},
		{"failed set changes nothing, session goes on", nil, "set=1\nfwmark=2\nfoo=1\n\nget=1\n\n", "errno=-22\n\nerrno=0\n\n"},
		{"too long a line ends the session", nil, "set=1\nfwmark=" + strings.Repeat("1", 70000) + "\n\nget=1\n\n", "errno=-5\n\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dev := tc.dev
			if dev == nil {
				dev = &uapitest.Device{}
			}
			if got := exchange(t, dev, tc.req); got != tc.want {
				t.Errorf("reply to %.60q = %q, want %q", tc.req, got, tc.want)
			}
		})
	}
}

// TestAllOrNothing: a bad line anywhere in a set request leaves the device
// untouched (wireguard-go would have applied the lines before it).
func TestAllOrNothing(t *testing.T) {
	dev := &uapitest.Device{}
	req := "set=1\nprivate_key=" + hexA + "\nreplace_peers=true\npublic_key=" + hexB + "\nallowed_ip=198.18.0.0/24\n" +
		"public_key=" + hexC + "\nprotocol_version=2\n\n"
	if got := exchange(t, dev, req); got != "errno=-22\n\n" {
		t.Fatalf("reply %q, want errno=-22", got)
	}
	if got := exchange(t, dev, "get=1\n\n"); got != "errno=0\n\n" || dev.Applied != 0 {
		t.Errorf("after failed set: get = %q, %d applied; want an empty device", got, dev.Applied)
	}
}

// countAllowed returns the number of allowed_ip lines of each peer, in order.
func countAllowed(get string) []int {
	var counts []int
	for line := range strings.Lines(get) {
		switch {
		case strings.HasPrefix(line, "public_key="):
			counts = append(counts, 0)
		case strings.HasPrefix(line, "allowed_ip="):
			counts[len(counts)-1]++
		}
	}
	return counts
}

// TestLargeConfigs is RELIABILITY C2: get returns every allowed IP of large
// and odd configurations, counts exact.
func TestLargeConfigs(t *testing.T) {
	v4 := func(i int) string { return fmt.Sprintf("10.%d.%d.0/24", i/256, i%256) }
	v6 := func(i int) string { return fmt.Sprintf("fd00:7761::%x:%x/128", i/256, i%256) }
	repeat := func(n int, c int) []int {
		s := make([]int, n)
		for i := range s {
			s[i] = c
		}
		return s
	}
	tests := []struct {
		name string
		req  func() string
		want []int
	}{
		{"one peer 255x256x2", func() string {
			return uapitest.PeerBlock(uapitest.KeyN(0), 255*256*2, func(i int) string {
				if i%2 == 0 {
					return v4(i / 2)
				}
				return v6(i / 2)
			})
		}, []int{130560}},
		{"40 peers x 52", func() string {
			var b strings.Builder
			for p := range 40 {
				b.WriteString(uapitest.PeerBlock(uapitest.KeyN(p), 52, func(i int) string { return v4(p*52 + i) }))
			}
			return b.String()
		}, repeat(40, 52)},
		{"29 empty peers and one with two", func() string {
			var b strings.Builder
			for p := range 29 {
				b.WriteString(uapitest.PeerBlock(uapitest.KeyN(p), 0, nil))
			}
			b.WriteString(uapitest.PeerBlock(uapitest.KeyN(29), 2, v6))
			return b.String()
		}, append(repeat(29, 0), 2)},
		{"197 IPv6 /128s next to an empty peer", func() string {
			return uapitest.PeerBlock(uapitest.KeyN(0), 0, nil) + uapitest.PeerBlock(uapitest.KeyN(1), 197, v6)
		}, []int{0, 197}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dev := &uapitest.Device{}
			if got := exchange(t, dev, "set=1\n"+tc.req()+"\n"); got != "errno=0\n\n" {
				t.Fatalf("set: %q", got)
			}
			get := exchange(t, dev, "get=1\n\n")
			if !strings.HasSuffix(get, "\nerrno=0\n\n") {
				t.Fatalf("get does not end in errno=0: ...%q", get[max(0, len(get)-40):])
			}
			got := countAllowed(get)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("allowed IPs per peer = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRemoveAllowedIPs is RELIABILITY C3: 394 allowed IPs, 6 removed with
// allowed_ip=-prefix, leave exactly the other 388.
func TestRemoveAllowedIPs(t *testing.T) {
	dev := &uapitest.Device{}
	ip := func(i int) string { return fmt.Sprintf("198.18.%d.%d/32", i/256, i%256) }
	if got := exchange(t, dev, "set=1\n"+uapitest.PeerBlock(hexB, 394, ip)+"\n"); got != "errno=0\n\n" {
		t.Fatalf("set: %q", got)
	}
	removed := []int{0, 1, 100, 255, 256, 393}
	req := "set=1\npublic_key=" + hexB + "\n"
	for _, i := range removed {
		req += "allowed_ip=-" + ip(i) + "\n"
	}
	req += "allowed_ip=-203.0.113.0/24\n" // absent: no effect
	if got := exchange(t, dev, req+"\n"); got != "errno=0\n\n" {
		t.Fatalf("set: %q", got)
	}
	var want strings.Builder
	for i := range 394 {
		if !containsInt(removed, i) {
			want.WriteString("allowed_ip=" + ip(i) + "\n")
		}
	}
	var got strings.Builder
	for line := range strings.Lines(exchange(t, dev, "get=1\n\n")) {
		if strings.HasPrefix(line, "allowed_ip=") {
			got.WriteString(line)
		}
	}
	if got.String() != want.String() {
		t.Errorf("remaining allowed IPs:\n%s\nwant 388:\n%s", got.String(), want.String())
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestSemantics is RELIABILITY C6 and C7 on the reference device: each
// scenario is a sequence of set requests followed by the expected get.
func TestSemantics(t *testing.T) {
	privA, _ := crypto.ParsePrivateKeyHex(hexA)
	ownPub := privA.PublicKey().Hex()
	peer := func(pub string, extra ...string) string {
		s := "public_key=" + pub + "\npreshared_key=" + hexZ + "\nprotocol_version=1\n"
		for _, e := range extra {
			if strings.HasPrefix(e, "endpoint=") {
				s += e + "\n"
			}
		}
		s += "last_handshake_time_sec=0\nlast_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\npersistent_keepalive_interval=0\n"
		for _, e := range extra {
			if strings.HasPrefix(e, "allowed_ip=") {
				s += e + "\n"
			}
		}
		return s
	}
	base := "set=1\npublic_key=" + hexB + "\nallowed_ip=198.18.1.0/24\npublic_key=" + hexC + "\nallowed_ip=198.18.2.0/24\n\n"
	tests := []struct {
		name string
		sets []string
		want string
	}{
		{"replace_peers", []string{base, "set=1\nreplace_peers=true\npublic_key=" + hexC + "\nallowed_ip=198.18.3.0/24\n\n"},
			peer(hexC, "allowed_ip=198.18.3.0/24")},
		{"replace_allowed_ips", []string{base, "set=1\npublic_key=" + hexB + "\nreplace_allowed_ips=true\nallowed_ip=198.18.4.0/24\n\n"},
			peer(hexB, "allowed_ip=198.18.4.0/24") + peer(hexC, "allowed_ip=198.18.2.0/24")},
		{"allowed ip moves between peers", []string{base, "set=1\npublic_key=" + hexC + "\nallowed_ip=198.18.1.77/24\n\n"},
			peer(hexB) + peer(hexC, "allowed_ip=198.18.2.0/24", "allowed_ip=198.18.1.0/24")},
		{"remove", []string{base, "set=1\npublic_key=" + hexB + "\nremove=true\n\n"},
			peer(hexC, "allowed_ip=198.18.2.0/24")},
		{"remove absent peer", []string{"set=1\npublic_key=" + hexB + "\nremove=true\n\n"}, ""},
		{"update_only absent peer", []string{"set=1\npublic_key=" + hexB + "\nupdate_only=true\nallowed_ip=198.18.1.0/24\n\n"}, ""},
		{"update_only existing peer", []string{base, "set=1\npublic_key=" + hexC + "\nupdate_only=true\nendpoint=198.18.0.9:9\n\n"},
			peer(hexB, "allowed_ip=198.18.1.0/24") + peer(hexC, "endpoint=198.18.0.9:9", "allowed_ip=198.18.2.0/24")},
		{"protocol_version 2 rejected", []string{"set=1\npublic_key=" + hexB + "\nprotocol_version=2\n\n"}, ""},
		{"cleared private key shows none", []string{"set=1\nprivate_key=" + hexA + "\n\n", "set=1\nprivate_key=" + hexZ + "\n\n"}, ""},
		{"own public key as peer ignored", []string{"set=1\nprivate_key=" + hexA + "\npublic_key=" + ownPub + "\n\n"},
			"private_key=" + hexA + "\n"},
		{"private key matching a peer removes it", []string{"set=1\npublic_key=" + ownPub + "\n\n", "set=1\nprivate_key=" + hexA + "\n\n"},
			"private_key=" + hexA + "\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dev := &uapitest.Device{}
			for _, s := range tc.sets {
				exchange(t, dev, s)
			}
			if got, want := exchange(t, dev, "get=1\n\n"), tc.want+"errno=0\n\n"; got != want {
				t.Errorf("get:\n got %q\nwant %q", got, want)
			}
		})
	}
}

// FuzzServe sends arbitrary sessions to a server with the reference device:
// no panic, and every reply is well formed.
func FuzzServe(f *testing.F) {
	f.Add("get=1\n\nset=1\nfwmark=1\n\n")
	f.Add("set=1\npublic_key=" + hexB + "\nallowed_ip=198.18.0.0/24\n\nget=1\nx")
	f.Fuzz(func(t *testing.T, req string) {
		out := exchange(t, &uapitest.Device{}, req)
		if out != "" && !strings.HasSuffix(out, "\n\n") {
			t.Fatalf("reply %q does not end in a blank line", out)
		}
		for line := range strings.Lines(out) {
			if line != "\n" && !strings.Contains(line, "=") {
				t.Fatalf("reply line %q has no =", line)
			}
		}
	})
}
