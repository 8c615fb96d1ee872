package lifecycle_test

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"math/bits"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	wgcrypto "github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/device/tun/tuntest"
	"github.com/warrenvpn/warren/internal/leakcheck"
	"github.com/warrenvpn/warren/lifecycle"
	"github.com/warrenvpn/warren/transport/transporttest"
	"github.com/warrenvpn/warren/tunnel"
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
		for _, tc := range []struct {
			name           string
			reresolveAfter time.Duration
			keys           string // [Interface] lines, which override the options
			want           int
		}{
			// The 3 retries end 3.64 s after start; the name is then
			// looked up every minute (DefaultReresolveMax): at 63.64 s,
			// 123.64 s...
			{"following", 0, "", 4 + 59},
			{"following off", -1, "", 4},
			// ... or every 2 minutes: 3.64 + 120k s up to an hour.
			{"ReresolveMax = 120", 0, "ReresolveMax = 120\n", 4 + 29},
			{"ReresolveAfter = off", 0, "ReresolveAfter = off\n", 4},
		} {
			t.Run(tc.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					f := newFakes(-1)
					r := &laterResolver{}
					opts := f.options(t.TempDir())
					opts.Resolver = r
					opts.EndpointRetries = 3
					opts.ReresolveAfter = tc.reresolveAfter
					cfg := parseConfig(t, strings.Replace(text, "[Interface]\n", "[Interface]\n"+tc.keys, 1), k.iface, k.a)
					tun, err := lifecycle.Up(t.Context(), cfg, opts)
					if err != nil {
						t.Fatal(err)
					}
					defer tun.Close()
					time.Sleep(time.Hour)
					synctest.Wait()
					if n := r.count(); n != tc.want {
						t.Errorf("%d lookups in an hour with 3 retries, want %d", n, tc.want)
					}
				})
			})
		}
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

// nameServer is a resolver whose answers the test changes: addresses per
// name (none: an empty answer), or a failure for every name. It records
// when it was asked.
type nameServer struct {
	mu    sync.Mutex
	addrs map[string][]netip.Addr
	err   error
	asked []time.Time
}

func (r *nameServer) set(host string, addrs ...netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.addrs == nil {
		r.addrs = make(map[string][]netip.Addr)
	}
	r.addrs[host] = addrs
	r.err = nil
}

func (r *nameServer) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

// times returns when the resolver was asked, since the last call.
func (r *nameServer) times() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.asked
	r.asked = nil
	return t
}

func (r *nameServer) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked = append(r.asked, time.Now())
	if r.err != nil {
		return nil, r.err
	}
	return r.addrs[host], nil
}

// bubbleClock is the engine's clock read from time.Now, so that under
// synctest the engine's timers and handshake ages run on the bubble's
// clock, as the re-resolution does.
type bubbleClock struct{ origin time.Time }

func (c bubbleClock) Now() time.Duration { return time.Since(c.origin) }
func (c bubbleClock) Wall() time.Time    { return time.Now() }

// syncBuffer is a log sink safe to read while the tunnel writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// dynPair is a client whose peer's Endpoint is the name server.test, and
// that server, brought up by lifecycle.Up on one in-memory network under
// synctest, on the bubble's clock.
type dynPair struct {
	cli, srv       *fakes
	cliTun         *lifecycle.Tunnel
	srvKey         wgcrypto.PublicKey
	names          *nameServer
	log            *syncBuffer
	innerC, innerS netip.Addr
}

const dynName = "server.test"

