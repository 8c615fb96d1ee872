package lifecycle_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"

	"github.com/warrenvpn/warren/config"
	wgcrypto "github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/lifecycle"
	"github.com/warrenvpn/warren/tunnel"
)

// tapConfig is a Mode = tap config with a default route's allowed IPs,
// which in TUN mode would bring routes, rules, sysctls and nftables, and
// extra lines in [Interface].
func tapConfig(t testing.TB, extra string) *config.Config {
	t.Helper()
	k1, _ := wgcrypto.NewPrivateKey(rand.Reader)
	k2, _ := wgcrypto.NewPrivateKey(rand.Reader)
	text := fmt.Sprintf(`[Interface]
PrivateKey = %s
ListenPort = 51820
Mode = tap
Address = 198.19.5.1/24
%s
[Peer]
PublicKey = %s
AllowedIPs = 0.0.0.0/0, ::/0
AllowedMACs = 02:00:00:00:00:01
`, k1, extra, k2.PublicKey())
	cfg, err := config.Parse(testName+".conf", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// tapOptions opens the fake adapter for Mode = tap, recorded as a TAP.
func tapOptions(f *fakes, dir string) lifecycle.Options {
	o := f.options(dir)
	open := o.OpenAdapter
	o.OpenAdapter = nil // a TUN would be a mistake
	o.OpenTAP = func(name string, mtu int, offload bool) (tunnel.Adapter, error) {
		f.rec.note("tap open %s mtu %d", name, mtu)
		return open(name, mtu)
	}
	return o
}

// TestUpTAP: Mode = tap opens a TAP with MTU 1402, puts the address on it
// and adds no route, rule, sysctl or nftables table; Close leaves the
// fake host as it was.
func TestUpTAP(t *testing.T) {
	f := newFakes(-1)
	sysctls := lines(f.nl.Dump(), "sysctl")
	tun, err := lifecycle.Up(context.Background(), tapConfig(t, ""), tapOptions(f, t.TempDir()))
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	log := strings.Join(f.rec.log(), "\n")
	if !strings.Contains(log, "tap open "+testName+" mtu 1402") {
		t.Errorf("no TAP opened with MTU 1402:\n%s", log)
	}
	dump := f.nl.Dump()
	if !strings.Contains(dump, "addr 198.19.5.1/24 dev "+testName) {
		t.Errorf("the address is not on the TAP:\n%s", dump)
	}
	for _, no := range []string{"route", "rule"} {
		if lines(dump, no) != "" {
			t.Errorf("Mode = tap added a %s:\n%s", no, dump)
		}
	}
	if got := lines(dump, "sysctl"); got != sysctls {
		t.Errorf("Mode = tap changed sysctls:\n%s\nwas\n%s", got, sysctls)
	}
	if fw := f.fw.dump(); fw != "" {
		t.Errorf("Mode = tap added nftables tables: %s", fw)
	}
	if err := tun.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// TestUpTAPBridgeNeedsLinks: a netlink handle that cannot add links makes
// Bridge = fail with a clear error, and everything done before is undone.
func TestUpTAPBridgeNeedsLinks(t *testing.T) {
	f := newFakes(-1)
	before := f.nl.Dump()
	_, err := lifecycle.Up(context.Background(), tapConfig(t, "Bridge = br0"), tapOptions(f, t.TempDir()))
	if err == nil || !strings.Contains(err.Error(), "bridge br0: the netlink handle cannot manage links") {
		t.Fatalf("Up = %v, want the bridge error", err)
	}
	if after := f.nl.Dump(); after != before {
		t.Errorf("host after the failed Up:\n%s\nwant\n%s", after, before)
	}
}

// lines returns the lines of dump that start with word.
func lines(dump, word string) string {
	var out []string
	for l := range strings.SplitSeq(dump, "\n") {
		if strings.HasPrefix(l, word+" ") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
