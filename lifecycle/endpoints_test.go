package lifecycle_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/warrenvpn/warren/internal/leakcheck"
	"github.com/warrenvpn/warren/lifecycle"
)

// laterResolver fails every lookup until its name is published, as a
// hosts file or DNS not ready at boot would.
type laterResolver struct {
	mu      sync.Mutex
	addr    netip.Addr // zero: not resolvable yet
	lookups int
}

func (r *laterResolver) publish(a netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addr = a
}

func (r *laterResolver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lookups
}

func (r *laterResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lookups++
	if !r.addr.IsValid() {
		return nil, errors.New("no such host (not yet)")
	}
	return []netip.Addr{r.addr}, nil
}

// endpointOf returns the engine's endpoint of peer pk.
func endpointOf(t *testing.T, f *fakes, pk string) netip.AddrPort {
	t.Helper()
	for _, p := range controlState(t, f).Peers {
		if p.PublicKey.String() == pk {
			return p.Endpoint
		}
	}
	t.Fatalf("no peer %s", pk)
	return netip.AddrPort{}
}

// TestEndpointRetries (L25): a peer whose endpoint name does not resolve at Up
// does not stop the tunnel; the name is retried in the background (1 s,
// then a fifth more each time) and the peer gets its endpoint once the name
// resolves; with a retry limit the retries stop after it. The same holds
// for a peer a Reconfigure adds. Time is synctest's.
func TestEndpointRetries(t *testing.T) {
	leakcheck.Check(t)
	k := newReconfigureKeys(t)
	text := `[Interface]
PrivateKey = %s
Address = 198.19.0.1/24

[Peer]
PublicKey = %s
AllowedIPs = 198.19.1.0/24
Endpoint = later.test:51820
`
	cfg := parseConfig(t, text, k.iface, k.a)
	want := netip.MustParseAddrPort("198.18.0.7:51820")

	t.Run("resolves later", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFakes(-1)
			r := &laterResolver{}
			opts := f.options(t.TempDir())
			opts.Resolver = r
			tun, err := lifecycle.Up(t.Context(), cfg, opts)
			if err != nil {
				t.Fatalf("Up with an endpoint that does not resolve yet = %v, want success", err)
			}
			defer tun.Close()
			if ep := endpointOf(t, f, k.a.String()); ep.IsValid() {
				t.Fatalf("endpoint before the name resolves = %v, want none", ep)
			}
			// Retries at 1, 2.2 and 3.64 s fail; the name resolves at 5 s
			// and the retry at 5.37 s finds it.
			time.Sleep(5 * time.Second)
			synctest.Wait()
			if n := r.count(); n != 4 {
				t.Errorf("%d lookups in the first 5 s, want 4 (at 0, 1, 2.2 and 3.64 s)", n)
			}
			r.publish(want.Addr())
			time.Sleep(time.Second)
			synctest.Wait()
			if ep := endpointOf(t, f, k.a.String()); ep != want {
				t.Errorf("endpoint after the name resolves = %v, want %v", ep, want)
			}
			n := r.count()
			time.Sleep(time.Minute)
			synctest.Wait()
			if r.count() != n {
				t.Errorf("lookups go on after the name resolved")
			}
		})
	})

	t.Run("limit", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFakes(-1)
			r := &laterResolver{}
			opts := f.options(t.TempDir())
			opts.Resolver = r
			opts.EndpointRetries = 3
			tun, err := lifecycle.Up(t.Context(), cfg, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer tun.Close()
			time.Sleep(time.Hour)
			synctest.Wait()
			if n := r.count(); n != 4 {
				t.Errorf("%d lookups with 3 retries, want 4", n)
			}
		})
	})

	t.Run("reconfigure", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFakes(-1)
			r := &laterResolver{}
			opts := f.options(t.TempDir())
			opts.Resolver = r
			first := parseConfig(t, strings.Replace(text, "Endpoint = later.test:51820\n", "", 1), k.iface, k.a)
			tun, err := lifecycle.Up(t.Context(), first, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer tun.Close()
			if err := tun.Reconfigure(t.Context(), cfg); err != nil {
				t.Fatalf("Reconfigure with an endpoint that does not resolve yet = %v, want success", err)
			}
			r.publish(want.Addr())
			time.Sleep(2 * time.Second)
			synctest.Wait()
			if ep := endpointOf(t, f, k.a.String()); ep != want {
				t.Errorf("endpoint after the name resolves = %v, want %v", ep, want)
			}
		})
	})
}
