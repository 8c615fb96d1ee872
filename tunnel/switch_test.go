package tunnel

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/mactable"
	"github.com/warrenvpn/warren/uapi"
)

// l2Net is a set of engines in layer 2 mode on one stepNet and clock,
// driven step by step. Node i has the outer address 198.18.0.(i+1) and the
// host MAC hostMAC(i) behind its TAP.
type l2Net struct {
	t     testing.TB
	clock *fakeClock
	net   *stepNet
	nodes []*node
}

// l2Options shape an l2Net.
type l2Options struct {
	n       int
	links   [][2]int            // who peers with whom; nil: a full mesh
	layer2  func(i int) *Layer2 // nil or returning nil: TUN mode
	peerCfg func(i, j int, pc *PeerConfig)
	logger  func(i int) *slog.Logger
}

func hostMAC(i int) mactable.MAC { return mactable.MAC{0x02, 0, 0, 0, 0, byte(0x10 + i)} }

var broadcastMAC = mactable.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func outerAddr(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(i + 1)}), uint16(51820+i))
}

func hostIP(i int) netip.Addr  { return netip.AddrFrom4([4]byte{198, 19, 0, byte(i + 1)}) }
func hostIP6(i int) netip.Addr { return netip.MustParseAddr(fmt.Sprintf("fd00:7761:2::%d", i+1)) }

func newL2Net(t testing.TB, o l2Options) *l2Net {
	t.Helper()
	m := &l2Net{t: t, clock: newFakeClock(), net: newStepNet()}
	if o.links == nil {
		for i := range o.n {
			for j := i + 1; j < o.n; j++ {
				o.links = append(o.links, [2]int{i, j})
			}
		}
	}
	for i := range o.n {
		r := seededRand(byte(i + 1))
		key, err := crypto.NewPrivateKey(r)
		if err != nil {
			t.Fatal(err)
		}
		n := &node{ad: &stepAdapter{mtu: 1406}, tr: m.net.transport(outerAddr(i)), key: key, pub: key.PublicKey(), addr: outerAddr(i)}
		opts := Options{Clock: m.clock, Rand: r, TickInterval: -1}
		if o.layer2 != nil {
			opts.Layer2 = o.layer2(i)
		}
		if o.logger != nil {
			opts.Logger = o.logger(i)
		}
		n.e = newEngine(n.ad, n.tr, opts)
		n.out = newOutbound(16)
		n.in = newInbound(16)
		t.Cleanup(func() { n.e.Close() })
		m.nodes = append(m.nodes, n)
	}
	cfgs := make([]Config, o.n)
	for i := range o.n {
		cfgs[i] = Config{PrivateKey: m.nodes[i].key, ListenPort: outerAddr(i).Port()}
	}
	for _, l := range o.links {
		for _, d := range [][2]int{l, {l[1], l[0]}} {
			i, j := d[0], d[1]
			pc := PeerConfig{PublicKey: m.nodes[j].pub, Endpoint: outerAddr(j)}
			if o.peerCfg != nil {
				o.peerCfg(i, j, &pc)
			}
			cfgs[i].Peers = append(cfgs[i].Peers, pc)
		}
	}
	for i, n := range m.nodes {
		if err := n.e.SetConfig(cfgs[i]); err != nil {
			t.Fatalf("SetConfig: %v", err)
		}
		if err := n.e.Up(); err != nil {
			t.Fatalf("Up: %v", err)
		}
	}
	return m
}

// stepL2 moves what is pending on n once and reports whether anything
// moved.
func (n *node) stepL2() bool {
	moved := false
	if k, _ := n.ad.Read(n.out.bufs, n.out.sizes, n.e.adapterOffset()); k > 0 {
		n.e.processOutbound(n.out, k)
		moved = true
	}
	if k, _ := n.tr.Receive(n.in.bufs, n.in.sizes, n.in.eps, n.in.locals); k > 0 {
		n.e.processInbound(n.in, k)
		moved = true
	}
	if len(n.e.handshakes) > 0 || len(n.e.handshakesMAC2) > 0 || len(n.e.initiations) > 0 {
		n.e.drainHandshakes()
		moved = true
	}
	return moved
}

func (m *l2Net) run() {
	m.t.Helper()
	for range 10000 {
		moved := false
		for _, n := range m.nodes {
			moved = n.stepL2() || moved
		}
		if !moved {
			return
		}
	}
	m.t.Fatal("network did not settle")
}

// written returns what each node's TAP received since the last call.
func (m *l2Net) written() [][][]byte {
	out := make([][][]byte, len(m.nodes))
	for i, n := range m.nodes {
		out[i] = n.ad.written()
	}
	return out
}

// peerOf returns node i's peer for node j.
func (m *l2Net) peerOf(i, j int) *peer { return m.nodes[i].e.peerByKey(m.nodes[j].pub) }

// ethFrame builds an Ethernet frame.
func ethFrame(dst, src mactable.MAC, etherType uint16, payload []byte) []byte {
	f := make([]byte, 0, ethHeaderSize+len(payload))
	f = append(f, dst[:]...)
	f = append(f, src[:]...)
	f = binary.BigEndian.AppendUint16(f, etherType)
	return append(f, payload...)
}

// arpFrame is an ARP request from host (mac, ip) for target.
func arpFrame(mac mactable.MAC, ip, target netip.Addr) []byte {
	a := []byte{0, 1, 8, 0, 6, 4, 0, 1}
	a = append(a, mac[:]...)
	a = append(a, ip.AsSlice()...)
	a = append(a, 0, 0, 0, 0, 0, 0)
	a = append(a, target.AsSlice()...)
	return ethFrame(broadcastMAC, mac, etherTypeARP, a)
}

