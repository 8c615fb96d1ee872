package vmlab_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	wgcrypto "github.com/warrenvpn/warren/crypto"
)

// kernelCase is one warren-to-kernel tunnel: warren in the lab namespace, a
// kernel wireguard interface in the guest. Case n owns ports 52000+n,
// overlay 198.19.n.0/24 and fd00:7761:1:n::/64, and the names wkTAGn
// (warren) and wgn (guest).
type kernelCase struct {
	n        int
	initiate string // "warren" or "kernel": only the initiator knows the other's endpoint
	psk      bool
	ipv6     bool // underlay family
}

// kernelTunnel is a running kernelCase.
type kernelTunnel struct {
	kernelCase
	warrenName, guestName string
	warrenKey, guestKey   wgcrypto.PrivateKey
	warrenIn, guestIn     netip.Addr // overlay IPv4
	warrenIn6, guestIn6   netip.Addr // overlay IPv6
	port                  int
}

func (c kernelCase) String() string {
	fam := "ipv4"
	if c.ipv6 {
		fam = "ipv6"
	}
	psk := "no psk"
	if c.psk {
		psk = "psk"
	}
	return fmt.Sprintf("%s initiates, %s, %s underlay", c.initiate, psk, fam)
}

// underlay returns the host's and the guest's underlay addresses for c.
func (c kernelCase) underlay() (host, guest netip.Addr) {
	if c.ipv6 {
		return host6.Addr(), guest6.Addr()
	}
	return host4.Addr(), guest4.Addr()
}

// start brings the tunnel up on both sides; both go away when t ends.
func (l *lab) start(t *testing.T, ctx context.Context, c kernelCase) *kernelTunnel {
	t.Helper()
	var tag [2]byte
	rand.Read(tag[:])
	k := &kernelTunnel{
		kernelCase: c,
		warrenName: fmt.Sprintf("wk%x%d", tag, c.n),
		guestName:  fmt.Sprintf("wg%d", c.n),
		warrenIn:   netip.AddrFrom4([4]byte{198, 19, byte(c.n), 1}),
		guestIn:    netip.AddrFrom4([4]byte{198, 19, byte(c.n), 2}),
		warrenIn6:  netip.MustParseAddr(fmt.Sprintf("fd00:7761:1:%x::1", c.n)),
		guestIn6:   netip.MustParseAddr(fmt.Sprintf("fd00:7761:1:%x::2", c.n)),
		port:       52000 + c.n,
	}
	var err error
	if k.warrenKey, err = wgcrypto.NewPrivateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	if k.guestKey, err = wgcrypto.NewPrivateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	var psk string
	if c.psk {
		p, err := wgcrypto.NewPresharedKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		psk = p.String()
	}
	hostU, guestU := c.underlay()

	// The guest side: a kernel wireguard interface.
	l.run(t, ctx, "link", "add-wireguard", k.guestName)
	t.Cleanup(func() {
		if _, err := l.g.Run(context.Background(), "link", "del", k.guestName); err != nil {
			t.Errorf("remove %s from the guest: %v", k.guestName, err)
		}
	})
	wg := []string{"wg", k.guestName, "private-key", k.guestKey.String(), "listen-port", fmt.Sprint(k.port),
		"peer", k.warrenKey.PublicKey().String(),
		"allowed-ips", netip.PrefixFrom(k.warrenIn, 32).String() + "," + netip.PrefixFrom(k.warrenIn6, 128).String()}
	if c.psk {
		wg = append(wg, "preshared-key", psk)
	}
	if c.initiate == "kernel" {
		wg = append(wg, "endpoint", netip.AddrPortFrom(hostU, uint16(k.port)).String())
	}
	l.run(t, ctx, wg...)
	l.run(t, ctx, "addr", "add", k.guestName, netip.PrefixFrom(k.guestIn, 24).String())
	l.run(t, ctx, "addr", "add", k.guestName, netip.PrefixFrom(k.guestIn6, 64).String())
	l.run(t, ctx, "link", "up", k.guestName)

	// The host side: warren up.
	conf := fmt.Sprintf("[Interface]\nPrivateKey = %s\nListenPort = %d\nAddress = %s, %s\n\n[Peer]\nPublicKey = %s\nAllowedIPs = %s, %s\n",
		k.warrenKey, k.port, netip.PrefixFrom(k.warrenIn, 24), netip.PrefixFrom(k.warrenIn6, 64),
		k.guestKey.PublicKey(), netip.PrefixFrom(k.guestIn, 32), netip.PrefixFrom(k.guestIn6, 128))
	if c.psk {
		conf += "PresharedKey = " + psk + "\n"
	}
	if c.initiate == "warren" {
		conf += fmt.Sprintf("Endpoint = %s\n", netip.AddrPortFrom(guestU, uint16(k.port)))
	}
	l.up(t, k.warrenName, conf)
	return k
}

