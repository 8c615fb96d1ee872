package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// rfc7748 is Alice's key pair from RFC 7748 section 6.1.
var rfc7748 = struct{ priv, pub string }{
	priv: "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
	pub:  "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
}

func hexToBase64(t testing.TB, s string) string {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func runCmd(t testing.TB, stdin string, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(stdin), &stdout, &stderr)
	return stdout.String(), err
}

func TestGenkeyGenpsk(t *testing.T) {
	for _, cmd := range []string{"genkey", "genpsk"} {
		t.Run(cmd, func(t *testing.T) {
			a, err := runCmd(t, "", cmd)
			if err != nil {
				t.Fatalf("%s: %v", cmd, err)
			}
			b, _ := runCmd(t, "", cmd)
			if len(a) != 45 || a[44] != '\n' {
				t.Fatalf("%s = %q, want 44 characters and a newline", cmd, a)
			}
			if a == b {
				t.Errorf("%s printed the same key twice: %q", cmd, a)
			}
			raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(a))
			if err != nil || len(raw) != 32 {
				t.Fatalf("%s = %q: not 32 bytes of base64 (%v)", cmd, a, err)
			}
			if cmd == "genkey" && (raw[0]&7 != 0 || raw[31]&0xc0 != 0x40) {
				t.Errorf("genkey = %q: not clamped", a)
			}
			if _, err := runCmd(t, "", cmd, "extra"); err == nil {
				t.Errorf("%s extra: got no error", cmd)
			}
		})
	}
}

func TestPubkey(t *testing.T) {
	priv := hexToBase64(t, rfc7748.priv)
	pub := hexToBase64(t, rfc7748.pub) + "\n"
	tests := []struct {
		name    string
		stdin   string
		want    string
		wantErr string
	}{
		{name: "rfc7748", stdin: priv + "\n", want: pub},
		{name: "no newline", stdin: priv, want: pub},
		{name: "crlf and spaces", stdin: "  " + priv + "\r\n", want: pub},
		{name: "empty", stdin: "", wantErr: "no key"},
		{name: "short", stdin: priv[:43] + "\n", wantErr: "44 base64"},
		{name: "long", stdin: priv + "A\n", wantErr: "44 base64"},
		{name: "bad base64", stdin: "!" + priv[1:] + "\n", wantErr: "base64"},
		{name: "hex", stdin: rfc7748.priv + "\n", wantErr: "44 base64"},
		{name: "huge", stdin: strings.Repeat("A", 1<<20), wantErr: "44 base64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := runCmd(t, tc.stdin, "pubkey")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("pubkey(%q) error = %v, want one containing %q", tc.stdin, err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("pubkey error %q spans several lines", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("pubkey(%q) = %q, %v, want %q", tc.stdin, got, err, tc.want)
			}
		})
	}
	if _, err := runCmd(t, priv, "pubkey", "extra"); err == nil {
		t.Errorf("pubkey extra: got no error")
	}
}

// TestKeysInteropWG checks that keys made by warren work in wg and the
// reverse.
func TestKeysInteropWG(t *testing.T) {
	wg, err := exec.LookPath("wg")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("wg not installed: %v", err)
		}
		t.Skip("wg not installed")
	}
	wgRun := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(wg, args...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("wg %v: %v", args, err)
		}
		return string(out)
	}
	for range 3 {
		ours, err := runCmd(t, "", "genkey")
		if err != nil {
			t.Fatal(err)
		}
		ourPub, err := runCmd(t, ours, "pubkey")
		if err != nil {
			t.Fatal(err)
		}
		if got := wgRun(ours, "pubkey"); got != ourPub {
			t.Errorf("wg pubkey of %q = %q, warren says %q", ours, got, ourPub)
		}
		theirs := wgRun("", "genkey")
		theirPub := wgRun(theirs, "pubkey")
		if got, err := runCmd(t, theirs, "pubkey"); err != nil || got != theirPub {
			t.Errorf("warren pubkey of %q = %q, %v, wg says %q", theirs, got, err, theirPub)
		}
		psk := wgRun("", "genpsk")
		if len(psk) != 45 {
			t.Errorf("wg genpsk = %q", psk)
		}
	}
	// An unclamped private key: wg and warren must agree on its public key.
	unclamped := "/" + strings.Repeat("A", 42) + "="
	if got, err := runCmd(t, unclamped, "pubkey"); err != nil || got != wgRun(unclamped, "pubkey") {
		t.Errorf("pubkey of unclamped %q = %q, %v, wg differs", unclamped, got, err)
	}
}
