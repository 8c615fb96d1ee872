package main

// Root tests of `warren mesh`: real warren processes, each in a namespace
// of its own on a lab bridge, and a real etcd (Debian's etcd-server) in the
// bridge's namespace, listening only on the lab address 198.18.0.1.
//
//	hub namespace: br0 198.18.0.1/24, etcd :2379 (TLS)
//	  ├─ h0 ═ eth0 198.18.0.10/24  node 0: overlay 198.18.100.1, fd00:7761:100::1
//	  ├─ h1 ═ eth0 198.18.0.11/24  node 1: overlay 198.18.100.2, fd00:7761:100::2
//	  └─ ...

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	wgcrypto "github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/internal/netlab"
	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
	"github.com/warrenvpn/warren/mesh"
	"github.com/warrenvpn/warren/mesh/meshtest"
	"github.com/warrenvpn/warren/uapi"
)

// meshWait bounds every wait for the mesh to converge.
const meshWait = 30 * time.Second

// meshLab is a bridge with etcd and the mesh nodes around it.
type meshLab struct {
	t     *testing.T
	hub   *netlab.Namespace
	etcd  *meshtest.Etcd
	exe   string
	dir   string
	tag   string // random, keeps interface names apart from other tests'
	ttl   int    // lease TTL, seconds
	nodes []*meshNode
}

// meshNode is one `warren mesh` process and its namespace.
type meshNode struct {
	i      int
	name   string // interface name, also the node's name
	ns     *netlab.Namespace
	key    wgcrypto.PrivateKey
	v4, v6 netip.Addr // overlay addresses
	path   string
	log    *syncBuffer
	pid    int
	done   chan error // receives the exit once; put back by whoever takes it
}

var hubAddr = netip.MustParseAddr("198.18.0.1")

func newMeshLab(t *testing.T, tls bool) *meshLab {
	t.Helper()
	requireTool(t, "etcd")
	hub := netlabtest.NewNamespace(t)
	l := &meshLab{t: t, hub: hub, exe: warrenBinary(t), dir: t.TempDir(), ttl: 3}
	var tag [2]byte
	rand.Read(tag[:])
	l.tag = hex.EncodeToString(tag[:])
	h := hub.Handle()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := h.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(br, &netlink.Addr{IPNet: netlink.NewIPNet(hubAddr.AsSlice())}); err != nil {
		t.Fatal(err)
	}
	a, _ := netlink.ParseAddr("198.18.0.1/24")
	h.AddrDel(br, &netlink.Addr{IPNet: netlink.NewIPNet(hubAddr.AsSlice())})
	if err := h.AddrAdd(br, a); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	if err := hub.WaitLocal(hubAddr); err != nil {
		t.Fatal(err)
	}
	l.etcd = meshtest.Start(t, meshtest.Options{
		Addr: hubAddr, Port: 2379, PeerPort: 2380, TLS: tls,
		Command: func(name string, args ...string) *exec.Cmd { return hub.Command(context.Background(), name, args...) },
		Dial: func(network, addr string) (c net.Conn, err error) {
			err = hub.Do(func() error { c, err = net.DialTimeout(network, addr, 2*time.Second); return err })
			return c, err
		},
	})
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range l.nodes {
				t.Logf("--- warren mesh %s:\n%s", n.name, n.log)
			}
		}
	})
	return l
}

