package lifecycle_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"

	wgcrypto "github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/internal/leakcheck"
	"github.com/warrenvpn/warren/internal/netlab"
	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
	"github.com/warrenvpn/warren/lifecycle"
	"github.com/warrenvpn/warren/uapi"
)

// dnsServer is a tiny authoritative name server on the test's loopback: it
// answers A and AAAA questions from a table the test changes, with a TTL of
// 0, and a question for a name it does not hold with no answer.
type dnsServer struct {
	conn *net.UDPConn
	done chan struct{}

	mu    sync.Mutex
	addrs map[string][]netip.Addr // by lower-case name with the final dot
}

// startDNS starts a dnsServer on 127.0.0.1 and stops it in t.Cleanup.
func startDNS(t testing.TB) *dnsServer {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &dnsServer{conn: c, done: make(chan struct{}), addrs: make(map[string][]netip.Addr)}
	go s.serve()
	t.Cleanup(func() {
		c.Close()
		<-s.done
	})
	return s
}

// set makes name (without the final dot) answer addrs.
func (s *dnsServer) set(name string, addrs ...netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addrs[strings.ToLower(name)+"."] = addrs
}

// resolver returns a Go resolver that asks s whatever server
// /etc/resolv.conf names.
func (s *dnsServer) resolver() *net.Resolver {
	addr := s.conn.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", addr)
	}}
}

func (s *dnsServer) serve() {
	defer close(s.done)
	buf := make([]byte, 1500)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if resp, err := s.answer(buf[:n]); err == nil {
			s.conn.WriteToUDPAddrPort(resp, from)
		}
	}
}