// newDynPair brings the pair up: the server listens at srvAddr:51820, the
// client at cliAddr, and the name gives srvAddr. opts, if set, adjusts the
// client's options.
func newDynPair(t *testing.T, cliAddr, srvAddr netip.Addr, opts func(*lifecycle.Options)) *dynPair {
	t.Helper()
	cliKey, err := wgcrypto.NewPrivateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := wgcrypto.NewPrivateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	network := transporttest.NewNetwork(transporttest.Config{})
	p := &dynPair{
		srvKey: srvKey.PublicKey(), names: &nameServer{}, log: &syncBuffer{},
		innerC: netip.MustParseAddr("198.19.0.1"), innerS: netip.MustParseAddr("198.19.0.2"),
	}
	p.names.set(dynName, srvAddr)
	clock := bubbleClock{time.Now()}
	var last *lifecycle.Tunnel
	up := func(addr netip.Addr, text string, args []any, adjust func(*lifecycle.Options)) *fakes {
		f := newFakes(-1)
		o := f.options(t.TempDir())
		o.Clock = clock
		o.Listen = func(port uint16, mark uint32) (tunnel.Transport, error) {
			tr, err := network.NewTransport(netip.AddrPortFrom(addr, port))
			if err != nil {
				return nil, err
			}
			ft := &fakeTransport{Transport: tr, f: f}
			f.tr.Store(ft)
			return ft, nil
		}
		if adjust != nil {
			adjust(&o)
		}
		tun, err := lifecycle.Up(t.Context(), parseConfig(t, text, args...), o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tun.Close() })
		last = tun
		return f
	}
	p.srv = up(srvAddr, `[Interface]
PrivateKey = %s
Address = 198.19.0.2/24
ListenPort = 51820

[Peer]
PublicKey = %s
AllowedIPs = 198.19.0.1/32
`, []any{srvKey, cliKey.PublicKey()}, nil)
	p.cli = up(cliAddr, `[Interface]
PrivateKey = %s
Address = 198.19.0.1/24

[Peer]
PublicKey = %s
AllowedIPs = 198.19.0.2/32
Endpoint = `+dynName+`:51820
`, []any{cliKey, srvKey.PublicKey()}, func(o *lifecycle.Options) {
		o.Resolver = p.names
		o.Logger = slog.New(slog.NewTextHandler(p.log, &slog.HandlerOptions{Level: slog.LevelInfo}))
		if opts != nil {
			opts(o)
		}
	})
	p.cliTun = last
	return p
}

// deliver sends a packet from one side's inner address to the other's
// every second until the other side's TUN gets one, and returns how long
// that took; past within it fails t.
func deliver(t *testing.T, from, to *fakes, src, dst netip.Addr, within time.Duration) time.Duration {
	t.Helper()
	synctest.Wait()
	for drained := false; !drained; {
		select {
		case <-to.adapter.Load().Written():
		default:
			drained = true
		}
	}
	pkt := tuntest.UDPPacket(netip.AddrPortFrom(src, 1000), netip.AddrPortFrom(dst, 2000), []byte("ping"))
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if err := from.adapter.Load().Inject(pkt); err != nil {
			t.Fatal(err)
		}
		select {
		case <-to.adapter.Load().Written():
			d := time.Since(start)
			synctest.Wait() // what led to the packet, logs included, is done
			return d
		case <-tick.C:
			if d := time.Since(start); d > within {
				t.Fatalf("no packet from %v to %v through the tunnel in %v", src, dst, d)
			}
		}
	}
}

// TestEndpointFollowsName (RO11): the server a client names moves to
// another address and the name follows; the client's endpoint follows
// once its handshake is older than 135 s, and traffic resumes within 3
// minutes of the move, over IPv4 and IPv6. Time is synctest's.
func TestEndpointFollowsName(t *testing.T) {
	leakcheck.Check(t)
	for _, tc := range []struct {
		name                string
		client, server, new netip.Addr
	}{
		{"ipv4", netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.3")},
		{"ipv6", netip.MustParseAddr("fd00:7761::1"), netip.MustParseAddr("fd00:7761::2"), netip.MustParseAddr("fd00:7761::3")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newDynPair(t, tc.client, tc.server, nil)
				deliver(t, p.cli, p.srv, p.innerC, p.innerS, 10*time.Second)
				// The server's passive keepalive goes out 10 s after the data;
				// after that the server sends nothing of its own, so only the
				// name can tell the client where it went.
				time.Sleep(15 * time.Second)
				if err := p.srv.tr.Load().Move(netip.AddrPortFrom(tc.new, 51820)); err != nil {
					t.Fatal(err)
				}
				p.names.set(dynName, tc.new)
				took := deliver(t, p.cli, p.srv, p.innerC, p.innerS, 3*time.Minute)
				t.Logf("traffic resumed %v after the move", took)
				if took < 100*time.Second {
					t.Errorf("traffic resumed %v after the move, before the handshake was old: something else than the name moved it", took)
				}
				want := netip.AddrPortFrom(tc.new, 51820)
				if ep := endpointOf(t, p.cli, p.srvKey.String()); ep != want {
					t.Errorf("client's endpoint after the move = %v, want %v", ep, want)
				}
				if !strings.Contains(p.log.String(), `msg="endpoint name gives a new address; peer moved"`) {
					t.Errorf("no line about the move in the log:\n%s", p.log)
				}
			})
		})
	}
}

