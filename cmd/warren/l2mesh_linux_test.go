package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	wgcrypto "github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/internal/netlab"
	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
)

// l2Mesh is n sites: gateway namespaces on one underlay bridge (in a
// namespace of its own, 198.18.1.0/24), each running `warren up` in
// Mode = tap with a bridge and one host on it. IPv6 is off everywhere, so
// that the only frames are the test's.
type l2Mesh struct {
	d     *demo
	gws   []*netlab.Namespace
	hosts []*netlab.Namespace
	keys  []wgcrypto.PrivateKey
	names []string
}

func newL2Mesh(t *testing.T, n int) *l2Mesh {
	t.Helper()
	requireTool(t, "ip")
	m := &l2Mesh{d: &demo{out: io.Discard, exe: warrenBinary(t), dir: t.TempDir()}}
	t.Cleanup(func() {
		m.d.stopTunnels()
		if t.Failed() {
			t.Log(m.d.logs())
		}
	})
	wan := netlabtest.NewNamespace(t)
	noIPv6(t, wan)
	ip(t, "-n", wan.Name(), "link", "add", "wan0", "type", "bridge")
	ip(t, "-n", wan.Name(), "link", "set", "wan0", "up")
	var tag [2]byte
	rand.Read(tag[:])
	for i := range n {
		gw, host := netlabtest.NewNamespace(t), netlabtest.NewNamespace(t)
		noIPv6(t, gw)
		noIPv6(t, host)
		port := fmt.Sprintf("u%d", i)
		ip(t, "-n", wan.Name(), "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", gw.Name())
		ip(t, "-n", wan.Name(), "link", "set", port, "master", "wan0", "up")
		ip(t, "-n", gw.Name(), "addr", "add", m.underlay(i).String()+"/24", "dev", "eth0")
		ip(t, "-n", gw.Name(), "link", "set", "eth0", "up")
		k, err := wgcrypto.NewPrivateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		m.gws, m.hosts, m.keys = append(m.gws, gw), append(m.hosts, host), append(m.keys, k)
		m.names = append(m.names, fmt.Sprintf("wm%x%c", tag, 'a'+i))
	}
	return m
}

// noIPv6 turns IPv6 off in ns, for links made from now on too.
func noIPv6(t *testing.T, ns *netlab.Namespace) {
	t.Helper()
	if out, err := ns.Command(context.Background(), "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1").CombinedOutput(); err != nil {
		t.Fatalf("sysctl in %s: %v\n%s", ns.Name(), err, out)
	}
}

func (m *l2Mesh) underlay(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 1, byte(i + 1)}) }

// up starts site i with peers (indexes) and the [Interface] line extra,
// and attaches its host to its bridge.
func (m *l2Mesh) up(t *testing.T, i int, peers []int, extra string) {
	t.Helper()
	conf := fmt.Sprintf("[Interface]\nPrivateKey = %s\nListenPort = 51820\nMode = tap\nBridge = %s\n%s\n", m.keys[i], l2Bridge, extra)
	for _, j := range peers {
		conf += fmt.Sprintf("[Peer]\nPublicKey = %s\nEndpoint = %s:51820\nAllowedIPs = 198.19.5.0/24\n\n", m.keys[j].PublicKey(), m.underlay(j))
	}
	path := filepath.Join(m.d.dir, m.names[i]+".conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	pr, err := m.d.start(context.Background(), m.gws[i], path)
	if err != nil {
		t.Fatal(err)
	}
	m.d.procs = append(m.d.procs, pr)
	if err := m.d.waitLink(context.Background(), m.gws[i], m.names[i], pr); err != nil {
		t.Fatal(err)
	}
	waitBridge(t, m.gws[i], m.names[i])
	gw, h := m.gws[i].Name(), m.hosts[i].Name()
	ip(t, "-n", gw, "link", "add", "vh0", "type", "veth", "peer", "name", "eth0", "netns", h)
	ip(t, "-n", gw, "link", "set", "vh0", "master", l2Bridge, "up")
	ip(t, "-n", h, "link", "set", "eth0", "mtu", fmt.Sprint(l2MTU), "up")
	ip(t, "-n", h, "addr", "add", l2HostIP(i, 0).String(), "dev", "eth0")
}

// listenUDP opens a UDP socket on port in ns.
func listenUDP(t *testing.T, ns *netlab.Namespace, port int) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := ns.Do(func() (err error) {
		c, err = net.ListenUDP("udp4", &net.UDPAddr{Port: port})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// countDatagrams counts the datagrams c receives until 2 s pass without one.
func countDatagrams(c *net.UDPConn) int {
	n := 0
	buf := make([]byte, 2048)
	for {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, _, err := c.ReadFrom(buf); err != nil {
			return n
		}
		n++
	}
}

// TestT2ThreeSitesBroadcast: in a full mesh of three sites one broadcast
// from a host reaches each other host exactly once, and nothing loops:
// the TAPs' counters stand still once traffic stops.
func TestT2ThreeSitesBroadcast(t *testing.T) {
	m := newL2Mesh(t, 3)
	for i := range 3 {
		var peers []int
		for j := range 3 {
			if j != i {
				peers = append(peers, j)
			}
		}
		m.up(t, i, peers, "")
	}
	for i := range 3 {
		pingUntil(t, m.hosts[i], l2HostIP((i+1)%3, 0).Addr())
	}
	const port = 5353 + 1000
	var ls []*net.UDPConn
	for i := range 3 {
		ls = append(ls, listenUDP(t, m.hosts[i], port))
	}
	var send *net.UDPConn
	if err := m.hosts[0].Do(func() (err error) {
		send, err = net.ListenUDP("udp4", nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer send.Close()
	raw, err := send.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	raw.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1) })
	if _, err := send.WriteTo([]byte("one broadcast"), &net.UDPAddr{IP: net.IPv4(198, 19, 5, 255), Port: port}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 3; i++ {
		if n := countDatagrams(ls[i]); n != 1 {
			t.Errorf("host at site %d got the broadcast %d times, want 1", i, n)
		}
	}
	before := make([]uint64, 3)
	for i := range 3 {
		before[i] = linkRxPackets(t, m.gws[i], m.names[i])
	}
	// A loop would keep one broadcast circling at thousands of frames a
	// second; the hosts' own neighbour discovery, MLD or ARP refreshes
	// may add a frame or two in the same second.
	time.Sleep(time.Second)
	const hostChatter = 3
	for i := range 3 {
		if after := linkRxPackets(t, m.gws[i], m.names[i]); after-before[i] > hostChatter {
			t.Errorf("site %d's TAP took %d frames in the second after traffic stopped, want at most %d (a loop)", i, after-before[i], hostChatter)
		}
	}
}

// TestL2HubForward: spokes that peer only with a hub with Forward = true
// reach each other through it.
func TestL2HubForward(t *testing.T) {
	m := newL2Mesh(t, 3)
	m.up(t, 0, []int{1, 2}, "Forward = true")
	m.up(t, 1, []int{0}, "")
	m.up(t, 2, []int{0}, "")
	pingUntil(t, m.hosts[1], l2HostIP(2, 0).Addr())
	pingUntil(t, m.hosts[2], l2HostIP(1, 0).Addr())
	pingUntil(t, m.hosts[1], l2HostIP(0, 0).Addr())
}