// answer builds the reply to the query req.
func (s *dnsServer) answer(req []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(req)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{
		ID: h.ID, Response: true, Authoritative: true,
		RecursionDesired: h.RecursionDesired, RecursionAvailable: true,
	})
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	addrs := s.addrs[strings.ToLower(q.Name.String())]
	s.mu.Unlock()
	rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET}
	for _, a := range addrs {
		switch {
		case a.Is4() && q.Type == dnsmessage.TypeA:
			err = b.AResource(rh, dnsmessage.AResource{A: a.As4()})
		case a.Is6() && q.Type == dnsmessage.TypeAAAA:
			err = b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
		if err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

// upIn brings cfg up with lifecycle.Up inside ns, with its control socket and
// run directory in temporary directories, and closes it in t.Cleanup.
func upIn(t *testing.T, ns *netlab.Namespace, cfg string, opts lifecycle.Options) {
	t.Helper()
	ctlDir := t.TempDir()
	opts.RunDir = t.TempDir()
	opts.ListenControl = func(name string) (net.Listener, error) {
		l, err := uapi.ListenDir(ctlDir, name)
		if err != nil {
			return nil, err
		}
		return l, nil
	}
	var tun *lifecycle.Tunnel
	err := ns.Do(func() error {
		var err error
		tun, err = lifecycle.Up(t.Context(), parseConfig(t, "%s", cfg), opts)
		return err
	})
	if err != nil {
		t.Fatalf("up in %s: %v", ns.Name(), err)
	}
	t.Cleanup(func() {
		if err := tun.Close(); err != nil {
			t.Errorf("close in %s: %v", ns.Name(), err)
		}
	})
}

// udpEcho answers every datagram to addr in ns with itself until t ends.
func udpEcho(t *testing.T, ns *netlab.Namespace, addr netip.AddrPort) {
	t.Helper()
	var c *net.UDPConn
	if err := ns.Do(func() error {
		var err error
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			c.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	t.Cleanup(func() {
		c.Close()
		<-done
	})
}

// echoWithin sends a datagram from ns to the echo at to every 100 ms until
// one comes back, and returns how long that took; past within it fails t.
func echoWithin(t *testing.T, ns *netlab.Namespace, to netip.AddrPort, within time.Duration) time.Duration {
	t.Helper()
	var c *net.UDPConn
	if err := ns.Do(func() error {
		var err error
		c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	buf := make([]byte, 64)
	for time.Since(start) < within {
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, err := c.Read(buf); err == nil && string(buf[:n]) == "ping" {
			return time.Since(start)
		}
	}
	t.Fatalf("no echo from %v through the tunnel in %v", to, within)
	return 0
}

// TestEndpointFollowsNameRoot (RO11, root): two warren ends in namespaces;
// the client names the server by a host name that a name server on the
// test's loopback answers (written with dnsmessage and reached through an
// injected net.Resolver, the Go resolver's real DNS path). The server's
// underlay address is replaced by another and the name updated: traffic
// through the tunnel resumes, with ReresolveAfter shortened to 1 s. Over
// an IPv4 and an IPv6 underlay.
func TestEndpointFollowsNameRoot(t *testing.T) {
	for _, tc := range []struct {
		name string
		old  func(*netlab.Lab) netip.Prefix
		new  netip.Prefix
	}{
		{"ipv4", func(l *netlab.Lab) netip.Prefix { return l.AddrB }, netip.MustParsePrefix("198.18.0.3/24")},
		{"ipv6", func(l *netlab.Lab) netip.Prefix { return l.Addr6B }, netip.MustParsePrefix("fd00:7761::3/64")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leakcheck.Check(t)
			lab := netlabtest.NewLab(t, 0)
			dns := startDNS(t)
			const name = "server.warren.test"
			old := tc.old(lab)
			dns.set(name, old.Addr())

			cliKey, err := wgcrypto.NewPrivateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			srvKey, err := wgcrypto.NewPrivateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			upIn(t, lab.B, `[Interface]
PrivateKey = `+srvKey.String()+`
Address = 198.19.0.2/24
ListenPort = 51820

[Peer]
PublicKey = `+cliKey.PublicKey().String()+`
AllowedIPs = 198.19.0.1/32
`, lifecycle.Options{})
			log := &syncBuffer{}
			upIn(t, lab.A, `[Interface]
PrivateKey = `+cliKey.String()+`
Address = 198.19.0.1/24

[Peer]
PublicKey = `+srvKey.PublicKey().String()+`
AllowedIPs = 198.19.0.2/32
Endpoint = `+name+`:51820
`, lifecycle.Options{
				Resolver:       dns.resolver(),
				ReresolveAfter: time.Second,
				ReresolveMax:   200 * time.Millisecond,
				Logger:         slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelInfo})),
			})
			echo := netip.MustParseAddrPort("198.19.0.2:7")
			udpEcho(t, lab.B, echo)
			echoWithin(t, lab.A, echo, 5*time.Second)

			// The server's underlay address changes, then its name. The
			// new IPv4 address is in the old one's subnet, so it must be
			// promoted when the old one goes, not removed with it.
			if err := lab.B.Do(func() error {
				return os.WriteFile("/proc/sys/net/ipv4/conf/"+lab.LinkB+"/promote_secondaries", []byte("1"), 0o644)
			}); err != nil {
				t.Fatal(err)
			}
			h := lab.B.Handle()
			link, err := h.LinkByName(lab.LinkB)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.AddrAdd(link, &netlink.Addr{IPNet: prefixNet(tc.new), Flags: unix.IFA_F_NODAD}); err != nil {
				t.Fatal(err)
			}
			if err := lab.B.WaitLocal(tc.new.Addr()); err != nil {
				t.Fatal(err)
			}
			if err := h.AddrDel(link, &netlink.Addr{IPNet: prefixNet(old)}); err != nil {
				t.Fatal(err)
			}
			dns.set(name, tc.new.Addr())
			took := echoWithin(t, lab.A, echo, 10*time.Second)
			t.Logf("traffic resumed %v after the move", took.Round(time.Millisecond))
			// The line is written right after the move, which the echo
			// needed; allow for the scheduler all the same.
			for deadline := time.Now().Add(2 * time.Second); !strings.Contains(log.String(), `msg="endpoint name gives a new address; peer moved"`); {
				if time.Now().After(deadline) {
					t.Fatalf("no line about the move in the client's log:\n%s", log)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