// TestEndpointNameKeepsRoamedPeer (RO12): a peer that roams to another
// address by an authenticated packet keeps it over its name's answer while
// its session is fresh (younger than Reject-After-Time), even once the
// handshake is older than 135 s; after that the name wins again.
func TestEndpointNameKeepsRoamedPeer(t *testing.T) {
	leakcheck.Check(t)
	synctest.Test(t, func(t *testing.T) {
		srvAddr, roamed := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.3")
		p := newDynPair(t, netip.MustParseAddr("198.18.0.1"), srvAddr, nil)
		start := time.Now()
		deliver(t, p.cli, p.srv, p.innerC, p.innerS, 10*time.Second)
		time.Sleep(15 * time.Second)
		if err := p.srv.tr.Load().Move(netip.AddrPortFrom(roamed, 51820)); err != nil {
			t.Fatal(err)
		}
		deliver(t, p.srv, p.cli, p.innerS, p.innerC, time.Second)
		want := netip.AddrPortFrom(roamed, 51820)
		if ep := endpointOf(t, p.cli, p.srvKey.String()); ep != want {
			t.Fatalf("client's endpoint after the server's packet from %v = %v, want it", want, ep)
		}

		time.Sleep(170*time.Second - time.Since(start))
		synctest.Wait()
		if n := len(p.names.times()); n == 0 {
			t.Error("the name was not looked up once the handshake was older than 135 s")
		}
		if ep := endpointOf(t, p.cli, p.srvKey.String()); ep != want {
			t.Errorf("170 s after the handshake, endpoint = %v, want the roamed %v (its session is fresh)", ep, want)
		}
		if !strings.Contains(p.log.String(), "the peer roamed there by an authenticated packet and its session is fresh; keeping its endpoint") {
			t.Errorf("no line about keeping the roamed endpoint:\n%s", p.log)
		}

		time.Sleep(250*time.Second - time.Since(start))
		synctest.Wait()
		if ep, want := endpointOf(t, p.cli, p.srvKey.String()), netip.AddrPortFrom(srvAddr, 51820); ep != want {
			t.Errorf("250 s after the handshake (its session expired), endpoint = %v, want the name's %v", ep, want)
		}
	})
}

// TestEndpointNameFailures (RO13): while the name fails or answers with no
// address, the endpoint stays; the look-ups back off from 5 s, doubling, to
// at most Options.ReresolveMax; each failure is not logged, only the 1st,
// 2nd, 4th...; once the name gives a new address, the peer follows within
// ReresolveMax.
func TestEndpointNameFailures(t *testing.T) {
	leakcheck.Check(t)
	synctest.Test(t, func(t *testing.T) {
		const maxDelay = 20 * time.Second
		srvAddr := netip.MustParseAddr("198.18.0.2")
		p := newDynPair(t, netip.MustParseAddr("198.18.0.1"), srvAddr, func(o *lifecycle.Options) { o.ReresolveMax = maxDelay })
		start := time.Now()
		deliver(t, p.cli, p.srv, p.innerC, p.innerS, 10*time.Second)
		p.names.times()
		p.names.fail(errors.New("server misbehaving"))
		time.Sleep(5 * time.Minute)
		p.names.set(dynName) // an empty answer
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		want := netip.AddrPortFrom(srvAddr, 51820)
		if ep := endpointOf(t, p.cli, p.srvKey.String()); ep != want {
			t.Errorf("endpoint after 10 minutes of failing and empty answers = %v, want %v", ep, want)
		}
		asked := p.names.times()
		if len(asked) == 0 || asked[0].Sub(start) < 135*time.Second {
			t.Fatalf("look-ups at %v, want the first 135 s after the handshake", asked)
		}
		var gaps []time.Duration
		for i := 1; i < len(asked); i++ {
			gaps = append(gaps, asked[i].Sub(asked[i-1]).Round(time.Millisecond))
		}
		wantGaps := []time.Duration{5 * time.Second, 10 * time.Second}
		for len(wantGaps) < len(gaps) {
			wantGaps = append(wantGaps, maxDelay)
		}
		if !slices.Equal(gaps, wantGaps) {
			t.Errorf("delays between look-ups = %v, want %v", gaps, wantGaps)
		}
		if n, want := strings.Count(p.log.String(), "endpoint name does not resolve; keeping the endpoint"), bits.Len(uint(len(asked))); n != want {
			t.Errorf("%d lines about %d failures, want %d (the 1st, 2nd, 4th...):\n%s", n, len(asked), want, p.log)
		}

		if err := p.srv.tr.Load().Move(netip.AddrPortFrom(netip.MustParseAddr("198.18.0.3"), 51820)); err != nil {
			t.Fatal(err)
		}
		p.names.set(dynName, netip.MustParseAddr("198.18.0.3"))
		if took := deliver(t, p.cli, p.srv, p.innerC, p.innerS, maxDelay+5*time.Second); took > maxDelay+5*time.Second {
			t.Errorf("traffic resumed %v after the name gave the new address, want within %v", took, maxDelay)
		}
		if !strings.Contains(p.log.String(), `msg="endpoint name gives a new address; peer moved"`) {
			t.Errorf("no line about the move in the log:\n%s", p.log)
		}
	})
}

