package config

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// roundTrip checks that c prints as a file that parses back to c and
// prints the same again, and returns the printed file.
func roundTrip(t testing.TB, c *Config) string {
	t.Helper()
	text := c.String()
	c2, err := Parse("wg0.conf", strings.NewReader(text))
	if err != nil {
		t.Fatalf("Parse(String()) error = %v\nprinted:\n%s", err, text)
	}
	if diff := cmp.Diff(c2, c, cmpOpts...); diff != "" {
		t.Fatalf("Parse(String()) mismatch (-got +want):\n%s\nprinted:\n%s", diff, text)
	}
	if again := c2.String(); again != text {
		t.Fatalf("String() after a round trip = %q, want %q", again, text)
	}
	return text
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range goodFiles {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("wg0.conf", strings.NewReader(tc.text))
			if err != nil {
				t.Fatalf("Parse() error = %v", err)
			}
			roundTrip(t, c)
		})
	}
}

// TestRoundTripBuilt prints a Config built in code, as the demo does.
func TestRoundTripBuilt(t *testing.T) {
	c := &Config{Name: "wg0", Interface: Interface{
		PrivateKey: mustPriv(privA),
		ListenPort: 51820,
		Addresses:  prefixes("198.18.0.1/24", "fd00:7761::1/64"),
		MTU:        DefaultMTU,
		Table:      TableLocal,
		FwMark:     1,
		DNS:        []string{"fd00:7761::53"},
		PostDown:   []string{"true"},
	}, Peers: []Peer{{
		PublicKey:           mustPub(pubB),
		AllowedIPs:          prefixes("198.18.0.2/32"),
		Endpoint:            "[fd00:7761::2]:51820",
		PersistentKeepalive: time.Second,
	}}}
	roundTrip(t, c)
}

func TestString(t *testing.T) {
	c, err := Parse("wg0.conf", strings.NewReader(goodFiles[1].text+
		"[Peer]\npublickey="+pubB+"\npresharedkey="+pskB+"\nallowedips=198.18.9.1/24,fd00:7761::/32\n"+
		"endpoint=vpn.example.com:51820\npersistentkeepalive=025\n"))
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	want := `[Interface]
PrivateKey = ` + privA + `
ListenPort = 51820
FwMark = 0xca6c
Address = 198.18.0.1/24, fd00:7761::1/64, 198.18.1.1/32
MTU = 1380
Table = 1234
DNS = 198.18.0.53, fd00:7761::53, example.com, corp.example.
Mode = tap
DNSRequired = false
FirewallRequired = false
MetricsListen = [::1]:9586
PreUp = echo pre up
PostUp = iptables -A FORWARD -i %i -j ACCEPT
PostUp = echo second
PreDown = echo pre down
PostDown = echo post down

[Peer]
PublicKey = ` + pubB + `
PresharedKey = ` + pskB + `
AllowedIPs = 198.18.9.0/24, fd00:7761::/32
Endpoint = vpn.example.com:51820
PersistentKeepalive = 25
`
	if got := c.String(); got != want {
		t.Errorf("String() = %s\nwant %s\ndiff (-got +want):\n%s", got, want, cmp.Diff(got, want))
	}
	var buf bytes.Buffer
	n, err := c.WriteTo(&buf)
	if err != nil || n != int64(len(want)) || buf.String() != want {
		t.Errorf("WriteTo() = %d, %v, wrote %q; want %d, nil, %q", n, err, buf.String(), len(want), want)
	}
}

func TestTableString(t *testing.T) {
	tests := []struct {
		t    Table
		want string
		id   uint32
	}{
		{TableAuto, "auto", 254}, {TableOff, "off", 0}, {TableMain, "main", 254},
		{TableLocal, "local", 255}, {TableDefault, "default", 253}, {1234, "1234", 1234},
		{4294967295, "4294967295", 4294967295},
	}
	for _, tc := range tests {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("Table(%d).String() = %q, want %q", int64(tc.t), got, tc.want)
		}
		if got := tc.t.ID(); got != tc.id {
			t.Errorf("Table(%d).ID() = %d, want %d", int64(tc.t), got, tc.id)
		}
	}
}

func TestModeString(t *testing.T) {
	for m, want := range map[Mode]string{ModeTUN: "tun", ModeTAP: "tap", 7: "Mode(7)"} {
		if got := m.String(); got != want {
			t.Errorf("Mode(%d).String() = %q, want %q", uint8(m), got, want)
		}
	}
}