// ipFrame is a UDP packet from src to dst in a frame from smac to dmac.
func ipFrame(dmac, smac mactable.MAC, src, dst netip.Addr, payload string) []byte {
	et := uint16(etherTypeIPv4)
	if src.Is6() {
		et = etherTypeIPv6
	}
	return ethFrame(dmac, smac, et, ping(src, dst, payload))
}

// framePayload puts the frame header in front of f.
func framePayload(f []byte) []byte {
	b := make([]byte, frameHeaderSize, frameHeaderSize+len(f))
	putFrameHeader(b, len(f))
	return append(b, f...)
}

// l2Established returns a mesh of n layer 2 nodes whose hosts have all
// announced themselves (every MAC learned everywhere) and no frame left.
func l2Established(t testing.TB, o l2Options) *l2Net {
	t.Helper()
	if o.layer2 == nil {
		o.layer2 = func(int) *Layer2 { return &Layer2{} }
	}
	m := newL2Net(t, o)
	for i, n := range m.nodes {
		n.ad.inject(arpFrame(hostMAC(i), hostIP(i), hostIP((i+1)%len(m.nodes))))
		m.run()
	}
	m.written()
	return m
}

func TestL2UnicastAndBroadcast(t *testing.T) {
	m := l2Established(t, l2Options{n: 2})
	a, b := m.nodes[0], m.nodes[1]
	// The ARP broadcasts of the setup taught each side the other's host.
	if got := b.e.MACTable(); len(got) != 2 || got[0].MAC != hostMAC(0) || got[0].Peer != a.pub || !got[1].Local {
		t.Fatalf("b's MAC table = %+v, want host 0 at a and host 1 local", got)
	}
	f := ipFrame(hostMAC(1), hostMAC(0), hostIP(0), hostIP(1), "to b")
	a.ad.inject(f)
	m.run()
	w := m.written()
	if len(w[1]) != 1 || !bytes.Equal(w[1][0], f) || len(w[0]) != 0 {
		t.Fatalf("unicast: a's TAP got %d, b's %d frames (want 0, 1 identical); drops %v", len(w[0]), len(w[1]), b.e.DropCounts())
	}
	// IPv6 and a frame to a host on the same side.
	a.ad.inject(ipFrame(hostMAC(1), hostMAC(0), hostIP6(0), hostIP6(1), "v6"),
		ipFrame(hostMAC(0), mactable.MAC{2, 0, 0, 0, 0, 0x99}, hostIP(5), hostIP(0), "local"))
	m.run()
	w = m.written()
	if len(w[1]) != 1 || payloadOf(w[1][0][ethHeaderSize:]) != "v6" {
		t.Errorf("IPv6 unicast: b's TAP got %d frames, want 1", len(w[1]))
	}
	if got := a.e.Drops(DropLocalDestination); got != 1 {
		t.Errorf("local_destination = %d, want 1", got)
	}
}

// TestT2FloodOnce: in a three-site full mesh one broadcast reaches every
// other site exactly once and nothing loops; an unknown unicast is flooded
// the same way.
func TestT2FloodOnce(t *testing.T) {
	m := l2Established(t, l2Options{n: 3})
	for _, f := range [][]byte{
		arpFrame(hostMAC(0), hostIP(0), hostIP(9)),
		ipFrame(mactable.MAC{2, 9, 9, 9, 9, 9}, hostMAC(0), hostIP(0), hostIP(9), "unknown"),
		ipFrame(mactable.MAC{0x01, 0, 0x5e, 0, 0, 1}, hostMAC(0), hostIP(0), netip.MustParseAddr("224.0.0.1"), "multicast"),
	} {
		sent := m.net.sentTo(outerAddr(1)) + m.net.sentTo(outerAddr(2)) + m.net.sentTo(outerAddr(0))
		m.nodes[0].ad.inject(f)
		m.run()
		w := m.written()
		if len(w[0]) != 0 || len(w[1]) != 1 || len(w[2]) != 1 {
			t.Errorf("frame to %x: TAPs got %d, %d, %d frames, want 0, 1, 1", f[:6], len(w[0]), len(w[1]), len(w[2]))
		}
		if got := m.net.sentTo(outerAddr(1)) + m.net.sentTo(outerAddr(2)) + m.net.sentTo(outerAddr(0)) - sent; got != 2 {
			t.Errorf("frame to %x: %d datagrams, want 2 (one per peer, no loop)", f[:6], got)
		}
	}
	// Steady after traffic stops.
	before := m.net.sentTo(outerAddr(1))
	m.run()
	if after := m.net.sentTo(outerAddr(1)); after != before {
		t.Errorf("datagrams kept flowing after traffic stopped: %d then %d", before, after)
	}
}

// TestL2Forward: spokes that peer only with a hub reach each other through
// it with Forward = true, and not without it (split horizon).
func TestL2Forward(t *testing.T) {
	for _, forward := range []bool{true, false} {
		t.Run(fmt.Sprint("forward=", forward), func(t *testing.T) {
			m := newL2Net(t, l2Options{n: 3, links: [][2]int{{0, 1}, {0, 2}}, layer2: func(i int) *Layer2 {
				return &Layer2{Forward: i == 0 && forward}
			}})
			m.nodes[1].ad.inject(arpFrame(hostMAC(1), hostIP(1), hostIP(2)))
			m.run()
			w := m.written()
			if want := map[bool]int{true: 1, false: 0}[forward]; len(w[2]) != want || len(w[0]) != 1 {
				t.Fatalf("broadcast from spoke 1: hub got %d, spoke 2 got %d, want 1, %d", len(w[0]), len(w[2]), want)
			}
			m.nodes[2].ad.inject(ipFrame(hostMAC(1), hostMAC(2), hostIP(2), hostIP(1), "via hub"))
			m.run()
			w = m.written()
			if forward && (len(w[1]) != 1 || len(w[0]) != 0) {
				t.Errorf("unicast spoke 2 to spoke 1: spoke 1 got %d, hub %d, want 1, 0; hub drops %v", len(w[1]), len(w[0]), m.nodes[0].e.DropCounts())
			}
			if !forward && m.nodes[0].e.Drops(DropSplitHorizon) != 1 {
				t.Errorf("split_horizon = %d, want 1", m.nodes[0].e.Drops(DropSplitHorizon))
			}
		})
	}
}

