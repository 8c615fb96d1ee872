package lifecycle_test

import (
	"crypto/rand"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenvpn/warren/config"
	wgcrypto "github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/internal/leakcheck"
	"github.com/warrenvpn/warren/lifecycle"
	"github.com/warrenvpn/warren/uapi"
)

// reconfigureKeys are the keys of the reconfigure tests: the interface's
// and peers a to d.
type reconfigureKeys struct {
	iface      wgcrypto.PrivateKey
	a, b, c, d wgcrypto.PublicKey
}

func newReconfigureKeys(t testing.TB) reconfigureKeys {
	t.Helper()
	var ks [5]wgcrypto.PrivateKey
	for i := range ks {
		k, err := wgcrypto.NewPrivateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ks[i] = k
	}
	return reconfigureKeys{ks[0], ks[1].PublicKey(), ks[2].PublicKey(), ks[3].PublicKey(), ks[4].PublicKey()}
}

// parseConfig parses text, with %s replaced by the interface's private key.
func parseConfig(t testing.TB, text string, args ...any) *config.Config {
	t.Helper()
	cfg, err := config.Parse(testName+".conf", strings.NewReader(fmt.Sprintf(text, args...)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// controlState asks the tunnel's fake control socket for the engine's state.
func controlState(t *testing.T, f *fakes) *uapi.State {
	t.Helper()
	c, err := f.ctl.Load().dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := uapi.Get(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// controlSet applies a change through the tunnel's fake control socket, as
// `wg set` would.
func controlSet(t *testing.T, f *fakes, ch *uapi.Change) {
	t.Helper()
	c, err := f.ctl.Load().dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := uapi.Set(c, ch); err != nil {
		t.Fatal(err)
	}
}

// peerSummary renders the engine's peers without timing and counters.
func peerSummary(s *uapi.State) []string {
	var out []string
	for _, p := range s.Peers {
		ips := make([]string, 0, len(p.AllowedIPs))
		for _, a := range p.AllowedIPs {
			ips = append(ips, a.String())
		}
		slices.Sort(ips)
		out = append(out, fmt.Sprintf("%s psk=%v endpoint=%v keepalive=%d ips=%s",
			p.PublicKey, !p.PresharedKey.IsZero(), p.Endpoint, p.PersistentKeepalive, strings.Join(ips, ",")))
	}
	slices.Sort(out)
	return out
}

// TestReconfigure (L14, L23): Reconfigure applies the difference between two
// configurations. Peers removed, added and changed reach the engine;
// routes, addresses and the MTU reach the host, which ends up as Up with the
// new configuration leaves it; a peer that did not change is not touched
// (its roamed endpoint stays). A host failure leaves engine and host as
// they were.
func TestReconfigure(t *testing.T) {
	leakcheck.Check(t)
	k := newReconfigureKeys(t)
	before := parseConfig(t, `[Interface]
PrivateKey = %s
ListenPort = 51820
Address = 198.19.0.1/24

[Peer]
PublicKey = %s
AllowedIPs = 198.19.1.0/24
Endpoint = 198.18.0.2:51820

[Peer]
PublicKey = %s
AllowedIPs = 198.19.2.0/24

[Peer]
PublicKey = %s
AllowedIPs = 198.19.3.0/24
`, k.iface, k.a, k.b, k.d)
	after := parseConfig(t, `[Interface]
PrivateKey = %s
ListenPort = 51820
Address = 198.19.0.1/24, fd00:7761:1::1/64
MTU = 1380

[Peer]
PublicKey = %s
AllowedIPs = 198.19.1.0/24
Endpoint = 198.18.0.2:51820

[Peer]
PublicKey = %s
AllowedIPs = 198.19.4.0/24, fd00:7761:4::/64
Endpoint = 198.18.0.4:51820
PersistentKeepalive = 25

[Peer]
PublicKey = %s
AllowedIPs = 198.19.3.0/24, 198.19.5.0/24
`, k.iface, k.a, k.c, k.d)

	// What Up with the new configuration gives, engine and host.
	wantF := newFakes(-1)
	wantTun, err := lifecycle.Up(t.Context(), after, wantF.options(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	wantHost := wantF.nl.Dump()
	wantPeers := peerSummary(controlState(t, wantF))
	if err := wantTun.Close(); err != nil {
		t.Fatal(err)
	}

	t.Run("applied", func(t *testing.T) {
		f := newFakes(-1)
		pristine := f.nl.Dump()
		dir := t.TempDir()
		tun, err := lifecycle.Up(t.Context(), before, f.options(dir))
		if err != nil {
			t.Fatal(err)
		}
		// Peer a roams: Reconfigure must not put it back.
		roamed := netip.MustParseAddrPort("198.18.0.9:4242")
		controlSet(t, f, &uapi.Change{Peers: []uapi.PeerChange{{PublicKey: k.a, UpdateOnly: true, Endpoint: &roamed}}})
		if err := tun.Reconfigure(t.Context(), after); err != nil {
			t.Fatalf("Reconfigure: %v", err)
		}
		if got := f.nl.Dump(); got != wantHost {
			t.Errorf("host after Reconfigure (-got +want):\n%s", cmp.Diff(got, wantHost))
		}
		want := slices.Clone(wantPeers)
		for i, p := range want {
			if strings.HasPrefix(p, k.a.String()) {
				want[i] = strings.Replace(p, "198.18.0.2:51820", roamed.String(), 1)
			}
		}
		slices.Sort(want)
		if diff := cmp.Diff(peerSummary(controlState(t, f)), want); diff != "" {
			t.Errorf("engine peers after Reconfigure (-got +want):\n%s", diff)
		}
		if tun.Config() != after {
			t.Error("Config() is not the configuration Reconfigure applied")
		}
		if err := tun.Close(); err != nil {
			t.Fatal(err)
		}
		checkClean(t, f, dir, pristine)
		if err := tun.Reconfigure(t.Context(), before); err != lifecycle.ErrClosed {
			t.Errorf("Reconfigure after Close = %v, want ErrClosed", err)
		}
	})

	t.Run("host fails", func(t *testing.T) {
		f := newFakes(-1)
		dir := t.TempDir()
		tun, err := lifecycle.Up(t.Context(), before, f.options(dir))
		if err != nil {
			t.Fatal(err)
		}
		defer tun.Close()
		host, peers := f.nl.Dump(), peerSummary(controlState(t, f))
		// The first host call of Reconfigure fails.
		f.rec.mu.Lock()
		f.rec.failAt = f.rec.calls
		f.rec.mu.Unlock()
		if err := tun.Reconfigure(t.Context(), after); err == nil {
			t.Fatal("Reconfigure with a failing host = nil, want an error")
		}
		if got := f.nl.Dump(); got != host {
			t.Errorf("host after a failed Reconfigure (-got +want):\n%s", cmp.Diff(got, host))
		}
		if diff := cmp.Diff(peerSummary(controlState(t, f)), peers); diff != "" {
			t.Errorf("engine peers after a failed Reconfigure (-got +want):\n%s", diff)
		}
		if tun.Config() != before {
			t.Error("Config() changed by a failed Reconfigure")
		}
	})
}
