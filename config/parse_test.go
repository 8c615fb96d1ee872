package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenvpn/warren/crypto"
)

// Keys used by the test files. privA's public key is pubA.
const (
	privA = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
	pubA  = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
	pubB  = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
	pubC  = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0="
	pskB  = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
	// Low-order points (P11: accepted by the config, they just never
	// complete a handshake).
	pubZero = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	pubOne  = "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
)

// cmpOpts compares netip values, which have unexported fields.
var cmpOpts = []cmp.Option{
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
}

func mustPriv(s string) crypto.PrivateKey {
	k, err := crypto.ParsePrivateKey(s)
	if err != nil {
		panic(err)
	}
	return k
}

func mustPub(s string) crypto.PublicKey {
	k, err := crypto.ParsePublicKey(s)
	if err != nil {
		panic(err)
	}
	return k
}

func mustPSK(s string) crypto.PresharedKey {
	k, err := crypto.ParsePresharedKey(s)
	if err != nil {
		panic(err)
	}
	return k
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// iface returns the [Interface] every minimal test file has: privA and
// the defaults.
func iface() Interface { return Interface{PrivateKey: mustPriv(privA), MTU: DefaultMTU} }

const minimal = "[Interface]\nPrivateKey = " + privA + "\n"

// goodFiles are files Parse must accept, with what it must make of them.
// FuzzParse uses them as seeds.
var goodFiles = []struct {
	name string
	text string
	want func() *Config
}{{
	name: "minimal",
	text: minimal,
	want: func() *Config { return &Config{Name: "wg0", Interface: iface()} },
}, {
	name: "every interface key, mixed case, comments, CRLF",
	text: "# a comment line\r\n" +
		"\r\n" +
		"  [interface]   # trailing comment\r\n" +
		"privatekey=" + privA + "\r\n" +
		"  ListenPort\t=  51820 \r\n" +
		"FWMARK = 0xca6c\r\n" +
		"Address = 198.18.0.1/24, fd00:7761::1/64\r\n" +
		"address=198.18.1.1\r\n" +
		"MTU = 1380\r\n" +
		"Table = 1234\r\n" +
		"DNS = 198.18.0.53,fd00:7761::53 example.com\r\n" +
		"DNS = corp.example.\r\n" +
		"PreUp = echo pre up\r\n" +
		"PostUp = iptables -A FORWARD -i %i -j ACCEPT # cut here, as wg-quick does\r\n" +
		"PostUp = echo second\r\n" +
		"PreDown = echo pre down\r\n" +
		"PostDown = echo post down\r\n" +
		"PostDown =\r\n" +
		"SaveConfig = False\r\n" +
		"Mode = TAP\r\n" +
		"metricslisten = [::1]:9586\r\n" +
		"DNSRequired = false\r\n" +
		"firewallrequired = FALSE\r\n",
	want: func() *Config {
		return &Config{Name: "wg0", Interface: Interface{
			PrivateKey:       mustPriv(privA),
			ListenPort:       51820,
			FwMark:           0xca6c,
			Addresses:        prefixes("198.18.0.1/24", "fd00:7761::1/64", "198.18.1.1/32"),
			MTU:              1380,
			Table:            1234,
			DNS:              []string{"198.18.0.53", "fd00:7761::53"},
			DNSSearch:        []string{"example.com", "corp.example."},
			PreUp:            []string{"echo pre up"},
			PostUp:           []string{"iptables -A FORWARD -i %i -j ACCEPT", "echo second"},
			PreDown:          []string{"echo pre down"},
			PostDown:         []string{"echo post down"},
			Mode:             ModeTAP,
			MetricsListen:    netip.MustParseAddrPort("[::1]:9586"),
			DNSOptional:      true,
			FirewallOptional: true,
		}}
	},
}, {
	name: "SaveConfig and a table name",
	text: minimal + "SaveConfig = true\nTable = vpn_1\n",
	want: func() *Config {
		i := iface()
		i.SaveConfig, i.TableName = true, "vpn_1"
		return &Config{Name: "wg0", Interface: i}
	},
}, {
	name: "peers",
	text: "[Peer]\n" + // a peer may come first
		"PublicKey = " + pubB + "\n" +
		"PresharedKey = " + pskB + "\n" +
		"AllowedIPs = 198.18.0.7/24, 198.19.0.0/16\n" + // host bits set: masked
		"AllowedIPs = fd00:7761::2, 198.18.0.0/24\n" + // bare address; duplicate kept once
		"AllowedIPs =\n" +
		"Endpoint = 198.18.5.1:51820\n" +
		"PersistentKeepalive = 25\n" +
		"\n" + minimal + "\n" +
		"[PEER]\n" +
		"PublicKey = " + pubC + "\n" +
		"AllowedIPs = 0.0.0.0/0, ::/0\n" +
		"Endpoint = [fd00:7761::5]:51820\n" +
		"PersistentKeepalive = off\n" +
		"[Peer]\n" +
		"PublicKey = " + pubZero + "\n" +
		"Endpoint = vpn.example.com:443\n" +
		"PersistentKeepalive = 0\n" +
		"[Peer]\n" +
		"PublicKey = " + pubOne + "\n",
	want: func() *Config {
		return &Config{Name: "wg0", Interface: iface(), Peers: []Peer{{
			PublicKey:           mustPub(pubB),
			PresharedKey:        mustPSK(pskB),
			AllowedIPs:          prefixes("198.18.0.0/24", "198.19.0.0/16", "fd00:7761::2/128"),
			Endpoint:            "198.18.5.1:51820",
			PersistentKeepalive: 25 * time.Second,
		}, {
			PublicKey:  mustPub(pubC),
			AllowedIPs: prefixes("0.0.0.0/0", "::/0"),
			Endpoint:   "[fd00:7761::5]:51820",
		}, {
			PublicKey: mustPub(pubZero),
			Endpoint:  "vpn.example.com:443",
		}, {
			PublicKey: mustPub(pubOne),
		}}}
	},
}, {
	name: "table off, fwmark off, empty MTU, empty lists",
	text: minimal + "Table = off\nFwMark = off\nMTU =\nAddress =\nDNS = ,\nListenPort = 0\n",
	want: func() *Config {
		c := &Config{Name: "wg0", Interface: iface()}
		c.Interface.Table = TableOff
		return c
	},
}, {
	name: "table main, decimal fwmark, mode tun",
	text: minimal + "Table = main\nFwMark = 51820\nMode = tun\n",
	want: func() *Config {
		c := &Config{Name: "wg0", Interface: iface()}
		c.Interface.Table, c.Interface.FwMark = TableMain, 51820
		return c
	},
}, {
	name: "table auto, hex table, large MTU",
	text: minimal + "Table = Auto\nMTU = 65535\n",
	want: func() *Config {
		c := &Config{Name: "wg0", Interface: iface()}
		c.Interface.MTU = 65535
		return c
	},
}, {
	name: "small MTU without IPv6",
	text: minimal + "Table = 0x100\nMTU = 576\nAddress = 198.18.0.1/24\n",
	want: func() *Config {
		c := &Config{Name: "wg0", Interface: iface()}
		c.Interface.Table, c.Interface.MTU = 256, 576
		c.Interface.Addresses = prefixes("198.18.0.1/24")
		return c
	},
}}

func TestParse(t *testing.T) {
	for _, tc := range goodFiles {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse("wg0.conf", strings.NewReader(tc.text))
			if err != nil {
				t.Fatalf("Parse() error = %v", err)
			}
			if diff := cmp.Diff(got, tc.want(), cmpOpts...); diff != "" {
				t.Errorf("Parse() mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestParseTable(t *testing.T) {
	tests := []struct {
		in   string
		want Table
	}{
		{"", TableAuto}, {"auto", TableAuto}, {"AUTO", TableAuto}, {"off", TableOff},
		{"main", TableMain}, {"local", TableLocal}, {"default", TableDefault},
		{"254", TableMain}, {"1", 1}, {"4294967295", 4294967295}, {"0x10", 16}, {"0xffffffff", 4294967295},
	}
	for _, tc := range tests {
		got, err := parseTable(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseTable(%q) = %v, %v, want %v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"0", "010", "0x", "0X10", "4294967296", "-1", "+5", "foo", "main2", " 5"} {
		if got, err := parseTable(in); err == nil {
			t.Errorf("parseTable(%q) = %v, want error", in, got)
		}
	}
}

func TestParseFwMark(t *testing.T) {
	tests := []struct {
		in   string
		want uint32
	}{
		{"off", 0}, {"OFF", 0}, {"0", 0}, {"51820", 51820}, {"0051820", 51820}, {"0xca6c", 0xca6c},
		{"0xFFFFFFFF", 0xffffffff}, {"4294967295", 0xffffffff},
	}
	for _, tc := range tests {
		got, err := parseFwMark(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseFwMark(%q) = %v, %v, want %v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "0x", "0X10", "4294967296", "0x100000000", "-1", "+1", "1e3", "0xg"} {
		if got, err := parseFwMark(in); err == nil {
			t.Errorf("parseFwMark(%q) = %v, want error", in, got)
		}
	}
}

// badFiles are files Parse must refuse, with the exact message. FuzzParse
// uses them as seeds.
var badFiles = []struct {
	name string
	text string
	want string
	is   error // a sentinel the error must wrap, or nil
}{
	// Structure.
	{"key outside a section", "PrivateKey = " + privA + "\n" + minimal,
		`wg0.conf:1: PrivateKey: key outside a section`, ErrOutsideSection},
	{"unknown key outside a section", "# c\nFoo = 1\n",
		`wg0.conf:2: Foo: key outside a section`, ErrOutsideSection},
	{"unknown section", minimal + "[Peers]\n",
		`wg0.conf:3: [Peers]: unknown section`, ErrUnknownSection},
	{"spaces inside the brackets", "[ Interface ]\n",
		`wg0.conf:1: [ Interface ]: unknown section`, ErrUnknownSection},
	{"unknown key", minimal + "\nListenPrt = 51820\n",
		`wg0.conf:4: ListenPrt: unknown key in [Interface] section`, ErrUnknownKey},
	{"peer key in interface", minimal + "Endpoint = 198.18.0.1:1\n",
		`wg0.conf:3: Endpoint: unknown key in [Interface] section`, ErrUnknownKey},
	{"interface key in peer", minimal + "[Peer]\nPublicKey = " + pubB + "\naddress = 198.18.0.1\n",
		`wg0.conf:5: Address: unknown key in [Peer] section`, ErrUnknownKey},
	{"key with a Kelvin sign", "[Interface]\nPrivate\u212aey = " + privA + "\n",
		"wg0.conf:2: Private\u212aey: unknown key in [Interface] section", ErrUnknownKey},
	{"no equals sign", minimal + "MTU 1420\n",
		`wg0.conf:3: "MTU 1420": expected Key = Value`, ErrSyntax},
	{"no key", minimal + " = 1420\n",
		`wg0.conf:3: "= 1420": expected Key = Value`, ErrSyntax},

	// Missing pieces.
	{"empty file", "",
		`wg0.conf: PrivateKey: missing (no [Interface] section)`, ErrMissing},
	{"no private key", "\n[Interface]\nListenPort = 1\n[Peer]\nPublicKey = " + pubB + "\n",
		`wg0.conf:2: PrivateKey: missing in [Interface] section`, ErrMissing},
	{"peer without public key", minimal + "[Peer]\nAllowedIPs = 198.18.0.0/24\n[Peer]\nPublicKey = " + pubB + "\n",
		`wg0.conf:3: PublicKey: missing in [Peer] section`, ErrMissing},
	{"last peer without public key", minimal + "[Peer]\n",
		`wg0.conf:3: PublicKey: missing in [Peer] section`, ErrMissing},

	// Duplicates.
	{"duplicate peer", minimal + "[Peer]\nPublicKey = " + pubB + "\n[Peer]\nPublicKey = " + pubC + "\n[Peer]\npublickey = " + pubB + "\n",
		`wg0.conf:8: PublicKey: "` + pubB + `": duplicate peer (first at line 4)`, ErrDuplicate},
	{"duplicate key", minimal + "ListenPort = 1\nListenPort = 2\n",
		`wg0.conf:4: ListenPort: duplicate key (first at line 3)`, ErrDuplicate},
	{"duplicate private key", minimal + "PrivateKey = " + privA + "\n",
		`wg0.conf:3: PrivateKey: duplicate key (first at line 2)`, ErrDuplicate},
	{"duplicate key in peer", minimal + "[Peer]\nPublicKey = " + pubB + "\nEndpoint = 198.18.0.1:1\nEndpoint = 198.18.0.2:1\n",
		`wg0.conf:6: Endpoint: duplicate key (first at line 5)`, ErrDuplicate},
	{"duplicate interface section", minimal + "[Interface]\nListenPort = 1\n",
		`wg0.conf:3: [Interface]: duplicate section (first at line 1)`, ErrDuplicate},
	{"duplicate address", minimal + "Address = 198.18.0.1/24\nAddress = 198.18.0.2/24, 198.18.0.1/16\n",
		`wg0.conf:4: Address: "198.18.0.1/16": duplicate address (first at line 3)`, ErrDuplicate},
	{"prefix in two peers", minimal + "[Peer]\nPublicKey = " + pubB + "\nAllowedIPs = 198.18.0.0/24\n[Peer]\nPublicKey = " + pubC + "\nAllowedIPs = 198.18.0.9/24\n",
		`wg0.conf:8: AllowedIPs: "198.18.0.9/24": duplicate: 198.18.0.0/24 is also allowed for the peer at line 3`, ErrDuplicate},
	{"own public key", minimal + "[Peer]\nPublicKey = " + pubA + "\n",
		`wg0.conf:4: PublicKey: "` + pubA + `": is the interface's own public key`, nil},

	// Malformed values of [Interface].
	{"private key", "[Interface]\nPrivateKey = " + privA[:43] + "\n",
		`wg0.conf:2: PrivateKey: invalid key: want 44 base64 characters, got 43 characters`, crypto.ErrKeyFormat},
	{"empty private key", "[Interface]\nPrivateKey =\n",
		`wg0.conf:2: PrivateKey: empty value`, ErrEmpty},
	{"listen port too big", minimal + "ListenPort = 65536\n",
		`wg0.conf:3: ListenPort: "65536": invalid port: want 0-65535`, nil},
	{"listen port name", minimal + "ListenPort = domain\n",
		`wg0.conf:3: ListenPort: "domain": invalid port: want 0-65535`, nil},
	{"empty listen port", minimal + "ListenPort = \n",
		`wg0.conf:3: ListenPort: empty value`, ErrEmpty},
	{"fwmark", minimal + "FwMark = 0X10\n",
		`wg0.conf:3: FwMark: "0X10": invalid fwmark: want off, a decimal number or 0x hex, up to 32 bits`, nil},
	{"address without mask bits", minimal + "Address = 198.18.0.1/24, 10.0.0/24\n",
		`wg0.conf:3: Address: "10.0.0/24": invalid address`, nil},
	{"address prefix too long", minimal + "Address = 198.18.0.1/33\n",
		`wg0.conf:3: Address: "198.18.0.1/33": invalid address`, nil},
	{"address with zone", minimal + "Address = fe80::1%eth0\n",
		`wg0.conf:3: Address: "fe80::1%eth0": invalid address`, nil},
	{"unspecified address", minimal + "Address = 0.0.0.0/0\n",
		`wg0.conf:3: Address: "0.0.0.0/0": invalid address`, nil},
	{"MTU too small", minimal + "MTU = 67\n",
		`wg0.conf:3: MTU: "67": invalid MTU: want 68-65535`, nil},
	{"MTU not a number", minimal + "MTU = auto\n",
		`wg0.conf:3: MTU: "auto": invalid MTU: want 68-65535`, nil},
	{"MTU too small for IPv6", minimal + "MTU = 1279\nAddress = 198.18.0.1/24\nAddress = fd00:7761::1/64\n",
		`wg0.conf:3: MTU: "1279": below 1280 with an IPv6 address`, nil},
	{"table zero", minimal + "Table = 0\n",
		`wg0.conf:3: Table: "0": invalid table: want auto, off, main, local, default, a table ID 1-4294967295 or a name from rt_tables`, nil},
	{"table name", minimal + "Table = 1vpn\n",
		`wg0.conf:3: Table: "1vpn": invalid table: want auto, off, main, local, default, a table ID 1-4294967295 or a name from rt_tables`, nil},
	{"DNS server", minimal + "DNS = 198.18.0.53, 1.2.3\n",
		`wg0.conf:3: DNS: "1.2.3": invalid DNS server address`, nil},
	{"DNS IPv6 server", minimal + "DNS = fd00::53::1\n",
		`wg0.conf:3: DNS: "fd00::53::1": invalid DNS server address`, nil},
	{"DNS search domain", minimal + "DNS = ~.\n",
		`wg0.conf:3: DNS: "~.": invalid DNS search domain`, nil},
	{"save config not a bool", minimal + "SaveConfig = yes\n",
		`wg0.conf:3: SaveConfig: "yes": want true or false`, nil},
	{"mode", minimal + "Mode = tan\n",
		`wg0.conf:3: Mode: "tan": invalid mode: want tun or tap`, nil},
	{"DNSRequired not a bool", minimal + "DNSRequired = no\n",
		`wg0.conf:3: DNSRequired: "no": want true or false`, nil},
	{"metrics host name", minimal + "MetricsListen = localhost:9586\n",
		`wg0.conf:3: MetricsListen: "localhost:9586": invalid metrics address: want IP:port, such as 127.0.0.1:9586 or [::1]:9586`, nil},
	{"metrics without port", minimal + "MetricsListen = 127.0.0.1\n",
		`wg0.conf:3: MetricsListen: "127.0.0.1": invalid metrics address: want IP:port, such as 127.0.0.1:9586 or [::1]:9586`, nil},
	{"metrics port 0", minimal + "MetricsListen = 127.0.0.1:0\n",
		`wg0.conf:3: MetricsListen: "127.0.0.1:0": invalid metrics address: want IP:port, such as 127.0.0.1:9586 or [::1]:9586`, nil},
	{"metrics in a peer", minimal + "[Peer]\nPublicKey = " + pubB + "\nMetricsListen = 127.0.0.1:9586\n",
		`wg0.conf:5: MetricsListen: unknown key in [Peer] section`, ErrUnknownKey},

	// Malformed values of [Peer].
	{"public key", minimal + "[Peer]\nPublicKey = " + pubB[:42] + "!=\n",
		`wg0.conf:4: PublicKey: "` + pubB[:42] + `!=": invalid key: not valid base64`, crypto.ErrKeyFormat},
	{"preshared key", minimal + "[Peer]\nPublicKey = " + pubB + "\nPresharedKey = secret\n",
		`wg0.conf:5: PresharedKey: invalid key: want 44 base64 characters, got 6 characters`, crypto.ErrKeyFormat},
	{"allowed IPs", minimal + "[Peer]\nPublicKey = " + pubB + "\nAllowedIPs = 10.0.0.0/8, 10.0.0/24\n",
		`wg0.conf:5: AllowedIPs: "10.0.0/24": invalid prefix`, nil},
	{"allowed IPs separated by spaces", minimal + "[Peer]\nPublicKey = " + pubB + "\nAllowedIPs = 10.0.0.0/8 10.1.0.0/16\n",
		`wg0.conf:5: AllowedIPs: "10.0.0.0/8 10.1.0.0/16": invalid prefix`, nil},
	{"allowed IPs empty entry", minimal + "[Peer]\nPublicKey = " + pubB + "\nAllowedIPs = 10.0.0.0/8,\n",
		`wg0.conf:5: AllowedIPs: "10.0.0.0/8,": empty entry in the list`, nil},
	{"allowed IPs zone", minimal + "[Peer]\nPublicKey = " + pubB + "\nAllowedIPs = fe80::1%eth0\n",
		`wg0.conf:5: AllowedIPs: "fe80::1%eth0": invalid prefix`, nil},
	{"endpoint without port", minimal + "[Peer]\nPublicKey = " + pubB + "\nEndpoint = 198.18.0.1\n",
		`wg0.conf:5: Endpoint: "198.18.0.1": invalid endpoint: want host:port, [IPv6]:port with port 1-65535`, nil},
	{"endpoint port 0", minimal + "[Peer]\nPublicKey = " + pubB + "\nEndpoint = 198.18.0.1:0\n",
		`wg0.conf:5: Endpoint: "198.18.0.1:0": invalid endpoint: want host:port, [IPv6]:port with port 1-65535`, nil},
	{"endpoint port name", minimal + "[Peer]\nPublicKey = " + pubB + "\nEndpoint = vpn.example.com:https\n",
		`wg0.conf:5: Endpoint: "vpn.example.com:https": invalid endpoint: want host:port, [IPv6]:port with port 1-65535`, nil},
	{"endpoint IPv6 without brackets", minimal + "[Peer]\nPublicKey = " + pubB + "\nEndpoint = fd00:7761::1:51820\n",
		`wg0.conf:5: Endpoint: "fd00:7761::1:51820": invalid endpoint host: want an IPv4 address, [IPv6 address] or host name`, nil},
	{"endpoint IPv4 in brackets", minimal + "[Peer]\nPublicKey = " + pubB + "\nEndpoint = [198.18.0.1]:51820\n",
		`wg0.conf:5: Endpoint: "[198.18.0.1]:51820": invalid endpoint host: want an IPv4 address, [IPv6 address] or host name`, nil},
	{"endpoint short IPv4", minimal + "[Peer]\nPublicKey = " + pubB + "\nEndpoint = 10.1:51820\n",
		`wg0.conf:5: Endpoint: "10.1:51820": invalid endpoint host: want an IPv4 address, [IPv6 address] or host name`, nil},
	{"endpoint bad host name", minimal + "[Peer]\nPublicKey = " + pubB + "\nEndpoint = vpn..example.com:51820\n",
		`wg0.conf:5: Endpoint: "vpn..example.com:51820": invalid endpoint host: want an IPv4 address, [IPv6 address] or host name`, nil},
	{"empty endpoint", minimal + "[Peer]\nPublicKey = " + pubB + "\nEndpoint =\n",
		`wg0.conf:5: Endpoint: empty value`, ErrEmpty},
	{"keepalive too big", minimal + "[Peer]\nPublicKey = " + pubB + "\nPersistentKeepalive = 65536\n",
		`wg0.conf:5: PersistentKeepalive: "65536": invalid persistent keepalive: want off or seconds 0-65535`, nil},
	{"keepalive negative", minimal + "[Peer]\nPublicKey = " + pubB + "\nPersistentKeepalive = -1\n",
		`wg0.conf:5: PersistentKeepalive: "-1": invalid persistent keepalive: want off or seconds 0-65535`, nil},
}

func TestParseErrors(t *testing.T) {
	for _, tc := range badFiles {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("wg0.conf", strings.NewReader(tc.text))
			if err == nil {
				t.Fatalf("Parse() = %v, want error %q", c, tc.want)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("Parse() error = %q, want %q", got, tc.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("Parse() error is %T, want *Error", err)
			} else if e.File != "wg0.conf" {
				t.Errorf("Error.File = %q, want wg0.conf", e.File)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("errors.Is(%v, %v) = false, want true", err, tc.is)
			}
		})
	}
}

// TestParseErrorSecrets checks that no error quotes a private or preshared
// key, even a malformed one.
func TestParseErrorSecrets(t *testing.T) {
	for _, text := range []string{
		"[Interface]\nPrivateKey = " + privA + "x\n",
		minimal + "[Peer]\nPublicKey = " + pubB + "\nPresharedKey = " + pskB[:40] + "\n",
	} {
		_, err := Parse("wg0.conf", strings.NewReader(text))
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("Parse(%q) error = %v, want *Error", text, err)
		}
		if e.Value != "" || strings.Contains(err.Error(), privA[:40]) || strings.Contains(err.Error(), pskB[:40]) {
			t.Errorf("Parse(%q) error = %q (Value %q), want no key material", text, err, e.Value)
		}
	}
}

func TestErrorFields(t *testing.T) {
	_, err := Parse("dir/wg0.conf", strings.NewReader(minimal+"[Peer]\nPublicKey = "+pubB+"\nAllowedIPs = 10.0.0/24\n"))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Parse() error = %v, want *Error", err)
	}
	want := &Error{File: "dir/wg0.conf", Line: 5, Key: "AllowedIPs", Value: "10.0.0/24", Err: errPrefix}
	if diff := cmp.Diff(*e, *want, cmp.Comparer(func(a, b error) bool { return a == b })); diff != "" {
		t.Errorf("Parse() error mismatch (-got +want):\n%s", diff)
	}
}

func TestErrorString(t *testing.T) {
	cause := errors.New("cause")
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "wg0.conf", Line: 7, Key: "AllowedIPs", Value: "10.0.0/24", Err: cause}, `wg0.conf:7: AllowedIPs: "10.0.0/24": cause`},
		{Error{File: "wg0.conf", Line: 7, Key: "AllowedIPs", Err: cause}, `wg0.conf:7: AllowedIPs: cause`},
		{Error{File: "wg0.conf", Key: "PrivateKey", Err: cause}, `wg0.conf: PrivateKey: cause`},
		{Error{File: "wg0.conf", Line: 2, Value: "a\"b", Err: cause}, `wg0.conf:2: "a\"b": cause`},
		{Error{File: "x", Err: cause}, `x: cause`},
	}
	for _, tc := range tests {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%#v.Error() = %q, want %q", tc.e, got, tc.want)
		}
		if !errors.Is(&tc.e, cause) {
			t.Errorf("errors.Is(%q, cause) = false, want true", tc.want)
		}
	}
}

