package main

import (
	"crypto/rand"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
	"github.com/warrenvpn/warren/uapi"
	"github.com/warrenvpn/warren/uapi/uapitest"
)

// TestShowMatchesWG serves a device on a control socket in wg's directory
// and checks that `warren show NAME [VIEW]` prints what `wg show NAME
// [VIEW]` prints for it, byte for byte (warren's drop lines aside): sizes,
// times, peer order and every view.
func TestShowMatchesWG(t *testing.T) {
	netlabtest.RequireRoot(t) // wg reads sockets in /var/run/wireguard only
	wg := requireBinary(t, "wg")
	t.Setenv("WG_HIDE_KEYS", "")
	t.Setenv("WG_COLOR_MODE", "never")

	var tag [3]byte
	rand.Read(tag[:])
	name := fmt.Sprintf("wtshow%x", tag)
	dev := &uapitest.Device{}
	key := func(s string) crypto.PublicKey {
		k, err := crypto.ParsePublicKeyHex(s)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	priv, _ := crypto.ParsePrivateKeyHex(uapitest.KeyA)
	pubB, pubC, pubD := key(uapitest.KeyB), key(uapitest.KeyC), key(uapitest.KeyN(4))
	port, mark, keepalive := uint16(51820), uint32(0xca6c), uint16(25)
	psk := crypto.PresharedKey{7}
	epB, epD := netip.MustParseAddrPort("198.18.0.2:51821"), netip.MustParseAddrPort("[fd00:7761::2]:51822")
	err := dev.Apply(&uapi.Change{PrivateKey: &priv, ListenPort: &port, FwMark: &mark, Peers: []uapi.PeerChange{
		{PublicKey: pubC}, // never handshaked: listed last by wg
		{PublicKey: pubD, Endpoint: &epD, AllowedIPs: []uapi.AllowedIPChange{{Prefix: netip.MustParsePrefix("fd00:7761:4::/48")}}},
		{PublicKey: pubB, PresharedKey: &psk, Endpoint: &epB, PersistentKeepalive: &keepalive, AllowedIPs: []uapi.AllowedIPChange{
			{Prefix: netip.MustParsePrefix("198.19.0.2/32")}, {Prefix: netip.MustParsePrefix("fd00:7761:1::2/128")}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	dev.SetStats(pubB, 17808052, 1372, now.Add(-66*time.Second))
	dev.SetStats(pubD, 3<<40+5, 1023, now.Add(-(2*24*time.Hour + time.Hour + 5*time.Second)))
	dev.SetDrops(uapi.Drop{Reason: "no_route", Count: 3})

	l, err := uapi.Listen(name)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- uapi.NewServer(dev, nil).Serve(l) }()
	t.Cleanup(func() {
		l.Close()
		<-done
	})

	for _, view := range append([]string{""}, showViews...) {
		t.Run("view "+view, func(t *testing.T) {
			args := []string{"show", name}
			if view != "" {
				args = append(args, view)
			}
			// The handshake ages are read from the clock by each command: on a
			// second boundary they may differ by one, so try again.
			var got, want string
			for range 3 {
				out, err := exec.Command(wg, args...).Output()
				if err != nil {
					t.Fatalf("wg %s: %v", strings.Join(args, " "), err)
				}
				want = string(out)
				stdout, stderr, code := runMain(t, args...)
				if code != exitOK {
					t.Fatalf("warren %s: status %d: %s", strings.Join(args, " "), code, stderr)
				}
				got = withoutDrops(stdout)
				if got == want {
					return
				}
			}
			t.Errorf("warren %s prints\n%s\nwg prints\n%s", strings.Join(args, " "), got, want)
		})
	}
}

// withoutDrops removes warren's drop lines, which wg does not print.
func withoutDrops(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if !strings.HasPrefix(line, "  dropped packets:") && !strings.HasPrefix(line, "    ") {
			b.WriteString(line)
		}
	}
	return b.String()
}
