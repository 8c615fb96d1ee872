package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"wg0", true}, {"a", true}, {"A-Z_a=z+0.9", true}, {"fifteen-chars-x", true},
		{"sixteen-chars-xx", false}, {"", false}, {".", false}, {"..", false}, {"...", true},
		{"wg 0", false}, {"wg/0", false}, {"wg\t0", false}, {"wg\n", false}, {"wg\v0", false}, {"wg\f0", false},
		{"wg\r0", false}, {"wg:0", false}, {"wg%d", false}, {"wg\x000", false}, {"wg\xa0", false},
		// The kernel's rule, not wg-quick's: anything else goes.
		{"wg@home", true}, {"vpn#1", true}, {"wgé", true}, {"wg\x01", true},
	}
	for _, tc := range tests {
		if got := ValidName(tc.name); got != tc.want {
			t.Errorf("ValidName(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestPathFor(t *testing.T) {
	tests := []struct {
		arg, path, name string
		wantErr         bool
	}{
		{arg: "wg0", path: "/etc/wireguard/wg0.conf", name: "wg0"},
		{arg: "home.vpn", path: "/etc/wireguard/home.vpn.conf", name: "home.vpn"},
		{arg: "wg0.conf", path: "wg0.conf", name: "wg0"},
		{arg: "./wg0.conf", path: "./wg0.conf", name: "wg0"},
		{arg: "/tmp/x/office.conf", path: "/tmp/x/office.conf", name: "office"},
		{arg: "/tmp/wg0", wantErr: true},              // a path, but not NAME.conf
		{arg: "/tmp/bad name.conf", wantErr: true},    // a path with an invalid name
		{arg: "sixteen-chars-xx", wantErr: true},      // too long for a name
		{arg: "wg 0", wantErr: true},                  // neither
		{arg: "", wantErr: true},                      // neither
		{arg: ".conf", wantErr: true},                 // empty name
		{arg: "sixteen-chars-xx.conf", wantErr: true}, // name too long
	}
	for _, tc := range tests {
		path, name, err := PathFor(tc.arg)
		if tc.wantErr {
			if err == nil {
				t.Errorf("PathFor(%q) = %q, %q, nil, want an error", tc.arg, path, name)
			}
			continue
		}
		if err != nil || path != tc.path || name != tc.name {
			t.Errorf("PathFor(%q) = %q, %q, %v, want %q, %q, nil", tc.arg, path, name, err, tc.path, tc.name)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	t.Run("good", func(t *testing.T) {
		c, err := Load(write("office.conf", minimal+"Address = 198.18.0.1/24\n"))
		if err != nil {
			t.Fatalf("Load() error = %v", err)
		}
		if c.Name != "office" || len(c.Interface.Addresses) != 1 {
			t.Errorf("Load() = %+v, want Name office and one address", c)
		}
	})
	t.Run("testdata", func(t *testing.T) {
		c, err := Load("testdata/wg0.conf")
		if err != nil {
			t.Fatalf("Load() error = %v", err)
		}
		roundTrip(t, c)
	})
	t.Run("mistake names the path", func(t *testing.T) {
		path := write("wg1.conf", minimal+"MTU = 1\n")
		_, err := Load(path)
		want := path + `:3: MTU: "1": invalid MTU: want 68-65535`
		if err == nil || err.Error() != want {
			t.Errorf("Load() error = %v, want %s", err, want)
		}
	})
	t.Run("invalid interface name", func(t *testing.T) {
		path := write("not a name.conf", minimal)
		_, err := Load(path)
		var e *Error
		if !errors.Is(err, ErrInterfaceName) || !errors.As(err, &e) || e.File != path {
			t.Errorf("Load() error = %v, want an *Error for %s wrapping ErrInterfaceName", err, path)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := Load(filepath.Join(dir, "absent.conf"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Load() error = %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		sub := filepath.Join(dir, "dir.conf")
		if err := os.Mkdir(sub, 0o700); err != nil {
			t.Fatal(err)
		}
		_, err := Load(sub)
		if err == nil || !strings.Contains(err.Error(), "dir.conf") {
			t.Errorf("Load() error = %v, want a read error naming dir.conf", err)
		}
	})
}