// TestT1Spoofing: frames with a source MAC outside the sender's
// AllowedMACs or inside another peer's, or a sender address outside its
// AllowedIPs, are dropped and counted, and the victim's binding stays.
func TestT1Spoofing(t *testing.T) {
	m := l2Established(t, l2Options{n: 3, peerCfg: func(i, j int, pc *PeerConfig) {
		pc.AllowedMACs = []mactable.MAC{hostMAC(j)}
		pc.AllowedIPs = []netip.Prefix{netip.PrefixFrom(hostIP(j), 32), netip.PrefixFrom(hostIP6(j), 128)}
	}})
	victim := m.peerOf(0, 1)
	tests := []struct {
		name  string
		frame []byte
		want  DropReason
	}{
		{"MAC outside AllowedMACs", ipFrame(hostMAC(0), mactable.MAC{2, 7, 7, 7, 7, 7}, hostIP(2), hostIP(0), "x"), DropSpoofedMAC},
		{"another peer's MAC", ipFrame(hostMAC(0), hostMAC(1), hostIP(2), hostIP(0), "x"), DropSpoofedMAC},
		{"IPv4 sender", ipFrame(hostMAC(0), hostMAC(2), hostIP(1), hostIP(0), "x"), DropSourceCheck},
		{"IPv6 sender", ipFrame(hostMAC(0), hostMAC(2), hostIP6(1), hostIP6(0), "x"), DropSourceCheck},
		{"ARP sender", arpFrame(hostMAC(2), hostIP(1), hostIP(0)), DropSourceCheck},
		{"other EtherType", ethFrame(hostMAC(0), hostMAC(2), 0x88cc, make([]byte, 46)), DropEtherType},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := m.nodes[0].e
			before := e.Drops(tc.want)
			m.nodes[2].ad.inject(tc.frame)
			m.run()
			if w := m.written(); len(w[0]) != 0 {
				t.Errorf("node 0's TAP got %d frames, want 0", len(w[0]))
			}
			if got := e.Drops(tc.want) - before; got != 1 {
				t.Errorf("%v drops = %d, want 1 (all %v)", tc.want, got, e.DropCounts())
			}
			if p, ok := e.l2.macs.Lookup(hostMAC(1), m.clock.Now()); !ok || p != victim {
				t.Errorf("the victim's MAC is bound to %v, %v, want peer 1", p, ok)
			}
		})
	}
	// A group source MAC: node 2 would not send it; as if it did.
	before := m.nodes[0].e.Drops(DropSpoofedMAC)
	pt := framePayload(ipFrame(hostMAC(0), broadcastMAC, hostIP(2), hostIP(0), "x"))
	if _, ok := m.nodes[0].e.inboundFrame(m.peerOf(0, 2), pt, m.clock.Now()); ok || m.nodes[0].e.Drops(DropSpoofedMAC) != before+1 {
		t.Errorf("group source MAC: passed %v, spoofed_mac %d, want false, %d", ok, m.nodes[0].e.Drops(DropSpoofedMAC), before+1)
	}
	// The allowed frame still passes, and DHCP's unspecified source too.
	m.nodes[2].ad.inject(ipFrame(hostMAC(0), hostMAC(2), hostIP(2), hostIP(0), "ok"),
		ipFrame(broadcastMAC, hostMAC(2), netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255}), "dhcp"))
	m.run()
	if w := m.written(); len(w[0]) != 2 {
		t.Errorf("allowed frames: node 0's TAP got %d, want 2; drops %v", len(w[0]), m.nodes[0].e.DropCounts())
	}
}

// TestL2MACMove: a MAC that shows up behind another peer moves at once
// and is counted.
func TestL2MACMove(t *testing.T) {
	m := l2Established(t, l2Options{n: 3})
	m.nodes[2].ad.inject(arpFrame(hostMAC(1), hostIP(1), hostIP(0))) // host 1 migrated to site 2
	m.run()
	e := m.nodes[0].e
	if p, _ := e.l2.macs.Lookup(hostMAC(1), m.clock.Now()); p != m.peerOf(0, 2) || e.MACMoves() != 1 {
		t.Errorf("after the move: bound to %v, moves %d; want peer 2, 1", p, e.MACMoves())
	}
}

// TestL2Ageing: on the fake clock, entries expire after MACAgeing and
// unicast to an expired MAC is flooded again.
func TestL2Ageing(t *testing.T) {
	m := l2Established(t, l2Options{n: 3, layer2: func(int) *Layer2 { return &Layer2{MACAgeing: 30 * time.Second} }})
	m.clock.advance(29 * time.Second)
	if got := len(m.nodes[0].e.MACTable()); got != 3 {
		t.Errorf("before ageing: %d entries, want 3", got)
	}
	m.clock.advance(time.Second)
	if got := len(m.nodes[0].e.MACTable()); got != 0 {
		t.Errorf("after ageing: %d entries, want 0", got)
	}
	m.nodes[0].ad.inject(ipFrame(hostMAC(1), hostMAC(0), hostIP(0), hostIP(1), "flooded"))
	m.run()
	if w := m.written(); len(w[1]) != 1 || len(w[2]) != 1 {
		t.Errorf("unicast to an expired MAC reached %d, %d sites, want 1, 1 (flooded)", len(w[1]), len(w[2]))
	}
	// The periodic sweep empties the table.
	m.clock.advance(time.Hour)
	m.nodes[1].ad.inject(arpFrame(hostMAC(1), hostIP(1), hostIP(0)))
	m.run()
	if got := m.nodes[1].e.l2.macs.Len(); got != 1 {
		t.Errorf("after a sweep node 1 holds %d entries, want 1", got)
	}
}

