package mesh

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const testPrivateKey = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="

func TestParseConfig(t *testing.T) {
	text := `[Interface]
PrivateKey = ` + testPrivateKey + `
Address = 198.18.100.1/24, fd00:7761:100::1/64

[Mesh]
Endpoints = https://198.18.0.1:2379, https://198.18.0.2:2379
CertFile = /etc/warren/n.crt
KeyFile = /etc/warren/n.key
CAFile = /etc/warren/ca.crt
Network = lab
Name = node-1
Advertise = 198.18.0.10:51820, [fd00:7761::10]:51820
Labels = site=a, role=gw
Peers = site=a
LeaseTTL = 10
PersistentKeepalive = 25
`
	ifc, c, err := Parse("/etc/wireguard/wm0.conf", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if ifc.Name != "wm0" || len(ifc.Interface.Addresses) != 2 {
		t.Errorf("interface = %q with %v", ifc.Name, ifc.Interface.Addresses)
	}
	want := &Config{
		Endpoints: []string{"https://198.18.0.1:2379", "https://198.18.0.2:2379"},
		CertFile:  "/etc/warren/n.crt", KeyFile: "/etc/warren/n.key", CAFile: "/etc/warren/ca.crt",
		Prefix: "/warren", Network: "lab", Name: "node-1",
		Advertise:           []netip.AddrPort{netip.MustParseAddrPort("198.18.0.10:51820"), netip.MustParseAddrPort("[fd00:7761::10]:51820")},
		AllowedIPs:          []netip.Prefix{netip.MustParsePrefix("198.18.100.1/32"), netip.MustParsePrefix("fd00:7761:100::1/128")},
		Labels:              map[string]string{"site": "a", "role": "gw"},
		Select:              map[string]string{"site": "a"},
		LeaseTTL:            10 * time.Second,
		PersistentKeepalive: 25 * time.Second,
		CacheFile:           "/var/lib/warren/wm0.mesh",
	}
	if diff := cmp.Diff(c, want, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("Parse: (-got +want)\n%s", diff)
	}
}

func TestParseConfigErrors(t *testing.T) {
	head := "[Interface]\nPrivateKey = " + testPrivateKey + "\nAddress = 198.18.100.1/24\n[Mesh]\n"
	ok := "Endpoints = http://127.0.0.1:2379\nInsecure = true\nNetwork = n\nName = a\nAdvertise = detect\n"
	for _, tc := range []struct{ name, body, want string }{
		{"no section", "", "wm0.conf:4: Endpoints: missing in [Mesh] section"},
		{"unknown key", ok + "Colour = red\n", `wm0.conf:10: Colour: unknown key in [Mesh] section`},
		{"duplicate", ok + "Name = b\n", "wm0.conf:10: Name: duplicate key (first at line 8)"},
		{"bad url", "Endpoints = 127.0.0.1:2379\n", `wm0.conf:5: Endpoints: "127.0.0.1:2379": invalid etcd endpoint`},
		{"tls required", "Endpoints = https://127.0.0.1:2379\nNetwork = n\nName = a\nAdvertise = detect\n", "wm0.conf:4: CertFile: required unless Insecure = true"},
		{"http without insecure", "Endpoints = http://127.0.0.1:2379\nCertFile=a\nKeyFile=b\nCAFile=c\nNetwork = n\nName = a\nAdvertise = detect\n", `wm0.conf:5: Endpoints: "http://127.0.0.1:2379": invalid etcd endpoint`},
		{"bad name", strings.Replace(ok, "Name = a", "Name = a/b", 1), `wm0.conf:8: Name: "a/b": invalid name`},
		{"bad advertise", strings.Replace(ok, "detect", "198.18.0.1", 1), `wm0.conf:9: Advertise: "198.18.0.1": invalid endpoint`},
		{"detect mixed", strings.Replace(ok, "detect", "detect, 198.18.0.1:1", 1), `wm0.conf:9: Advertise: "detect, 198.18.0.1:1": detect cannot be combined`},
		{"ttl", ok + "LeaseTTL = 1\n", `wm0.conf:10: LeaseTTL: "1": invalid lease TTL: want whole seconds 2-3600`},
		{"label", ok + "Labels = site\n", `wm0.conf:10: Labels: "site": invalid label`},
		{"prefix", ok + "AllowedIPs = 198.18.0/24\n", `wm0.conf:10: AllowedIPs: "198.18.0/24": invalid prefix`},
		{"key prefix", ok + "Prefix = warren/\n", `wm0.conf:10: Prefix: "warren/": invalid prefix`},
		{"empty", ok + "CacheFile =\n", "wm0.conf:10: CacheFile: empty value"},
		{"interface error keeps its line", ok + "[Peer]\nPublicKey = nope\n", `wm0.conf:11: PublicKey: "nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := head + tc.body
			if tc.name == "no section" {
				body = head
			}
			_, _, err := Parse("wm0.conf", strings.NewReader(body))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("Parse = %v, want %q...", err, tc.want)
			}
		})
	}
	_, _, err := Parse("wm0.conf", strings.NewReader("[Interface]\nPrivateKey = "+testPrivateKey+"\n"))
	if err == nil || err.Error() != "wm0.conf: [Mesh]: missing (no [Mesh] section)" {
		t.Errorf("Parse without [Mesh] = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("[Interface]\nPrivateKey = " + testPrivateKey + "\n[Mesh]\nEndpoints = http://127.0.0.1:2379\nInsecure = true\nNetwork = n\nName = a\nAdvertise = detect\n")
	f.Fuzz(func(t *testing.T, s string) {
		Parse("wm0.conf", strings.NewReader(s))
	})
}
