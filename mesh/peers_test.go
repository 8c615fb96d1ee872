package mesh

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenvpn/warren/config"
	wgcrypto "github.com/warrenvpn/warren/crypto"
)

func testNodeKey(b byte) wgcrypto.PublicKey {
	var k wgcrypto.PrivateKey
	k[1] = b // byte 0 loses its low bits to clamping
	return k.PublicKey()
}

func TestNodeRoundTrip(t *testing.T) {
	n := Node{
		Name: "a", PublicKey: testNodeKey(1),
		Endpoints:  []netip.AddrPort{netip.MustParseAddrPort("198.18.0.1:51820")},
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("198.18.100.0/24")},
		Labels:     map[string]string{"site": "a"},
	}
	b, err := n.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseNode(keyElement(n.PublicKey), b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, n, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("ParseNode(Marshal) (-got +want)\n%s", diff)
	}
	if strings.Contains(keyElement(n.PublicKey), "/") {
		t.Errorf("key element %q has a '/'", keyElement(n.PublicKey))
	}
}

func TestParseNodeErrors(t *testing.T) {
	k := testNodeKey(1)
	good := `"publicKey":"` + k.String() + `","allowedIPs":["198.18.100.0/24"],"mode":"tun"`
	for _, tc := range []struct{ name, doc, want string }{
		{"not json", "garbage", "not a node document"},
		{"version", `{"v":2,"name":"a",` + good + `}`, "unknown version 2"},
		{"key", `{"v":1,"name":"a","publicKey":"` + testNodeKey(2).String() + `","allowedIPs":["198.18.100.0/24"],"mode":"tun"}`, "does not match"},
		{"name", `{"v":1,"name":"a b",` + good + `}`, "invalid node name"},
		{"mode", `{"v":1,"name":"a","publicKey":"` + k.String() + `","allowedIPs":["198.18.100.0/24"],"mode":"x"}`, "invalid mode"},
		{"prefix", `{"v":1,"name":"a","publicKey":"` + k.String() + `","allowedIPs":["198.18.100/24"],"mode":"tun"}`, "invalid endpoint or allowed IP"},
		{"endpoint", `{"v":1,"name":"a","endpoints":["198.18.0.1"],` + good + `}`, "invalid endpoint or allowed IP"},
		{"no prefixes", `{"v":1,"name":"a","publicKey":"` + k.String() + `","allowedIPs":[],"mode":"tun"}`, "no allowed IPs"},
		{"big", strings.Repeat(" ", maxDocumentSize+1), "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseNode(keyElement(k), []byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseNode(%.40q) = %v, want %q", tc.doc, err, tc.want)
			}
		})
	}
}

func TestDesiredPeers(t *testing.T) {
	pfx := func(s ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, x := range s {
			out = append(out, netip.MustParsePrefix(x))
		}
		return out
	}
	self := &Node{Name: "self", PublicKey: testNodeKey(0), AllowedIPs: pfx("198.18.100.1/32")}
	nodes := map[wgcrypto.PublicKey]*entry{}
	add := func(b byte, rev int64, name string, labels map[string]string, mode config.Mode, ps ...string) {
		k := testNodeKey(b)
		nodes[k] = &entry{createRev: rev, modRev: rev, node: Node{Name: name, PublicKey: k, AllowedIPs: pfx(ps...), Labels: labels, Mode: mode,
			Endpoints: []netip.AddrPort{netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, b}), 51820)}}}
	}
	add(1, 10, "a", nil, config.ModeTUN, "198.18.100.2/32")
	add(2, 11, "b", map[string]string{"site": "x"}, config.ModeTUN, "198.18.100.3/32", "198.18.120.0/24")
	add(3, 12, "a", nil, config.ModeTUN, "198.18.100.4/32")      // name taken by an older node
	add(4, 13, "c", nil, config.ModeTUN, "198.18.120.128/25")    // inside b's /24
	add(5, 14, "d", nil, config.ModeTUN, "198.18.0.0/16")        // holds everyone
	add(6, 15, "e", nil, config.ModeTAP, "198.18.101.0/24")      // other mode
	add(7, 16, "self", nil, config.ModeTUN, "198.18.102.0/24")   // this node's name
	add(8, 9, "f", nil, config.ModeTUN, "fd00:7761:1::/48")      // IPv6
	add(9, 17, "g", nil, config.ModeTUN, "fd00:7761:1:2::1/128") // inside f's
	got, skips := desiredPeers(self, &Config{}, nodes)
	var names []string
	for _, s := range skips {
		names = append(names, s.name)
	}
	if want := []string{"a", "c", "d", "e", "self", "g"}; !cmp.Equal(sortedCopy(names), sortedCopy(want)) {
		t.Errorf("skipped %v, want %v", names, want)
	}
	if len(got) != 3 || got[testNodeKey(1)].Endpoint != "198.18.0.1:51820" {
		t.Errorf("desiredPeers = %v, want a, b and f", got)
	}
	got, _ = desiredPeers(self, &Config{Select: map[string]string{"site": "x"}}, nodes)
	if _, ok := got[testNodeKey(2)]; len(got) != 1 || !ok {
		t.Errorf("desiredPeers with site=x = %v, want b only", got)
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestDiffPeers(t *testing.T) {
	p := func(b byte, ep string) config.Peer {
		return config.Peer{PublicKey: testNodeKey(b), Endpoint: ep, AllowedIPs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 100, b}), 32)}}
	}
	applied := map[wgcrypto.PublicKey]config.Peer{testNodeKey(1): p(1, "198.18.0.1:1"), testNodeKey(2): p(2, "198.18.0.2:1"), testNodeKey(3): p(3, "")}
	desired := map[wgcrypto.PublicKey]config.Peer{testNodeKey(1): p(1, "198.18.0.1:1"), testNodeKey(2): p(2, "198.18.0.2:2"), testNodeKey(4): p(4, "")}
	d := diffPeers(applied, desired)
	if len(d.Set) != 2 || len(d.Remove) != 1 || d.Remove[0] != testNodeKey(3) {
		t.Fatalf("diffPeers = %+v, want set 2 and 4, remove 3", d)
	}
	c, err := d.Change()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Peers) != 3 || !c.Peers[0].Remove || !c.Peers[1].ReplaceAllowedIPs {
		t.Errorf("Change = %+v", c)
	}
	if d := diffPeers(desired, desired); !d.IsEmpty() {
		t.Errorf("diffPeers of equal sets = %+v, want empty", d)
	}
}