// TestL2Bounds: a peer flooding random source MACs fills its share of the
// table and no more; the drops are counted.
func TestL2Bounds(t *testing.T) {
	m := l2Established(t, l2Options{n: 2, layer2: func(i int) *Layer2 { return &Layer2{MaxMACsPerPeer: 8 + 1000*i} }})
	for i := range 100 {
		m.nodes[1].ad.inject(ipFrame(broadcastMAC, mactable.MAC{2, 1, 0, 0, byte(i >> 8), byte(i)}, hostIP(1), hostIP(0), "x"))
	}
	m.run()
	e := m.nodes[0].e
	if got := e.l2.macs.Len(); got != 9 {
		t.Errorf("node 0 holds %d MACs, want 9 (its own host, host 1 and 7 of the flood)", got)
	}
	if got := e.Drops(DropMACTableFull); got != 93 {
		t.Errorf("mac_table_full = %d, want 93", got)
	}
}

// TestL2BadFrames: short, oversized and malformed frames are dropped and
// counted, with no state change (T5).
func TestL2BadFrames(t *testing.T) {
	m := l2Established(t, l2Options{n: 2})
	a, b := m.nodes[0], m.nodes[1]
	a.ad.inject(make([]byte, 13), ethFrame(hostMAC(1), hostMAC(0), etherTypeIPv4, make([]byte, 1406+vlanTagSize+1)))
	m.run()
	if got := a.e.Drops(DropFrameSize); got != 2 {
		t.Errorf("frame_size = %d, want 2", got)
	}
	for _, tc := range []struct {
		name    string
		payload []byte
		want    DropReason
	}{
		{"bad flags", []byte{frameMarker, 1, 0, 14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, DropFrameError},
		{"unknown marker", []byte{0x20, 0, 0, 14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, DropFrameError},
		{"length past the payload", []byte{frameMarker, 0, 0, 200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, DropLengthError},
		{"shorter than a header", []byte{frameMarker, 0, 0, 13, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, DropLengthError},
		{"truncated IPv4", append([]byte{frameMarker, 0, 0, 24}, ethFrame(hostMAC(0), hostMAC(1), etherTypeIPv4, make([]byte, 10))...), DropFrameError},
		{"three VLAN tags", append([]byte{frameMarker, 0, 0, 40}, ethFrame(hostMAC(0), hostMAC(1), etherTypeVLAN, []byte{0, 1, 0x81, 0, 0, 2, 0x81, 0, 0, 3, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})...), DropFrameError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, macs := a.e.Drops(tc.want), a.e.MACTable()
			m.net.inject(b.addr, a.addr, b.sealed(t, tc.payload))
			m.run()
			if got := a.e.Drops(tc.want) - before; got != 1 {
				t.Errorf("%v drops = %d, want 1 (all %v)", tc.want, got, a.e.DropCounts())
			}
			if w := m.written(); len(w[0]) != 0 {
				t.Errorf("a's TAP got %d frames, want 0", len(w[0]))
			}
			if got := a.e.MACTable(); len(got) != len(macs) {
				t.Errorf("MAC table changed: %v, was %v", got, macs)
			}
		})
	}
	// A VLAN-tagged frame goes through.
	vlan := ethFrame(hostMAC(0), hostMAC(1), etherTypeVLAN, append([]byte{0, 5, 8, 0}, ping(hostIP(1), hostIP(0), "vlan")...))
	b.ad.inject(vlan)
	m.run()
	if w := m.written(); len(w[0]) != 1 || !bytes.Equal(w[0][0], vlan) {
		t.Errorf("VLAN frame: a's TAP got %d frames, want it once; drops %v", len(w[0]), a.e.DropCounts())
	}
}

// recordingHandler keeps log records' messages.
type recordingHandler struct {
	mu   sync.Mutex
	msgs []string
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.msgs = append(h.msgs, r.Message)
	h.mu.Unlock()
	return nil
}
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordingHandler) count(substr string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.msgs {
		if strings.Contains(m, substr) {
			n++
		}
	}
	return n
}

// TestT3ModeMismatch: a TAP-mode engine and a TUN-mode one that peer with
// each other write nothing garbled, count the drops, and each logs one line
// saying what to change.
func TestT3ModeMismatch(t *testing.T) {
	logs := []*recordingHandler{{}, {}}
	m := newL2Net(t, l2Options{n: 2,
		layer2: func(i int) *Layer2 {
			if i == 0 {
				return &Layer2{}
			}
			return nil
		},
		peerCfg: func(i, j int, pc *PeerConfig) {
			if i == 1 {
				pc.AllowedIPs = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
			}
		},
		logger: func(i int) *slog.Logger { return slog.New(logs[i]) },
	})
	tap, tun := m.nodes[0], m.nodes[1]
	for range 5 {
		tap.ad.inject(arpFrame(hostMAC(0), hostIP(0), hostIP(1)))
		m.run()
		tun.ad.inject(ping(hostIP(1), hostIP(0), "ip"))
		m.run()
	}
	if w := m.written(); len(w[0]) != 0 || len(w[1]) != 0 {
		t.Errorf("TAP side wrote %d, TUN side %d, want nothing", len(w[0]), len(w[1]))
	}
	if got := tap.e.Drops(DropModeMismatch); got != 5 {
		t.Errorf("TAP side mode_mismatch = %d, want 5", got)
	}
	if got := tun.e.Drops(DropFrameError); got != 5 {
		t.Errorf("TUN side frame_error = %d, want 5", got)
	}
	if got := logs[0].count("set Mode = tap in its [Interface]"); got != 1 {
		t.Errorf("TAP side logged the mismatch %d times, want 1: %q", got, logs[0].msgs)
	}
	if got := logs[1].count("set Mode = tun in its [Interface]"); got != 1 {
		t.Errorf("TUN side logged the mismatch %d times, want 1: %q", got, logs[1].msgs)
	}
}

// l2Pump returns two established layer 2 nodes where a's sends land in
// b's inbound scratch (pumpSink) and b's TAP keeps nothing.
func l2Pump(tb testing.TB) (a, b *node, sink *pumpSink) {
	m := l2Established(tb, l2Options{n: 2})
	a, b = m.nodes[0], m.nodes[1]
	sink = &pumpSink{in: b.in}
	a.e.tr.Store(newTransportBox(sink))
	b.ad.discard = true
	return a, b, sink
}

// TestL2Allocs pins the frame path at zero allocations per frame, both
// ways, unicast and broadcast (STYLE "Hot path").
func TestL2Allocs(t *testing.T) {
	a, b, sink := l2Pump(t)
	for name, f := range map[string][]byte{
		"unicast":   ipFrame(hostMAC(1), hostMAC(0), hostIP(0), hostIP(1), "alloc"),
		"broadcast": arpFrame(hostMAC(0), hostIP(0), hostIP(1)),
	} {
		run := func() {
			a.out.sizes[0] = copy(a.out.bufs[0][a.e.adapterOffset():], f)
			sink.n = 0
			a.e.processOutbound(a.out, 1)
			b.e.processInbound(b.in, sink.n)
		}
		run()
		if n := testing.AllocsPerRun(200, run); n != 0 {
			t.Errorf("%s: %v allocations per frame, want 0", name, n)
		}
		if sink.n != 1 {
			t.Errorf("%s: %d datagrams per frame, want 1", name, sink.n)
		}
	}
}

// TestL2RunCounts: runs of frames with the same MACs are learned and looked
// up once per batch, out and in, and the MAC table still counts every
// frame, wherever other frames cut the runs.
func TestL2RunCounts(t *testing.T) {
	a, b, sink := l2Pump(t)
	counts := func(n *node) map[mactable.MAC]uint64 {
		c := map[mactable.MAC]uint64{}
		for _, m := range n.e.MACTable() {
			c[m.MAC] = m.Frames
		}
		return c
	}
	before := map[*node]map[mactable.MAC]uint64{a: counts(a), b: counts(b)}
	srcs := []int{0, 0, 0, 2, 2, 0, 3, 0, 0}
	for range 2 {
		for i, s := range srcs {
			f := ipFrame(hostMAC(1), hostMAC(s), hostIP(0), hostIP(1), "run")
			a.out.sizes[i] = copy(a.out.bufs[i][a.e.adapterOffset():], f)
		}
		sink.n = 0
		a.e.processOutbound(a.out, len(srcs))
		b.e.processInbound(b.in, sink.n)
		if sink.n != len(srcs) {
			t.Fatalf("%d datagrams, want %d", sink.n, len(srcs))
		}
	}
	// Each frame counts on its source and its (known) destination.
	want := map[mactable.MAC]uint64{hostMAC(0): 12, hostMAC(1): 18, hostMAC(2): 4, hostMAC(3): 2}
	for name, n := range map[string]*node{"a": a, "b": b} {
		got := counts(n)
		for m := range got {
			got[m] -= before[n][m]
		}
		if !maps.Equal(got, want) {
			t.Errorf("%s: frames per MAC %v, want %v", name, got, want)
		}
	}
}

// BenchmarkL2Frames measures the frame path: a batch of 16 unicast frames
// of 1342 bytes switched, sealed and sent, then received, opened, checked
// and written.
func BenchmarkL2Frames(b *testing.B) {
	na, nb, sink := l2Pump(b)
	f := ipFrame(hostMAC(1), hostMAC(0), hostIP(0), hostIP(1), strings.Repeat("x", 1300))
	b.ReportAllocs()
	b.SetBytes(int64(16 * len(f)))
	for b.Loop() {
		for i := range 16 {
			na.out.sizes[i] = copy(na.out.bufs[i][na.e.adapterOffset():], f)
		}
		sink.n = 0
		na.e.processOutbound(na.out, 16)
		nb.e.processInbound(nb.in, sink.n)
	}
}

// FuzzInboundFrame feeds arbitrary authenticated payloads to a layer 2
// engine (T5): no panic, and a payload whose frame header or sender is bad
// changes no MAC table entry.
func FuzzInboundFrame(f *testing.F) {
	f.Add(framePayload(arpFrame(hostMAC(1), hostIP(1), hostIP(0))))
	f.Add(framePayload(ipFrame(hostMAC(0), hostMAC(1), hostIP(1), hostIP(0), "fuzz")))
	f.Add([]byte{frameMarker, 0, 0xff, 0xff})
	f.Add([]byte{0x45, 0, 0, 20})
	f.Add(framePayload(ethFrame(hostMAC(0), hostMAC(1), etherTypeQinQ, []byte{0, 1, 0x81, 0, 0, 2, 8, 6, 0, 0, 0, 0})))
	m := l2Established(f, l2Options{n: 2, peerCfg: func(i, j int, pc *PeerConfig) {
		pc.AllowedIPs = []netip.Prefix{netip.PrefixFrom(hostIP(j), 32)}
	}})
	a, b := m.nodes[0], m.nodes[1]
	a.ad.discard = true
	p := m.peerOf(0, 1)
	f.Fuzz(func(t *testing.T, pt []byte) {
		if len(pt) == 0 {
			return
		}
		frame, _, ok := parseFrame(pt)
		bad := !ok
		if ok {
			_, _, ok = frameSender(frame)
			bad = !ok
		}
		before := a.e.MACTable()
		_, _ = a.e.inboundFrame(p, pt, m.clock.Now())
		if after := a.e.MACTable(); bad && fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("bad frame %x changed the MAC table: %v, was %v", pt, after, before)
		}
		_ = b
	})
}

// TestL2SharedSubnetAfterUAPI: two peers that list the same subnet (one
// subnet spread over sites) both keep it for the sender check after a
// UAPI set that leaves their allowed IPs alone, and a replacement narrows
// only the peer it names.
func TestL2SharedSubnetAfterUAPI(t *testing.T) {
	subnet := netip.MustParsePrefix("198.19.0.0/24")
	m := l2Established(t, l2Options{n: 3, peerCfg: func(i, j int, pc *PeerConfig) {
		pc.AllowedIPs = []netip.Prefix{subnet}
	}})
	e := m.nodes[0].e
	ka := uint16(25)
	if err := e.Apply(&uapi.Change{Peers: []uapi.PeerChange{
		{PublicKey: m.nodes[1].pub, UpdateOnly: true, PersistentKeepalive: &ka},
		{PublicKey: m.nodes[2].pub, UpdateOnly: true, ReplaceAllowedIPs: true,
			AllowedIPs: []uapi.AllowedIPChange{{Prefix: netip.PrefixFrom(hostIP(2), 32)}}},
	}}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	now := m.clock.Now()
	for _, tc := range []struct {
		from   int
		sender netip.Addr
		ok     bool
	}{
		{1, hostIP(1), true},
		{1, hostIP(7), true},                          // the whole subnet, though the table gave it to peer 2
		{1, netip.MustParseAddr("198.20.0.1"), false}, // and nothing else
		{2, hostIP(2), true},
		{2, hostIP(7), false}, // narrowed to its /32
	} {
		f := framePayload(ipFrame(hostMAC(0), hostMAC(tc.from), tc.sender, hostIP(0), "x"))
		if _, ok := e.inboundFrame(m.peerOf(0, tc.from), f, now); ok != tc.ok {
			t.Errorf("frame from peer %d with sender %v: passed %v, want %v", tc.from, tc.sender, ok, tc.ok)
		}
	}
}

// TestL2SetAllowedMACs: a reload's AllowedMACs apply at once (T1): a MAC
// a peer no longer lists is unbound and its frames dropped, a MAC newly
// listed for another peer leaves its old binding, and an empty list lets
// any source through again. SetForward turns the hub on and off.
func TestL2SetAllowedMACs(t *testing.T) {
	m := l2Established(t, l2Options{n: 3})
	e := m.nodes[0].e
	stray := mactable.MAC{2, 7, 7, 7, 7, 7}
	m.nodes[1].ad.inject(arpFrame(stray, hostIP(1), hostIP(0)))
	m.run()
	m.written()
	if p, ok := e.l2.macs.Lookup(stray, m.clock.Now()); !ok || p != m.peerOf(0, 1) {
		t.Fatalf("stray MAC bound to %v, %v, want peer 1", p, ok)
	}
	// Peer 1 may send only from its host's MAC; peer 2 gets the stray one.
	e.SetAllowedMACs([]PeerConfig{
		{PublicKey: m.nodes[1].pub, AllowedMACs: []mactable.MAC{hostMAC(1)}},
		{PublicKey: m.nodes[2].pub, AllowedMACs: []mactable.MAC{hostMAC(2), stray}},
	})
	if _, ok := e.l2.macs.Lookup(stray, m.clock.Now()); ok {
		t.Errorf("stray MAC still bound after it was listed for peer 2")
	}
	if got := e.allowedMACsOf(m.peerOf(0, 2)); len(got) != 2 {
		t.Errorf("peer 2's AllowedMACs = %v, want 2", got)
	}
	before := e.Drops(DropSpoofedMAC)
	m.nodes[1].ad.inject(arpFrame(stray, hostIP(1), hostIP(0)), arpFrame(mactable.MAC{2, 8, 8, 8, 8, 8}, hostIP(1), hostIP(0)))
	m.run()
	if w := m.written(); len(w[0]) != 0 || e.Drops(DropSpoofedMAC)-before != 2 {
		t.Errorf("after the reload: %d frames from unlisted MACs reached the TAP, spoofed_mac +%d, want 0, +2", len(w[0]), e.Drops(DropSpoofedMAC)-before)
	}
	m.nodes[1].ad.inject(arpFrame(hostMAC(1), hostIP(1), hostIP(0)))
	m.run()
	if w := m.written(); len(w[0]) != 1 {
		t.Errorf("peer 1's listed MAC: %d frames reached the TAP, want 1", len(w[0]))
	}
	// Lists emptied: anything goes again; unknown peers are ignored.
	e.SetAllowedMACs([]PeerConfig{{PublicKey: m.nodes[1].pub}, {PublicKey: m.nodes[2].pub}, {PublicKey: crypto.PublicKey{9}, AllowedMACs: []mactable.MAC{stray}}})
	m.nodes[1].ad.inject(arpFrame(stray, hostIP(1), hostIP(0)))
	m.run()
	if w := m.written(); len(w[0]) != 1 {
		t.Errorf("after the lists were emptied: %d frames reached the TAP, want 1", len(w[0]))
	}
	if e.l2.forward.Load() {
		t.Fatal("Forward on without being asked")
	}
	e.SetForward(true)
	if !e.l2.forward.Load() {
		t.Error("SetForward(true) left Forward off")
	}
}

// vlanFrame is ethFrame with one 802.1Q tag (VLAN id) before etherType.
func vlanFrame(dst, src mactable.MAC, id uint16, etherType uint16, payload []byte) []byte {
	tagged := binary.BigEndian.AppendUint16(nil, id)
	tagged = binary.BigEndian.AppendUint16(tagged, etherType)
	return ethFrame(dst, src, etherTypeVLAN, append(tagged, payload...))
}

// TestT4FrameOverPathMTU: a TAP whose MTU is the LAN's 1500 on a path
// that carries 1500-byte datagrams (1440 bytes of plaintext over IPv4).
// The first full frame fails in the transport and lowers the peer's path
// MTU; then each frame over it is dropped and counted, and an IPv4 packet
// with DF or an IPv6 packet in it is answered on the TAP with ICMP in an
// Ethernet frame from the destination's MAC to the sender's, with the
// frame's VLAN tag, carrying the IP MTU such a frame leaves (1440 - 4 -
// 14, or 4 less tagged). A frame that fits crosses; an IPv4 packet
// without DF gets no answer; a flooded frame is answered once.
func TestT4FrameOverPathMTU(t *testing.T) {
	m := l2Established(t, l2Options{n: 2})
	a := m.nodes[0]
	a.ad.mtu = 1500
	w := a.narrow(1500)
	big := func(src, dst netip.Addr, df bool) []byte { return testPacket(src, dst, 1500, df) }
	a.ad.inject(ipFrame(hostMAC(1), hostMAC(0), hostIP(0), hostIP(1), strings.Repeat("x", 1500-28)))
	m.run()
	if got, errs := a.e.Drops(DropPathMTU), a.e.Drops(DropSendError); got != 1 || errs != 0 {
		t.Fatalf("path_mtu = %d, send_error = %d, want 1 (the frame that met the narrow path) and 0", got, errs)
	}
	if inner := m.peerOf(0, 1).pmtu.inner.Load(); inner != 1440 {
		t.Fatalf("path MTU = %d bytes of plaintext, want 1440", inner)
	}
	m.written()

	for _, tc := range []struct {
		name  string
		frame []byte
		pkt   []byte
		hdr   int // Ethernet header and tags
		reply bool
	}{
		{"IPv4 DF", nil, big(hostIP(0), hostIP(1), true), ethHeaderSize, true},
		{"IPv6", nil, big(hostIP6(0), hostIP6(1), false), ethHeaderSize, true},
		{"IPv4 DF tagged", nil, big(hostIP(0), hostIP(1), true), ethHeaderSize + vlanTagSize, true},
		{"IPv4 without DF", nil, big(hostIP(0), hostIP(1), false), ethHeaderSize, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			et := uint16(etherTypeIPv4)
			if tc.pkt[0]>>4 == 6 {
				et = etherTypeIPv6
			}
			f := ethFrame(hostMAC(1), hostMAC(0), et, tc.pkt)
			if tc.hdr > ethHeaderSize {
				f = vlanFrame(hostMAC(1), hostMAC(0), 7, et, tc.pkt)
			}
			drops := a.e.Drops(DropPathMTU)
			a.ad.inject(f)
			m.run()
			if got := a.e.Drops(DropPathMTU) - drops; got != 1 {
				t.Errorf("path_mtu drops = %d, want 1", got)
			}
			w := m.written()
			if len(w[1]) != 0 {
				t.Errorf("b's TAP got %d frames, want none", len(w[1]))
			}
			if !tc.reply {
				if len(w[0]) != 0 {
					t.Errorf("a's TAP got %d frames, want no reply", len(w[0]))
				}
				return
			}
			if len(w[0]) != 1 {
				t.Fatalf("a's TAP got %d frames, want 1 ICMP reply", len(w[0]))
			}
			r := w[0][0]
			if dst, src := frameMACs(r); dst != hostMAC(0) || src != hostMAC(1) || !bytes.Equal(r[12:tc.hdr], f[12:tc.hdr]) {
				t.Errorf("reply's Ethernet header %x, want %x with the MACs swapped", r[:tc.hdr], f[:tc.hdr])
			}
			checkTooBig(t, r[tc.hdr:], tc.pkt, 1440-frameHeaderSize-tc.hdr)
		})
	}
	if got := a.e.Drops(DropSendError); got != 0 {
		t.Errorf("send_error = %d, want 0: nothing over the limit reached the transport", got)
	}

	fits := ipFrame(hostMAC(1), hostMAC(0), hostIP(0), hostIP(1), strings.Repeat("y", 1422-28))
	a.ad.inject(fits)
	m.run()
	if w := m.written(); len(w[1]) != 1 || !bytes.Equal(w[1][0], fits) || len(w[0]) != 0 {
		t.Errorf("a frame of the path MTU: b's TAP got %d frames, a's %d; want it at b", len(w[1]), len(w[0]))
	}

	// Flooded (an unknown destination MAC): answered once, sent nowhere.
	drops, sent := a.e.Drops(DropPathMTU), m.net.sentTo(outerAddr(1))
	pkt := big(hostIP(0), hostIP(1), true)
	a.ad.inject(ethFrame(mactable.MAC{2, 9, 9, 9, 9, 9}, hostMAC(0), etherTypeIPv4, pkt))
	m.run()
	w2 := m.written()
	if got := a.e.Drops(DropPathMTU) - drops; got != 1 || len(w2[0]) != 1 || len(w2[1]) != 0 || m.net.sentTo(outerAddr(1)) != sent {
		t.Errorf("flooded frame over the path MTU: path_mtu +%d, a's TAP %d frames, b's %d, datagrams +%d; want +1, 1, 0, +0",
			got, len(w2[0]), len(w2[1]), m.net.sentTo(outerAddr(1))-sent)
	} else {
		checkTooBig(t, w2[0][0][ethHeaderSize:], pkt, 1440-frameHeaderSize-ethHeaderSize)
	}
	if w.queries.Load() != 0 {
		t.Errorf("PathMTU asked %d times before the probe interval", w.queries.Load())
	}
}

// TestT4FrameReplyAllocs pins the answer to a frame over the path MTU at
// zero allocations once its reply buffer exists (STYLE "Hot path").
func TestT4FrameReplyAllocs(t *testing.T) {
	m := l2Established(t, l2Options{n: 2})
	a := m.nodes[0]
	a.ad.discard = true
	payload := framePayload(ethFrame(hostMAC(1), hostMAC(0), etherTypeIPv4, testPacket(hostIP(0), hostIP(1), 1500, true)))
	var s pmtuScratch
	run := func() {
		a.e.overPathMTUFrame(&s, payload, 1440)
		if s.n != 1 {
			t.Fatalf("%d replies queued, want 1", s.n)
		}
		a.e.finishPathMTU(&s, a.ad)
	}
	run()
	if n := testing.AllocsPerRun(200, run); n != 0 {
		t.Errorf("%v allocations per answered frame, want 0", n)
	}
}

// FuzzOverPathMTUFrame feeds arbitrary frames from the TAP over an
// arbitrary path MTU to the ICMP answer of T4: no panic, and a reply, if
// any, is a frame from the frame's destination MAC to its source, with
// its Ethernet header and tags, no longer than maxReplyFrame.
func FuzzOverPathMTUFrame(f *testing.F) {
	f.Add(ethFrame(hostMAC(1), hostMAC(0), etherTypeIPv4, testPacket(hostIP(0), hostIP(1), 1500, true)), 1440)
	f.Add(vlanFrame(hostMAC(1), hostMAC(0), 7, etherTypeIPv6, testPacket(hostIP6(0), hostIP6(1), 1500, false)), 1440)
	f.Add(ethFrame(hostMAC(1), hostMAC(0), etherTypeQinQ, []byte{0, 1, 0x81, 0, 0, 2, 8, 0}), 100)
	m := l2Established(f, l2Options{n: 2})
	e := m.nodes[0].e
	var s pmtuScratch
	f.Fuzz(func(t *testing.T, frame []byte, lim int) {
		if len(frame) < ethHeaderSize || len(frame) > 9000 {
			return // processOutboundL2 drops these first (frame_size)
		}
		payload := framePayload(frame)
		e.overPathMTUFrame(&s, payload, lim)
		for _, r := range s.replies[:s.n] {
			r = r[e.adapterOffset():]
			if len(r) > maxReplyFrame {
				t.Fatalf("reply of %d bytes, more than %d", len(r), maxReplyFrame)
			}
			hdr, _, _ := frameL3(frame)
			if !bytes.Equal(r[0:6], frame[6:12]) || !bytes.Equal(r[6:12], frame[0:6]) || !bytes.Equal(r[12:hdr], frame[12:hdr]) {
				t.Fatalf("reply header %x for frame header %x", r[:hdr], frame[:hdr])
			}
		}
		for i, r := range s.replies[:s.n] {
			s.replies[i] = r[:cap(r)]
		}
		s.n = 0
	})
}

// TestT4FrameIPv6Minimum: over a path that leaves an IP packet in a frame
// less than IPv6's 1280 bytes (1340 outer: 1280 of plaintext, 1262 inside
// an untagged frame), a larger IPv6 packet learns 1280, never less, and
// one up to 1280 goes on in a datagram the kernel may fragment, where the
// transport can send one (RFC 8200 5), as for IP packets in TUN mode.
func TestT4FrameIPv6Minimum(t *testing.T) {
	m := l2Established(t, l2Options{n: 2})
	a := m.nodes[0]
	a.ad.mtu = 1500
	w := a.narrow(1340)
	a.ad.inject(ipFrame(hostMAC(1), hostMAC(0), hostIP(0), hostIP(1), strings.Repeat("x", 1400)))
	m.run()
	if inner := m.peerOf(0, 1).pmtu.inner.Load(); inner != 1280 {
		t.Fatalf("path MTU = %d bytes of plaintext, want 1280", inner)
	}
	m.written()

	big := testPacket(hostIP6(0), hostIP6(1), 1300, true)
	a.ad.inject(ethFrame(hostMAC(1), hostMAC(0), etherTypeIPv6, big))
	m.run()
	if w := m.written(); len(w[0]) != 1 || len(w[1]) != 0 {
		t.Fatalf("IPv6 of 1300 bytes: a's TAP got %d frames, b's %d; want 1 reply, none", len(w[0]), len(w[1]))
	} else {
		checkTooBig(t, w[0][0][ethHeaderSize:], big, 1280)
	}

	small := ethFrame(hostMAC(1), hostMAC(0), etherTypeIPv6, testPacket(hostIP6(0), hostIP6(1), 1270, true))
	drops := a.e.Drops(DropPathMTU)
	a.ad.inject(small)
	m.run()
	if w := m.written(); len(w[0])+len(w[1]) != 0 || a.e.Drops(DropPathMTU) != drops+1 {
		t.Errorf("IPv6 of 1270 bytes, no fragmentable send: TAPs got %d, %d frames, path_mtu +%d; want 0, 0, +1",
			len(w[0]), len(w[1]), a.e.Drops(DropPathMTU)-drops)
	}
	f := &fragTransport{pmtuTransport: w}
	a.e.tr.Store(newTransportBox(f))
	a.ad.inject(small)
	m.run()
	if w := m.written(); len(w[1]) != 1 || !bytes.Equal(w[1][0], small) || f.calls != 1 || len(w[0]) != 0 {
		t.Errorf("IPv6 of 1270 bytes: b's TAP got %d frames, %d fragmentable sends, a's TAP %d; want the frame, 1, 0", len(w[1]), f.calls, len(w[0]))
	}
	if out := a.e.pool.out.Load(); out != 0 {
		t.Errorf("%d pool buffers not returned", out)
	}
}
