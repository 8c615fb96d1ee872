package tunnel

import (
	"context"
	"encoding/binary"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// natTimeout is the router's conntrack timeout of UDP flows in the NAT
// tests, for both unreplied and assured ones.
const natTimeout = 2 * time.Second

// newNATLab is a pmtuLab (IPv4 underlay) whose router hides a behind its
// own address toward b, as a home router does: nftables masquerade with
// random ports on the way to b, no new connection from b's side, and UDP
// mappings that expire after natTimeout. a's peer b keeps the given
// persistent keepalive; b's peer a has no endpoint until a reaches it
// (root).
func newNATLab(t *testing.T, keepalive time.Duration) *pmtuLab {
	t.Helper()
	l := newPMTULab(t, pmtuAddrs4)
	c, err := nftables.New(nftables.WithNetNSFd(int(nsFd(t, l.router))))
	if err != nil {
		t.Fatal(err)
	}
	tb := c.AddTable(&nftables.Table{Name: "warren_test_nat", Family: nftables.TableFamilyIPv4})
	post := c.AddChain(&nftables.Chain{Name: "post", Table: tb, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	c.AddRule(&nftables.Rule{Table: tb, Chain: post, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameBytes("rb")},
		&expr.Masq{FullyRandom: true},
	}})
	fwd := c.AddChain(&nftables.Chain{Name: "fwd", Table: tb, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
	newState := binary.NativeEndian.AppendUint32(nil, expr.CtStateBitNEW)
	c.AddRule(&nftables.Rule{Table: tb, Chain: fwd, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameBytes("rb")},
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: newState, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	if err := c.Flush(); err != nil {
		t.Fatalf("nftables in the router: %v", err)
	}
	secs := strconv.Itoa(int(natTimeout / time.Second))
	sysctl(t, l.router, "net.netfilter.nf_conntrack_udp_timeout="+secs, "net.netfilter.nf_conntrack_udp_timeout_stream="+secs)

	allowed := func(s *tunSide) []netip.Prefix { return []netip.Prefix{netip.PrefixFrom(s.inner.Addr(), 32)} }
	if !l.b.e.RemovePeer(l.a.key.PublicKey()) {
		t.Fatal("b has no peer a")
	}
	if err := l.b.e.AddPeer(PeerConfig{PublicKey: l.a.key.PublicKey(), AllowedIPs: allowed(l.a)}); err != nil {
		t.Fatal(err)
	}
	if err := l.a.e.AddPeer(PeerConfig{PublicKey: l.b.key.PublicKey(), AllowedIPs: allowed(l.b), PersistentKeepalive: keepalive}); err != nil {
		t.Fatal(err)
	}
	return l
}

// ifnameBytes is name as nftables compares interface names: 16 bytes,
// zero-padded.
func ifnameBytes(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// innerPing reports whether one ping from from to the inner address of to is
// answered within wait.
func innerPing(from, to *tunSide, wait time.Duration) bool {
	w := strconv.FormatFloat(wait.Seconds(), 'f', -1, 64)
	return from.ns.Command(context.Background(), "ping", "-n", "-c1", "-W"+w, to.inner.Addr().String()).Run() == nil
}

// endpointOf returns s's endpoint of its only peer.
func endpointOf(s *tunSide) netip.AddrPort {
	st := s.e.Stats()
	if len(st) != 1 {
		return netip.AddrPort{}
	}
	return st[0].Endpoint
}

// TestRO9RO10KernelNATRoot (root, RO9, RO10): a is behind the kernel's
// source NAT (nftables masquerade, random ports) whose UDP mappings expire
// after 2 s of silence. With a's 1 s persistent keepalive, b still reaches
// a after 3 s without data (RO9); without it the same ping is lost (the
// control). Then the router's conntrack table is flushed (netlink): a's
// next keepalive opens a new mapping on another port, b follows it (RO1)
// and its pings reach a again; the time from the flush is logged, within
// the keepalive interval (RO10). The two run side by side, 4-5 s in all.
func TestRO9RO10KernelNATRoot(t *testing.T) {
	router := pmtuAddrs4.rb.Addr()
	t.Run("keepalive", func(t *testing.T) {
		t.Parallel()
		l := newNATLab(t, time.Second)
		if !innerPing(l.a, l.b, 5*time.Second) {
			t.Fatalf("a cannot reach b through the NAT (drops a %v, b %v)", l.a.e.DropCounts(), l.b.e.DropCounts())
		}
		before := endpointOf(l.b)
		if before.Addr() != router {
			t.Fatalf("b's endpoint of a = %v, want the router's %v", before, router)
		}
		time.Sleep(natTimeout * 3 / 2)
		if !innerPing(l.b, l.a, time.Second) {
			t.Fatalf("b cannot reach a after %v without data: the keepalive did not hold the mapping", natTimeout*3/2)
		}

		flows, err := l.router.Handle().ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
		if err != nil || len(flows) == 0 {
			t.Fatalf("router conntrack table: %d flows, %v", len(flows), err)
		}
		if err := l.router.Handle().ConntrackTableFlush(netlink.ConntrackTable); err != nil {
			t.Fatalf("flush the router's conntrack table: %v", err)
		}
		start := time.Now()
		for !innerPing(l.b, l.a, 100*time.Millisecond) {
			if time.Since(start) > 5*time.Second {
				t.Fatalf("b has not reached a %v after the mapping was flushed (endpoint %v, was %v)", time.Since(start).Round(time.Millisecond), endpointOf(l.b), before)
			}
		}
		took := time.Since(start)
		after := endpointOf(l.b)
		t.Logf("recovered %v after the flush; b's endpoint of a %v, then %v", took.Round(time.Millisecond), before, after)
		if after.Addr() != router {
			t.Errorf("b's endpoint of a = %v after the flush, want the router's %v", after, router)
		}
		if took > 2*time.Second {
			t.Errorf("recovery took %v, want about the 1 s keepalive interval", took.Round(time.Millisecond))
		}
	})
	t.Run("control without keepalive", func(t *testing.T) {
		t.Parallel()
		l := newNATLab(t, 0)
		if !innerPing(l.a, l.b, 5*time.Second) {
			t.Fatalf("a cannot reach b through the NAT (drops a %v, b %v)", l.a.e.DropCounts(), l.b.e.DropCounts())
		}
		time.Sleep(natTimeout * 3 / 2)
		if innerPing(l.b, l.a, time.Second) {
			t.Fatalf("b reached a %v after the last data without a keepalive: the NAT's mapping did not expire, so the test proves nothing", natTimeout*3/2)
		}
	})
}
