package uapi_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
	"github.com/warrenvpn/warren/uapi"
	"github.com/warrenvpn/warren/uapi/uapitest"
)

// requireWG returns the path of the wg tool; without it the test skips,
// or fails under CI=true.
func requireWG(t *testing.T) string {
	t.Helper()
	wg, err := exec.LookPath("wg")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("wg not installed: %v", err)
		}
		t.Skipf("wg not installed: %v", err)
	}
	return wg
}

// TestWGTool drives a Server with the reference device through the real
// wg tool on /var/run/wireguard (RELIABILITY C11, the UAPI half): wg set,
// show dump, showconf, syncconf and the errors it reports.
func TestWGTool(t *testing.T) {
	netlabtest.RequireRoot(t)
	wg := requireWG(t)
	iface := fmt.Sprintf("wu%d", os.Getpid()%100000)
	l, err := uapi.Listen(iface)
	if err != nil {
		t.Fatal(err)
	}
	dev := serveListener(t, l)
	dev.BusyPorts = map[uint16]bool{4242: true}

	priv, _ := crypto.ParsePrivateKeyHex(hexA)
	pub, _ := crypto.ParsePublicKeyHex(hexB)
	psk, _ := crypto.ParsePresharedKeyHex(hexC)
	pub2, _ := crypto.ParsePublicKeyHex(uapitest.KeyN(5))
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(args ...string) (string, error) {
		out, err := exec.Command(wg, args...).CombinedOutput()
		return string(out), err
	}
	mustRun := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("wg %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	mustRun("set", iface, "listen-port", "51820", "fwmark", "0x1234", "private-key", file("priv", priv.String()+"\n"),
		"peer", pub.String(), "preshared-key", file("psk", psk.String()+"\n"), "endpoint", "198.18.0.2:51820",
		"persistent-keepalive", "25", "allowed-ips", "198.18.0.93/27,fd00:7761::/64")
	dev.SetStats(pub, 1460, 1372, time.Unix(1764067200, 5))
	want := strings.Join([]string{priv.String(), priv.PublicKey().String(), "51820", "0x1234"}, "\t") + "\n" +
		strings.Join([]string{pub.String(), psk.String(), "198.18.0.2:51820", "198.18.0.64/27,fd00:7761::/64",
			"1764067200", "1372", "1460", "25"}, "\t") + "\n"
	if got := mustRun("show", iface, "dump"); got != want {
		t.Errorf("wg show dump:\n got %q\nwant %q", got, want)
	}
	if got := mustRun("show", "interfaces"); !strings.Contains(" "+strings.TrimSpace(got)+" ", " "+iface+" ") {
		t.Errorf("wg show interfaces = %q, want it to list %s", got, iface)
	}
	if got := mustRun("showconf", iface); !strings.Contains(got, "AllowedIPs = 198.18.0.64/27, fd00:7761::/64\n") ||
		!strings.Contains(got, "PersistentKeepalive = 25\n") {
		t.Errorf("wg showconf:\n%s", got)
	}

	// syncconf replaces the peer set with the file's.
	mustRun("syncconf", iface, file("sync.conf", "[Interface]\nListenPort = 51821\n\n[Peer]\nPublicKey = "+pub2.String()+
		"\nAllowedIPs = 198.19.0.0/16\n"))
	got := mustRun("show", iface, "dump")
	if !strings.Contains(got, pub2.String()+"\t(none)\t(none)\t198.19.0.0/16\t0\t0\t0\toff\n") || strings.Contains(got, pub.String()) ||
		!strings.Contains(got, "\t51821\t") {
		t.Errorf("after syncconf, wg show dump:\n%s", got)
	}

	mustRun("set", iface, "peer", pub2.String(), "remove")
	if got := mustRun("show", iface, "peers"); strings.TrimSpace(got) != "" {
		t.Errorf("after remove, wg show peers = %q, want none", got)
	}

	// Errors come back as wg reports them for wireguard-go: port in use.
	if out, err := run("set", iface, "listen-port", "4242"); err == nil || !strings.Contains(out, "Address already in use") {
		t.Errorf("wg set listen-port 4242 (busy): %v\n%s", err, out)
	}
	if got := mustRun("show", iface, "listen-port"); strings.TrimSpace(got) != "51821" {
		t.Errorf("listen port after the refused change = %q, want 51821", got)
	}
}