// TestEndpointNameNoHandshake: a peer that never completes a handshake has
// its name looked up again 135 s after it was resolved, and follows it; a
// reload that names another host follows the new name only.
func TestEndpointNameNoHandshake(t *testing.T) {
	leakcheck.Check(t)
	k := newReconfigureKeys(t)
	text := `[Interface]
PrivateKey = %s
Address = 198.19.0.1/24

[Peer]
PublicKey = %s
AllowedIPs = 198.19.1.0/24
Endpoint = %s:51820
`
	at := func(s string) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr(s), 51820) }
	synctest.Test(t, func(t *testing.T) {
		f := newFakes(-1)
		names := &nameServer{}
		names.set("a.test", at("198.18.0.2").Addr())
		names.set("b.test", at("198.18.0.3").Addr())
		opts := f.options(t.TempDir())
		opts.Resolver = names
		opts.Clock = bubbleClock{time.Now()}
		tun, err := lifecycle.Up(t.Context(), parseConfig(t, text, k.iface, k.a, "a.test"), opts)
		if err != nil {
			t.Fatal(err)
		}
		defer tun.Close()
		names.set("a.test", at("198.18.0.4").Addr())
		time.Sleep(134 * time.Second)
		synctest.Wait()
		if ep := endpointOf(t, f, k.a.String()); ep != at("198.18.0.2") {
			t.Errorf("endpoint 134 s after start = %v, want 198.18.0.2:51820 still", ep)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if ep := endpointOf(t, f, k.a.String()); ep != at("198.18.0.4") {
			t.Errorf("endpoint 136 s after start, without a handshake = %v, want a.test's new 198.18.0.4:51820", ep)
		}

		if err := tun.Reconfigure(t.Context(), parseConfig(t, text, k.iface, k.a, "b.test")); err != nil {
			t.Fatal(err)
		}
		if ep := endpointOf(t, f, k.a.String()); ep != at("198.18.0.3") {
			t.Errorf("endpoint after the reload to b.test = %v, want 198.18.0.3:51820", ep)
		}
		names.set("a.test", at("198.18.0.5").Addr())
		names.set("b.test", at("198.18.0.6").Addr())
		time.Sleep(140 * time.Second)
		synctest.Wait()
		if ep := endpointOf(t, f, k.a.String()); ep != at("198.18.0.6") {
			t.Errorf("endpoint 140 s after the reload = %v, want b.test's new 198.18.0.6:51820", ep)
		}
	})
}

// TestEndpointNameSaved: the running configuration SaveConfig writes keeps
// a followed endpoint name, not the address it gives now, so that the
// next start follows the name too.
func TestEndpointNameSaved(t *testing.T) {
	leakcheck.Check(t)
	synctest.Test(t, func(t *testing.T) {
		p := newDynPair(t, netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"), nil)
		deliver(t, p.cli, p.srv, p.innerC, p.innerS, 10*time.Second)
		if err := p.srv.tr.Load().Move(netip.MustParseAddrPort("198.18.0.3:51820")); err != nil {
			t.Fatal(err)
		}
		p.names.set(dynName, netip.MustParseAddr("198.18.0.3"))
		deliver(t, p.cli, p.srv, p.innerC, p.innerS, 3*time.Minute)
		cfg := p.cliTun.RunningConfig()
		if got, want := cfg.Peers[0].Endpoint, dynName+":51820"; got != want {
			t.Errorf("RunningConfig's Endpoint after the name moved = %q, want %q", got, want)
		}
	})
}