// addNode makes node i's namespace, wires it to the bridge and writes its
// file; extra goes into its [Mesh] section.
func (l *meshLab) addNode(i int, extra string) *meshNode {
	t := l.t
	t.Helper()
	ns := netlabtest.NewNamespace(t)
	hubNS, err := netns.GetFromName(l.hub.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer hubNS.Close()
	peer := fmt.Sprintf("h%d", i)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: peer, PeerNamespace: netlink.NsFd(hubNS)}
	if err := ns.Handle().LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	hl, err := l.hub.Handle().LinkByName(peer)
	if err != nil {
		t.Fatal(err)
	}
	br, _ := l.hub.Handle().LinkByName("br0")
	if err := l.hub.Handle().LinkSetMaster(hl, br); err != nil {
		t.Fatal(err)
	}
	if err := l.hub.Handle().LinkSetUp(hl); err != nil {
		t.Fatal(err)
	}
	under := netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)})
	nl, _ := ns.Handle().LinkByName("eth0")
	a, _ := netlink.ParseAddr(under.String() + "/24")
	if err := ns.Handle().AddrAdd(nl, a); err != nil {
		t.Fatal(err)
	}
	if err := ns.Handle().LinkSetUp(nl); err != nil {
		t.Fatal(err)
	}
	key, err := wgcrypto.NewPrivateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	n := &meshNode{
		i: i, name: fmt.Sprintf("wm%s%d", l.tag, i), ns: ns, key: key,
		v4: netip.AddrFrom4([4]byte{198, 18, 100, byte(1 + i)}),
		v6: netip.MustParseAddr(fmt.Sprintf("fd00:7761:100::%x", 1+i)),
	}
	n.path = filepath.Join(l.dir, n.name+".conf")
	conf := fmt.Sprintf(`[Interface]
PrivateKey = %s
Address = %s/24, %s/64
ListenPort = 51820

[Mesh]
%sNetwork = lab
Name = node%d
Advertise = detect
LeaseTTL = %d
CacheFile = %s
%s`, key, n.v4, n.v6, l.etcd.MeshSection(), i, l.ttl, filepath.Join(l.dir, n.name+".mesh"), extra)
	if err := os.WriteFile(n.path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	l.nodes = append(l.nodes, n)
	return n
}

// start runs `warren mesh` for n; the test's cleanup stops it.
func (l *meshLab) start(n *meshNode) {
	t := l.t
	t.Helper()
	cmd := n.ns.Command(context.Background(), l.exe, "mesh", n.path)
	n.log = &syncBuffer{}
	cmd.Stdout, cmd.Stderr = n.log, n.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.pid, n.done = cmd.Process.Pid, make(chan error, 1)
	go func() { n.done <- cmd.Wait() }()
	t.Cleanup(func() { n.stop(t) })
}

// stop ends n with SIGTERM and returns how it exited; it waits 10 s at
// most (then kills it).
func (n *meshNode) stop(t testing.TB) error {
	syscall.Kill(n.pid, syscall.SIGTERM)
	select {
	case err := <-n.done:
		n.done <- err
		return err
	case <-time.After(10 * time.Second):
		syscall.Kill(n.pid, syscall.SIGKILL)
		t.Errorf("warren mesh %s did not stop within 10 s of SIGTERM", n.name)
		return errors.New("killed")
	}
}

// peers returns the public keys of n's peers, read over its control socket.
func (n *meshNode) peers() (map[wgcrypto.PublicKey]bool, error) {
	c, err := uapi.Dial(uapi.DefaultDir, n.name)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	s, err := uapi.Get(c)
	if err != nil {
		return nil, err
	}
	out := make(map[wgcrypto.PublicKey]bool, len(s.Peers))
	for _, p := range s.Peers {
		out[p.PublicKey] = true
	}
	return out, nil
}