func TestParseName(t *testing.T) {
	tests := []struct{ file, want string }{
		{"wg0.conf", "wg0"},
		{"/etc/wireguard/home-vpn.conf", "home-vpn"},
		{"a_=+.-.conf", "a_=+.-"},
		{"sixteen-chars-xx.conf", ""},
		{"wg 0.conf", ""},
		{"wg0.cfg", ""},
		{"-", ""},
	}
	for _, tc := range tests {
		c, err := Parse(tc.file, strings.NewReader(minimal))
		if err != nil {
			t.Fatalf("Parse(%q) error = %v", tc.file, err)
		}
		if c.Name != tc.want {
			t.Errorf("Parse(%q).Name = %q, want %q", tc.file, c.Name, tc.want)
		}
	}
}

func TestParseLongLine(t *testing.T) {
	text := minimal + "PostUp = " + strings.Repeat("x", maxLineLen) + "\n"
	_, err := Parse("wg0.conf", strings.NewReader(text))
	want := `wg0.conf:3: line longer than 16777216 bytes`
	if err == nil || err.Error() != want {
		t.Errorf("Parse() error = %v, want %s", err, want)
	}
}

func TestParseReadError(t *testing.T) {
	cause := errors.New("disk on fire")
	_, err := Parse("wg0.conf", errReader{cause})
	if !errors.Is(err, cause) {
		t.Errorf("Parse() error = %v, want it to wrap %v", err, cause)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
