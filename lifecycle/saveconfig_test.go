package lifecycle_test

import (
	"crypto/rand"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warrenvpn/warren/config"
	wgcrypto "github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/internal/leakcheck"
	"github.com/warrenvpn/warren/lifecycle"
	"github.com/warrenvpn/warren/uapi"
)

// TestSaveConfig (C18): with SaveConfig = true, a peer added at run time (as by
// `wg set`) is in the file SaveConfig writes, with the file's [Interface]
// keys and a peer's Endpoint name, mode 0600; the file parses back.
func TestSaveConfig(t *testing.T) {
	leakcheck.Check(t)
	cfg := testConfig(t)
	cfg.Interface.SaveConfig = true
	f := newFakes(-1)
	tun, err := lifecycle.Up(t.Context(), cfg, f.options(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	k, err := wgcrypto.NewPrivateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	added := k.PublicKey()
	controlSet(t, f, &uapi.Change{Peers: []uapi.PeerChange{{PublicKey: added, ReplaceAllowedIPs: true,
		AllowedIPs: []uapi.AllowedIPChange{{Prefix: mustPrefix("198.19.44.0/24")}}}}})

	path := filepath.Join(t.TempDir(), testName+".conf")
	os.WriteFile(path, []byte("old"), 0o644)
	if err := tun.SaveConfig(path); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("saved file mode %v, want 0600", st.Mode().Perm())
	}
	saved, err := config.Load(path)
	if err != nil {
		t.Fatalf("the saved file does not parse: %v", err)
	}
	if len(saved.Peers) != 2 || saved.Peers[1].PublicKey != added || saved.Peers[1].AllowedIPs[0] != mustPrefix("198.19.44.0/24") {
		t.Errorf("saved peers = %+v, want the file's and the one added at run time", saved.Peers)
	}
	text, _ := os.ReadFile(path)
	for _, want := range []string{"SaveConfig = true", "Address = 198.19.0.1/24, fd00:7761:1::1/64", "PostDown = postdown %i",
		"DNS = 198.19.0.53, example.test", "ListenPort = 51820",
		"Endpoint = peer.test:51820", // the name, which warren follows (RO11), not the address it gives now
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("saved file lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(string(text), "FwMark") {
		t.Errorf("saved file has the fwmark only the routes needed:\n%s", text)
	}
}

// TestTableName (C18): Table = NAME is looked up in the rt_tables files of
// Options.RTTables; the routes go to that table; a name not there stops Up
// before it does anything.
func TestTableName(t *testing.T) {
	leakcheck.Check(t)
	rt := filepath.Join(t.TempDir(), "rt_tables")
	os.WriteFile(rt, []byte("255 local\n254 main\n# ours\n200\tvpn\n"), 0o644)
	cfg := testConfig(t)
	cfg.Interface.TableName = "vpn"
	f := newFakes(-1)
	opts := f.options(t.TempDir())
	opts.RTTables = []string{rt}
	tun, err := lifecycle.Up(t.Context(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	host := f.nl.Dump()
	tun.Close()
	if !strings.Contains(host, "table 200") || strings.Contains(host, "lookup") {
		t.Errorf("with Table = vpn (200), routes are not in table 200 alone:\n%s", host)
	}

	cfg.Interface.TableName = "nosuch"
	f = newFakes(-1)
	opts = f.options(t.TempDir())
	opts.RTTables = []string{rt}
	if _, err := lifecycle.Up(t.Context(), cfg, opts); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("Up with an unknown table name = %v, want an error naming it", err)
	}
	if len(f.rec.log()) != 0 {
		t.Errorf("Up with an unknown table name did %q", f.rec.log())
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