// waitPeers waits until every node in at has exactly the others of want as
// peers.
func (l *meshLab) waitPeers(at, want []*meshNode) {
	t := l.t
	t.Helper()
	deadline := time.Now().Add(meshWait)
	for _, n := range at {
		for {
			got, err := n.peers()
			ok := err == nil
			if ok {
				exp := 0
				for _, w := range want {
					if w != n {
						exp++
						ok = ok && got[w.key.PublicKey()]
					}
				}
				ok = ok && len(got) == exp
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: peers %v (err %v), want the %d others of %d nodes", n.name, len(got), err, len(want)-1, len(want))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// allReach pings every ordered pair of nodes over IPv4 and IPv6 until each
// answers and returns how long that took.
func (l *meshLab) allReach(nodes []*meshNode) time.Duration {
	t := l.t
	t.Helper()
	start := time.Now()
	deadline := start.Add(meshWait)
	var wg sync.WaitGroup
	var failed atomic.Int32
	sem := make(chan struct{}, 4*runtime.NumCPU())
	for _, a := range nodes {
		for _, b := range nodes {
			if a == b {
				continue
			}
			for _, dst := range []netip.Addr{b.v4, b.v6} {
				wg.Go(func() {
					for {
						sem <- struct{}{}
						ok := pingOnce(a.ns, dst, 500*time.Millisecond) == nil
						<-sem
						if ok {
							return
						}
						if time.Now().After(deadline) {
							failed.Add(1)
							t.Errorf("%s cannot reach %s (%s)", a.name, dst, b.name)
							return
						}
					}
				})
			}
		}
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.FailNow()
	}
	return time.Since(start)
}

// pingOnce sends one ICMP echo from ns to dst and waits for the reply.
func pingOnce(ns *netlab.Namespace, dst netip.Addr, timeout time.Duration) error {
	network, proto := "ip4:icmp", 1
	var reqType, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if dst.Is6() {
		network, proto = "ip6:ipv6-icmp", 58
		reqType, replyType = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	var c *icmp.PacketConn
	if err := ns.Do(func() (err error) { c, err = icmp.ListenPacket(network, ""); return err }); err != nil {
		return err
	}
	defer c.Close()
	var idb [2]byte
	rand.Read(idb[:])
	id := int(idb[0])<<8 | int(idb[1])
	b, _ := (&icmp.Message{Type: reqType, Body: &icmp.Echo{ID: id, Seq: 1, Data: []byte("warren mesh")}}).Marshal(nil)
	if _, err := c.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 1500)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return err
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != replyType {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id {
			return nil
		}
	}
}

// pinger pings dst from ns every interval until stop is called, and
// returns how many echoes were sent and lost.
func pinger(ns *netlab.Namespace, dst netip.Addr, interval time.Duration) (stop func() (sent, lost int)) {
	done := make(chan struct{})
	var sent, lost int
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			sent++
			if pingOnce(ns, dst, time.Second) != nil {
				lost++
			}
		}
	})
	return func() (int, int) { close(done); wg.Wait(); return sent, lost }
}

// meshNodes is the number of nodes TestMesh starts (12 with -long... kept
// at the 12: the whole run stays well under CI's budget).
const meshNodes = 12

// TestMesh runs 12 nodes with TLS to etcd: all reach all, over IPv4 and
// IPv6; then a conflicting node is refused, a garbage document ignored,
// 3 nodes join and 3 leave while 2 untouched nodes ping each other without
// loss, a node killed with SIGKILL drops out after its lease and rejoins,
// and etcd stopped for 20 s under traffic loses nothing.
func TestMesh(t *testing.T) {
	l := newMeshLab(t, true)
	var nodes []*meshNode
	for i := range meshNodes {
		nodes = append(nodes, l.addNode(i, ""))
	}
	t0 := time.Now()
	for _, n := range nodes {
		l.start(n)
	}
	lastStart := time.Since(t0)
	took := l.allReach(nodes)
	t.Logf("%d nodes: started in %v; every pair (%d, IPv4 and IPv6) answered %v after the last start", len(nodes), lastStart.Round(time.Millisecond), len(nodes)*(len(nodes)-1)*2, took.Round(time.Millisecond))

	t.Run("conflict refused", func(t *testing.T) {
		for i, tc := range []struct{ name, extra, want string }{
			{"node0", "", `refused by the mesh: name "node0" is taken`},
			{"node41", "AllowedIPs = 198.18.100.0/28\n", "refused by the mesh: allowed IP 198.18.100.0/28 overlaps 198.18.100."},
		} {
			n := l.addNode(40+i, tc.extra)
			conf := strings.Replace(mustRead(t, n.path), fmt.Sprintf("Name = node%d", 40+i), "Name = "+tc.name, 1)
			if err := os.WriteFile(n.path, []byte(conf), 0o600); err != nil {
				t.Fatal(err)
			}
			l.start(n)
			select {
			case err := <-n.done:
				n.done <- err
				if exitCode(err) != 1 || !strings.Contains(n.log.String(), tc.want) {
					t.Errorf("conflicting node exited with %v, want 1 and a line with %q\n%s", err, tc.want, n.log)
				}
			case <-time.After(meshWait):
				t.Fatalf("a conflicting node was not refused\n%s", n.log)
			}
		}
		l.waitPeers(nodes, nodes)
	})

	t.Run("garbage ignored", func(t *testing.T) {
		cli := l.etcd.Client(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for k, v := range map[string]string{"garbage": `{"v":1,`, "foreign": `{"v":9,"name":"x"}`} {
			if _, err := cli.Put(ctx, "/warren/lab/nodes/"+k, v); err != nil {
				t.Fatal(err)
			}
			defer cli.Delete(context.Background(), "/warren/lab/nodes/"+k)
		}
		waitFor(t, "every node to log both documents", func() bool {
			for _, n := range nodes {
				if strings.Count(n.log.String(), "mesh document ignored") < 2 {
					return false
				}
			}
			return true
		})
		l.waitPeers(nodes, nodes)
		if err := pingOnce(nodes[0].ns, nodes[1].v4, time.Second); err != nil {
			t.Errorf("after garbage: %s to %s: %v", nodes[0].name, nodes[1].v4, err)
		}
	})

	// Churn: 3 nodes join and 3 leave cleanly while nodes 0 and 1 ping
	// each other (10 echoes a second each way): no echo is lost.
	t.Run("churn", func(t *testing.T) {
		stopA := pinger(nodes[0].ns, nodes[1].v4, 100*time.Millisecond)
		stopB := pinger(nodes[1].ns, nodes[0].v6, 100*time.Millisecond)
		var joined []*meshNode
		for i := range 3 {
			n := l.addNode(20+i, "")
			l.start(n)
			joined = append(joined, n)
		}
		for _, n := range nodes[9:12] {
			if err := n.stop(t); err != nil {
				t.Errorf("%s: clean stop: %v\n%s", n.name, err, n.log)
			}
		}
		now := append(append([]*meshNode{}, nodes[:9]...), joined...)
		start := time.Now()
		l.waitPeers(now, now)
		t.Logf("3 joined, 3 left: every node's peers right %v later", time.Since(start).Round(time.Millisecond))
		l.allReach(now)
		time.Sleep(2 * time.Second) // a measuring window after the churn, not a wait for an event
		sa, la := stopA()
		sb, lb := stopB()
		if la+lb != 0 {
			t.Errorf("lost %d of %d echoes between the untouched nodes 0 and 1 during churn", la+lb, sa+sb)
		}
		t.Logf("untouched pair: %d echoes, %d lost", sa+sb, la+lb)
		nodes = now
	})

	// A node cut off from etcd (and from everyone) long enough for its
	// lease to expire and its gRPC connection to be given up: the others
	// drop it; meanwhile a node leaves and the store is compacted. Back on
	// the network, it finds its watch revision compacted, lists again,
	// publishes itself again and everyone converges.
	t.Run("partition and compaction", func(t *testing.T) {
		victim, leaver := nodes[4], nodes[5]
		link, err := victim.ns.Handle().LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		if err := victim.ns.Handle().LinkSetDown(link); err != nil {
			t.Fatal(err)
		}
		cut := time.Now()
		rest := slices.DeleteFunc(slices.Clone(nodes), func(n *meshNode) bool { return n == victim || n == leaver })
		if err := leaver.stop(t); err != nil {
			t.Errorf("%s: clean stop: %v", leaver.name, err)
		}
		l.waitPeers(rest, rest)
		cli := l.etcd.Client(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for range 3 { // revisions the victim never saw
			if _, err := cli.Put(ctx, "/warren/lab/other", "x"); err != nil {
				t.Fatal(err)
			}
		}
		r, err := cli.Get(ctx, "/warren/lab/other")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Compact(ctx, r.Header.Revision); err != nil {
			t.Fatal(err)
		}
		cli.Delete(ctx, "/warren/lab/other")
		// gRPC gives a silent connection up after its keep-alive (5 s)
		// and timeout (3 s): only then does the watch start again, from a
		// revision that is gone.
		time.Sleep(10*time.Second - time.Since(cut))
		if err := victim.ns.Handle().LinkSetUp(link); err != nil {
			t.Fatal(err)
		}
		back := time.Now()
		nodes = append(rest, victim)
		l.waitPeers(nodes, nodes)
		t.Logf("partitioned node back in everyone's peers %v after its link came up", time.Since(back).Round(time.Millisecond))
		if !strings.Contains(victim.log.String(), "mesh watch compacted, listing again") {
			t.Errorf("%s did not report the compacted watch", victim.name)
		}
		l.allReach(nodes)
	})

	// SIGHUP (warren reload, systemd's ExecReload) neither kills a node nor
	// disturbs it: the mesh answers it with a warning.
	t.Run("SIGHUP", func(t *testing.T) {
		n := nodes[0]
		syscall.Kill(n.pid, syscall.SIGHUP)
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(n.log.String(), "reload is not supported by warren mesh") {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not answer SIGHUP:\n%s", n.name, n.log.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		select {
		case err := <-n.done:
			n.done <- err
			t.Fatalf("%s exited on SIGHUP: %v", n.name, err)
		default:
		}
		l.allReach(nodes)
	})

	// A node killed with SIGKILL cannot delete its key: its lease expires
	// after the TTL and every other node drops it; restarted with the same
	// key it comes back at once.
	t.Run("kill -9", func(t *testing.T) {
		victim := nodes[2]
		syscall.Kill(victim.pid, syscall.SIGKILL)
		<-victim.done
		victim.done <- errors.New("killed")
		start := time.Now()
		rest := slices.DeleteFunc(slices.Clone(nodes), func(n *meshNode) bool { return n == victim })
		l.waitPeers(rest, rest)
		dropped := time.Since(start)
		t.Logf("killed node dropped everywhere %v after SIGKILL (lease TTL %d s)", dropped.Round(time.Millisecond), l.ttl)
		// The lease was last renewed at most a third of the TTL before the
		// kill; half the TTL leaves room for timer slack.
		if dropped < time.Duration(l.ttl)*time.Second/2 {
			t.Errorf("dropped after %v, before the %d s lease could expire", dropped, l.ttl)
		}
		l.start(victim)
		l.waitPeers(nodes, nodes)
		l.allReach(nodes)
	})

	// etcd stopped for 20 s: traffic between nodes goes on; a node that
	// leaves while etcd is down (its key cannot be deleted) and a change made
	// after etcd is back both converge.
	t.Run("etcd down 20s", func(t *testing.T) {
		stop := pinger(nodes[0].ns, nodes[3].v4, 200*time.Millisecond)
		l.etcd.Stop()
		time.Sleep(20 * time.Second) // the outage itself
		for _, n := range nodes {
			if err := pingOnce(n.ns, nodes[0].v6, time.Second); err != nil && n != nodes[0] {
				t.Errorf("with etcd down: %s to %s: %v", n.name, nodes[0].v6, err)
			}
		}
		if err := l.etcd.Restart(); err != nil {
			t.Fatal(err)
		}
		back := time.Now()
		n := l.addNode(30, "")
		l.start(n)
		nodes = append(nodes, n)
		l.waitPeers(nodes, nodes)
		t.Logf("after etcd came back, a new node was everyone's peer %v later", time.Since(back).Round(time.Millisecond))
		sent, lost := stop()
		t.Logf("nodes 0 to 3 across the outage: %d echoes, %d lost", sent, lost)
		if lost != 0 {
			t.Errorf("lost %d of %d echoes between nodes 0 and 3 while etcd was down", lost, sent)
		}
		l.allReach(nodes)
	})
}

func mustRead(t testing.TB, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestMeshScale is the engine side of 1,000 nodes: their documents are
// written straight into etcd, and one real node lists, applies and then
// follows one more change. It reports the time to apply all of them, the
// node's memory, and the cost of one change at 1,000 peers.
func TestMeshScale(t *testing.T) {
	const simulated = 1000
	l := newMeshLab(t, false)
	cli := l.etcd.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	put := func(i int) {
		k, err := wgcrypto.NewPrivateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		n := mesh.Node{
			Name:       fmt.Sprintf("sim%d", i),
			PublicKey:  k.PublicKey(),
			Endpoints:  []netip.AddrPort{netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 1, byte(i)}), uint16(20000+i))},
			AllowedIPs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), 32)},
			UpdatedAt:  time.Now(),
		}
		doc, err := n.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Put(ctx, "/warren/lab/nodes/"+base64.URLEncoding.EncodeToString(n.PublicKey[:]), string(doc)); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < simulated; i += 8 {
				put(i)
			}
		})
	}
	wg.Wait()
	t.Logf("%d documents written in %v", simulated, time.Since(start).Round(time.Millisecond))

	n := l.addNode(0, "")
	start = time.Now()
	l.start(n)
	waitPeerCount(t, n, simulated)
	applyAll := time.Since(start)
	rss := vmRSS(t, n.pid)

	var costs []time.Duration
	for i := range 5 {
		start := time.Now()
		put(simulated + i)
		waitPeerCount(t, n, simulated+i+1)
		costs = append(costs, time.Since(start))
	}
	slices.Sort(costs)
	t.Logf("one node, %d simulated peers: listed and applied in %v (process start included); VmRSS %d MiB; one more node at %d peers: median %v, max %v from put to the engine (5 changes)",
		simulated, applyAll.Round(time.Millisecond), rss>>10, simulated, costs[2].Round(time.Millisecond), costs[4].Round(time.Millisecond))
	for _, line := range strings.Split(n.log.String(), "\n") {
		if strings.Contains(line, `msg="mesh peers applied"`) {
			_, took, _ := strings.Cut(line, "took=")
			_, set, _ := strings.Cut(line, " set=")
			set, _, _ = strings.Cut(set, " ")
			t.Logf("node's own figure: Reconfigure with %s peers set took %s", set, took)
		}
	}
	if err := n.stop(t); err != nil {
		t.Errorf("clean stop: %v", err)
	}
}