// pingFromInitiator pings the responder's overlay address from the initiator
// (the first packet starts the handshake), then the other way, over IPv4 and
// IPv6 inner packets.
func (l *lab) pingBothWays(t *testing.T, ctx context.Context, k *kernelTunnel) {
	t.Helper()
	fromHost := func(dst netip.Addr) {
		t.Helper()
		if got := l.ping(t, dst, 3); got != 3 {
			t.Errorf("ping %v from warren's side: %d of 3 answered", dst, got)
		}
	}
	fromGuest := func(dst netip.Addr) {
		t.Helper()
		out, err := l.g.Run(ctx, "ping", dst.String(), "3")
		if err != nil || out != "3/3" {
			t.Errorf("ping %v from the kernel's side: %s answered: %v", dst, out, err)
		}
	}
	if k.initiate == "warren" {
		fromHost(k.guestIn)
		fromGuest(k.warrenIn6)
		fromHost(k.guestIn6)
		fromGuest(k.warrenIn)
	} else {
		fromGuest(k.warrenIn)
		fromHost(k.guestIn6)
		fromGuest(k.warrenIn6)
		fromHost(k.guestIn)
	}
}

// transferSize is the TCP transfer each way: the guest's crypto runs under
// software emulation.
const transferSize = 1 << 20 // bytes

// TestP4KernelPeer: warren and the Linux kernel's WireGuard module complete
// handshakes with either side initiating, with and without a preshared key,
// over an IPv4 and an IPv6 underlay, and move ICMP over IPv4 and IPv6 and a
// checksummed TCP transfer both ways (P4 with the kernel module; issue 15).
// It runs in parallel with TestL17KernelRekey, after the tests that change
// the guest's eth0.
func TestP4KernelPeer(t *testing.T) {
	t.Parallel()
	l := sharedLab(t)
	var cases []kernelCase
	for _, initiate := range []string{"warren", "kernel"} {
		for _, psk := range []bool{false, true} {
			for _, ipv6 := range []bool{false, true} {
				cases = append(cases, kernelCase{n: 10 + len(cases), initiate: initiate, psk: psk, ipv6: ipv6})
			}
		}
	}
	capture := l.startCapture(t, "udp portrange 52000-52099")
	t.Run("cases", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.String(), func(t *testing.T) {
				t.Parallel()
				l.kernelPeer(t, c)
			})
		}
	})

	// On the wire: the initiator sent the initiation, the responder the
	// response, both sent data; no cookie replies (no load).
	var ports []int
	for _, c := range cases {
		ports = append(ports, 52000+c.n)
	}
	seen := map[int]map[string]int{} // port -> "type from side" -> count
	for _, m := range capture.messages(t, ports...) {
		port, from := m.dstPort, "kernel"
		if m.src == host4.Addr() || m.src == host6.Addr() {
			from = "warren"
		}
		if seen[port] == nil {
			seen[port] = map[string]int{}
		}
		seen[port][fmt.Sprintf("%d from %s", m.typ, from)]++
	}
	for _, c := range cases {
		s := seen[52000+c.n]
		responder := map[string]string{"warren": "kernel", "kernel": "warren"}[c.initiate]
		t.Logf("%v: messages seen %v", c, s)
		for _, want := range []string{"1 from " + c.initiate, "2 from " + responder, "4 from warren", "4 from kernel"} {
			if s[want] == 0 {
				t.Errorf("%v: no message type %s on the wire; seen %v", c, want, s)
			}
		}
		for k := range s {
			if strings.HasPrefix(k, "3 ") || k == "1 from "+responder || k == "2 from "+c.initiate {
				t.Errorf("%v: unexpected message type %s on the wire; seen %v", c, k, s)
			}
		}
	}
}

// kernelPeer runs one TestP4KernelPeer case.
func (l *lab) kernelPeer(t *testing.T, c kernelCase) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	k := l.start(t, ctx, c)
	l.pingBothWays(t, ctx, k)
	if t.Failed() {
		return
	}
	l.sendToGuest(t, ctx, netip.AddrPortFrom(k.guestIn, 5001), transferSize)
	l.receiveFromGuest(t, ctx, netip.AddrPortFrom(k.warrenIn6, 5002), transferSize)

	hostU, guestU := c.underlay()
	gp := l.guestShow(t, ctx, k.guestName)
	if gp.LastHandshake.IsZero() {
		t.Errorf("kernel side: no handshake recorded")
	}
	if want := netip.AddrPortFrom(hostU, uint16(k.port)).String(); gp.Endpoint != want {
		t.Errorf("kernel side: endpoint %s, want %s", gp.Endpoint, want)
	}
	wp := l.show(t, k.warrenName).Interfaces[0].Peers[0]
	if wp.LatestHandshake == nil {
		t.Errorf("warren side: no handshake recorded")
	}
	if want := netip.AddrPortFrom(guestU, uint16(k.port)).String(); wp.Endpoint != want {
		t.Errorf("warren side: endpoint %s, want %s", wp.Endpoint, want)
	}
	if wp.PresharedKey != c.psk {
		t.Errorf("warren side: preshared key %v, want %v", wp.PresharedKey, c.psk)
	}
	t.Logf("kernel rx %d tx %d, warren rx %d tx %d", gp.RxBytes, gp.TxBytes, wp.RxBytes, wp.TxBytes)
}
