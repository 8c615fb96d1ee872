package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/warrenvpn/warren/config"
	wgcrypto "github.com/warrenvpn/warren/crypto"
)

// TestSaveConfigRoundTrip (C18): with SaveConfig = true, a peer added at run
// time with `wg set` is in the file when warren up goes down, which is
// rewritten with mode 0600 and parses back with the file's own keys.
func TestSaveConfigRoundTrip(t *testing.T) {
	wg := requireTool(t, "wg")
	p := newTestPair(t)
	conf := strings.Replace(demoConfig(p.keys[0], p.keys[1].PublicKey(), 0, p.underlay(1)), "[Peer]", "SaveConfig = true\nPostUp = true %i\n\n[Peer]", 1)
	pr := p.startUp(t, 0, conf, nil)
	pr.waitLog(t, " msg=up ")
	k, err := wgcrypto.NewPrivateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := nsRun(p, 0, wg, "set", p.names[0], "peer", k.PublicKey().String(), "allowed-ips", "198.19.44.0/24"); err != nil {
		t.Fatalf("wg set: %v\n%s", err, out)
	}
	pr.cmd.Process.Signal(syscall.SIGTERM)
	if code := pr.exit(t); code != 0 {
		t.Fatalf("exit status %d, want 0:\n%s", code, pr.log)
	}
	path := filepath.Join(p.dir, p.names[0]+".conf")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("saved file mode %v, want 0600", st.Mode().Perm())
	}
	saved, err := config.Load(path)
	if err != nil {
		t.Fatalf("saved file does not parse: %v", err)
	}
	if len(saved.Peers) != 2 || saved.Peers[1].PublicKey != k.PublicKey() || !saved.Interface.SaveConfig ||
		len(saved.Interface.PostUp) != 1 || saved.Interface.ListenPort != demoPort {
		b, _ := os.ReadFile(path)
		t.Errorf("saved file lacks the added peer or the file's own keys:\n%s", b)
	}
}

// TestWorldAccessibleWarning (C18): wg-quick's warning when others may read the
// config file (through its directory too), and none otherwise.
func TestWorldAccessibleWarning(t *testing.T) {
	for _, tc := range []struct {
		file, dir os.FileMode
		warn      bool
	}{{0o644, 0o755, true}, {0o600, 0o755, false}, {0o644, 0o750, false}, {0o640, 0o755, false}} {
		dir := filepath.Join(t.TempDir(), "d")
		os.Mkdir(dir, 0o700)
		path := filepath.Join(dir, "wg0.conf")
		os.WriteFile(path, nil, 0o600)
		os.Chmod(path, tc.file)
		os.Chmod(dir, tc.dir)
		var b bytes.Buffer
		warnWorldAccessible(path, &b)
		want := ""
		if tc.warn {
			want = fmt.Sprintf("Warning: `%s' is world accessible\n", path)
		}
		if b.String() != want {
			t.Errorf("file %v in dir %v: %q, want %q", tc.file, tc.dir, b.String(), want)
		}
	}
}