// waitPeerCount waits until n has want peers.
func waitPeerCount(t *testing.T, n *meshNode, want int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got, err := n.peers()
		if err == nil && len(got) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d peers (err %v), want %d", n.name, len(got), err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// vmRSS returns the resident set of process pid in KiB.
func vmRSS(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return kib
		}
	}
	return 0
}

// TestMeshErrors: a malformed command line is a usage error, and a mistake
// in the [Mesh] section is reported with file, line and key before anything
// is brought up (no root needed).
func TestMeshErrors(t *testing.T) {
	if err := run(context.Background(), []string{"mesh"}, nil, io.Discard, io.Discard); !errors.Is(err, errUsage) {
		t.Errorf("warren mesh without a file = %v, want a usage error", err)
	}
	if err := run(context.Background(), []string{"mesh", "--colour", "x.conf"}, nil, io.Discard, io.Discard); !errors.Is(err, errUsage) {
		t.Errorf("warren mesh --colour = %v, want a usage error", err)
	}
	path := filepath.Join(t.TempDir(), "wm0.conf")
	conf := "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n\n[Mesh]\nEndpoints = https://198.18.0.1:2379\nColour = red\n"
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	want := path + ":6: Colour: unknown key in [Mesh] section"
	if err := run(context.Background(), []string{"mesh", path}, nil, io.Discard, io.Discard); err == nil || err.Error() != want {
		t.Errorf("warren mesh with a bad key = %v, want %q", err, want)
	}
}
