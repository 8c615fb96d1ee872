package transporttest

import (
	stdcmp "cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// transport is the engine's view (tunnel.Transport).
type transport interface {
	Receive(bufs [][]byte, sizes []int, eps []netip.AddrPort, locals []netip.Addr) (int, error)
	Send(bufs [][]byte, ep netip.AddrPort, local netip.Addr) (int, error)
	BatchSize() int
	Close() error
}

var _ transport = (*Transport)(nil)

var (
	addrA  = netip.MustParseAddrPort("198.18.0.1:51820")
	addrB  = netip.MustParseAddrPort("198.18.0.2:51820")
	addrB6 = netip.MustParseAddrPort("[fd00:7761::2]:51820")
	addrN  = netip.MustParseAddrPort("198.19.0.1:40000") // NAT outside
	addrR  = netip.MustParseAddrPort("198.18.0.9:9999")  // roamed
)

var equateAddrPort = cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })

// received is one datagram as Receive returned it.
type received struct {
	From netip.AddrPort
	Data string
}

func newTB(tb testing.TB, n *Network, addr netip.AddrPort) *Transport {
	tb.Helper()
	t, err := n.NewTransport(addr)
	if err != nil {
		tb.Fatalf("NewTransport(%v) = %v", addr, err)
	}
	tb.Cleanup(func() { t.Close() })
	return t
}

// drain receives everything queued at t without blocking.
func drain(tb testing.TB, t *Transport) []received {
	tb.Helper()
	var got []received
	bufs := [][]byte{make([]byte, 100), make([]byte, 100), make([]byte, 100)}
	sizes, eps, locals := make([]int, 3), make([]netip.AddrPort, 3), make([]netip.Addr, 3)
	for len(t.queue) > 0 {
		n, err := t.Receive(bufs, sizes, eps, locals)
		if err != nil {
			tb.Fatalf("Receive = %v", err)
		}
		for i := range n {
			got = append(got, received{eps[i], string(bufs[i][:sizes[i]])})
		}
	}
	return got
}

func datagrams(s ...string) [][]byte {
	var b [][]byte
	for _, x := range s {
		b = append(b, []byte(x))
	}
	return b
}

func TestNetwork(t *testing.T) {
	tests := []struct {
		name string
		// run sends through n from a to b (at addrB, or addrB6 for IPv6) and
		// returns what b received.
		run       func(t *testing.T, n *Network, a, b *Transport) []received
		want      []received
		wantStats Stats
		queueLen  int // 0 = 8
	}{
		{
			name: "deliver in order",
			run: func(t *testing.T, n *Network, a, b *Transport) []received {
				a.Send(datagrams("1", "2", "3", "4"), addrB, netip.Addr{})
				return drain(t, b)
			},
			want:      []received{{addrA, "1"}, {addrA, "2"}, {addrA, "3"}, {addrA, "4"}},
			wantStats: Stats{Sent: 4, Delivered: 4},
		},
		{
			name: "v4-mapped destination",
			run: func(t *testing.T, n *Network, a, b *Transport) []received {
				a.Send(datagrams("x"), netip.AddrPortFrom(netip.AddrFrom16(addrB.Addr().As16()), addrB.Port()), netip.Addr{})
				return drain(t, b)
			},
			want:      []received{{addrA, "x"}},
			wantStats: Stats{Sent: 1, Delivered: 1},
		},
		{
			name: "drop every second",
			run: func(t *testing.T, n *Network, a, b *Transport) []received {
				n.SetHook(DropEvery(2))
				a.Send(datagrams("1", "2", "3", "4", "5"), addrB, netip.Addr{})
				return drain(t, b)
			},
			want:      []received{{addrA, "1"}, {addrA, "3"}, {addrA, "5"}},
			wantStats: Stats{Sent: 5, Delivered: 3, Dropped: 2},
		},
		{
			name: "duplicate",
			run: func(t *testing.T, n *Network, a, b *Transport) []received {
				n.SetHook(Match(func(p *Packet) bool { return string(p.Data) == "2" }, Always(Duplicate)))
				a.Send(datagrams("1", "2", "3"), addrB, netip.Addr{})
				return drain(t, b)
			},
			want:      []received{{addrA, "1"}, {addrA, "2"}, {addrA, "2"}, {addrA, "3"}},
			wantStats: Stats{Sent: 3, Delivered: 4, Duplicated: 1},
		},
		{
			name: "delay until step",
			run: func(t *testing.T, n *Network, a, b *Transport) []received {
				n.SetHook(Always(Hold))
				a.Send(datagrams("1", "2"), addrB, netip.Addr{})
				if got := drain(t, b); len(got) != 0 {
					t.Errorf("held packets arrived early: %v", got)
				}
				if !n.Step() {
					t.Errorf("Step = false with packets held")
				}
				got := drain(t, b)
				if n.Held() != 1 {
					t.Errorf("Held() = %d after one Step, want 1", n.Held())
				}
				n.Flush()
				if n.Step() {
					t.Errorf("Step = true with nothing held")
				}
				return append(got, drain(t, b)...)
			},
			want:      []received{{addrA, "1"}, {addrA, "2"}},
			wantStats: Stats{Sent: 2, Delivered: 2, Held: 2},
		},
		{
			name: "reorder",
			run: func(t *testing.T, n *Network, a, b *Transport) []received {
				n.SetHook(Always(Hold))
				a.Send(datagrams("1", "2", "3"), addrB, netip.Addr{})
				n.Reorder(slices.Reverse[[]Packet])
				n.Flush()
				return drain(t, b)
			},
			want:      []received{{addrA, "3"}, {addrA, "2"}, {addrA, "1"}},
			wantStats: Stats{Sent: 3, Delivered: 3, Held: 3},
		},
		{
			name: "NAT both ways",
			run: func(t *testing.T, n *Network, a, b *Transport) []received {
				n.AddNAT(addrA, addrN)
				a.Send(datagrams("out"), addrB, netip.Addr{})
				got := drain(t, b)
				b.Send(datagrams("back"), addrN, netip.Addr{})
				if back := drain(t, a); !slices.Equal(back, []received{{addrB, "back"}}) {
					t.Errorf("reply through NAT: %v", back)
				}
				n.RemoveNAT(addrA)
				b.Send(datagrams("lost"), addrN, netip.Addr{})
				return got
			},
			want:      []received{{addrN, "out"}},
			wantStats: Stats{Sent: 3, Delivered: 2, NoRoute: 1},
		},
		{
			name: "roaming",
			run: func(t *testing.T, n *Network, a, b *Transport) []received {
				a.Send(datagrams("before"), addrB, netip.Addr{})
				if err := a.Move(addrR); err != nil {
					t.Fatalf("Move = %v", err)
				}
				a.Send(datagrams("after"), addrB, netip.Addr{})
				b.Send(datagrams("to old"), addrA, netip.Addr{})
				b.Send(datagrams("to new"), addrR, netip.Addr{})
				if got := drain(t, a); !slices.Equal(got, []received{{addrB, "to new"}}) {
					t.Errorf("roamed transport got %v", got)
				}
				return drain(t, b)
			},
			want:      []received{{addrA, "before"}, {addrR, "after"}},
			wantStats: Stats{Sent: 4, Delivered: 3, NoRoute: 1},
		},
		{
			name: "spoofed source",
			run: func(t *testing.T, n *Network, a, b *Transport) []received {
				n.SetHook(RewriteSource(addrA, addrR))
				a.Send(datagrams("spoof"), addrB, netip.Addr{})
				n.Inject(Packet{Src: addrN, Dst: addrB, Data: []byte("crafted")})
				return drain(t, b)
			},
			want:      []received{{addrR, "spoof"}, {addrN, "crafted"}},
			wantStats: Stats{Sent: 1, Delivered: 2},
		},
		{
			name: "queue full",
			run: func(t *testing.T, n *Network, a, b *Transport) []received {
				for i := range 5 {
					a.Send(datagrams(fmt.Sprint(i)), addrB, netip.Addr{})
				}
				return drain(t, b)
			},
			want:      []received{{addrA, "0"}, {addrA, "1"}, {addrA, "2"}},
			wantStats: Stats{Sent: 5, Delivered: 3, QueueFull: 2},
			queueLen:  3,
		},
		{
			name: "refuse counts as not sent",
			run: func(t *testing.T, n *Network, a, b *Transport) []received {
				n.SetHook(Match(func(p *Packet) bool { return string(p.Data) != "2" }, Always(Refuse)))
				sent, err := a.Send(datagrams("1", "2", "3"), addrB, netip.Addr{})
				if sent != 1 || !errors.Is(err, ErrRefused) {
					t.Errorf("Send = %d, %v; want 1, ErrRefused", sent, err)
				}
				return drain(t, b)
			},
			want:      []received{{addrA, "2"}},
			wantStats: Stats{Sent: 3, Delivered: 1, Refused: 2},
		},
		{
			name: "dropped in the network still counts as sent",
			run: func(t *testing.T, n *Network, a, b *Transport) []received {
				n.SetHook(Always(Drop))
				if sent, err := a.Send(datagrams("1", "2"), addrB, netip.Addr{}); sent != 2 || err != nil {
					t.Errorf("Send = %d, %v; want 2, nil", sent, err)
				}
				return drain(t, b)
			},
			wantStats: Stats{Sent: 2, Dropped: 2},
		},
		{
			name: "no route",
			run: func(t *testing.T, n *Network, a, b *Transport) []received {
				a.Send(datagrams("x"), addrN, netip.Addr{})
				return drain(t, b)
			},
			wantStats: Stats{Sent: 1, NoRoute: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := NewNetwork(Config{QueueLen: stdcmp.Or(tc.queueLen, 8)})
			a, b := newTB(t, n, addrA), newTB(t, n, addrB)
			got := tc.run(t, n, a, b)
			if diff := cmp.Diff(got, tc.want, equateAddrPort); diff != "" {
				t.Errorf("received (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(n.Stats(), tc.wantStats); diff != "" {
				t.Errorf("Stats (-got +want):\n%s", diff)
			}
		})
	}
}

func TestAddresses(t *testing.T) {
	n := NewNetwork(Config{})
	a := newTB(t, n, netip.MustParseAddrPort("[::ffff:198.18.0.1]:0"))
	if got := a.Addr(); got.Addr() != addrA.Addr() || got.Port() == 0 {
		t.Errorf("Addr() = %v, want 198.18.0.1 with a port", got)
	}
	if _, err := n.NewTransport(a.Addr()); err == nil {
		t.Errorf("NewTransport(%v) twice = nil error", a.Addr())
	}
	b := newTB(t, n, addrB6)
	if err := b.Move(a.Addr()); err == nil {
		t.Errorf("Move onto a used address = nil error")
	}
	if b.Port() != addrB6.Port() || b.BatchSize() != DefaultBatchSize {
		t.Errorf("Port, BatchSize = %d, %d", b.Port(), b.BatchSize())
	}
	a.Send(datagrams("v6"), addrB6, netip.Addr{})
	b.Send(datagrams("v4"), a.Addr(), netip.Addr{})
	if got := drain(t, b); !slices.Equal(got, []received{{a.Addr(), "v6"}}) {
		t.Errorf("b got %v", got)
	}
	if got := drain(t, a); !slices.Equal(got, []received{{addrB6, "v4"}}) {
		t.Errorf("a got %v", got)
	}
}

func TestClose(t *testing.T) {
	n := NewNetwork(Config{})
	a, err := n.NewTransport(addrA)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		_, err := a.Receive(make([][]byte, 1), make([]int, 1), make([]netip.AddrPort, 1), make([]netip.Addr, 1))
		done <- err
	}()
	a.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("blocked Receive after Close = %v, want net.ErrClosed", err)
	}
	if _, err := a.Send(datagrams("x"), addrB, netip.Addr{}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Send after Close = %v, want net.ErrClosed", err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, err := n.NewTransport(addrA); err != nil {
		t.Errorf("NewTransport at a closed transport's address = %v", err)
	}
}

// TestConcurrent runs senders and receivers at once for the race detector
// and checks that nothing is lost below the queue limit.
func TestConcurrent(t *testing.T) {
	const senders, perSender = 4, 200
	n := NewNetwork(Config{BatchSize: 8, QueueLen: senders * perSender})
	b := newTB(t, n, addrB)
	var wg sync.WaitGroup
	for i := range senders {
		a := newTB(t, n, netip.AddrPortFrom(addrA.Addr(), uint16(1000+i)))
		wg.Go(func() {
			for range perSender {
				a.Send(datagrams("x"), addrB, netip.Addr{})
			}
		})
	}
	got := 0
	bufs := [][]byte{make([]byte, 8), make([]byte, 8)}
	for got < senders*perSender {
		k, err := b.Receive(bufs, make([]int, 2), make([]netip.AddrPort, 2), make([]netip.Addr, 2))
		if err != nil {
			t.Fatal(err)
		}
		got += k
	}
	wg.Wait()
	if s := n.Stats(); s.Delivered != senders*perSender {
		t.Errorf("Stats = %+v, want %d delivered", s, senders*perSender)
	}
}

// TestLocalAddresses covers a transport with two addresses (RO5, RO6):
// Receive reports which one a packet reached, Send leaves from the one
// asked for or else the first, a removed address receives nothing, and a
// Send from it fails with EINVAL and sends nothing.
func TestLocalAddresses(t *testing.T) {
	n := NewNetwork(Config{})
	a, b := newTB(t, n, addrA), newTB(t, n, addrB)
	second := netip.MustParseAddr("198.18.0.12")
	if err := b.AddAddr(second); err != nil {
		t.Fatal(err)
	}
	if err := b.AddAddr(second); err == nil {
		t.Error("AddAddr of an address already there succeeded")
	}
	b2 := netip.AddrPortFrom(second, addrB.Port())
	a.Send(datagrams("to first"), addrB, netip.Addr{})
	a.Send(datagrams("to second"), b2, netip.Addr{})
	bufs := [][]byte{make([]byte, 100), make([]byte, 100)}
	sizes, eps, locals := make([]int, 2), make([]netip.AddrPort, 2), make([]netip.Addr, 2)
	if k, err := b.Receive(bufs, sizes, eps, locals); k != 2 || err != nil {
		t.Fatalf("Receive = %d, %v", k, err)
	}
	if locals[0] != addrB.Addr() || locals[1] != second || eps[0] != addrA || eps[1] != addrA {
		t.Errorf("received from %v to %v, want %v to %v and %v", eps, locals, addrA, addrB.Addr(), second)
	}
	b.Send(datagrams("from second"), addrA, second)
	b.Send(datagrams("from first"), addrA, netip.Addr{})
	want := []received{{b2, "from second"}, {addrB, "from first"}}
	if diff := cmp.Diff(drain(t, a), want, equateAddrPort); diff != "" {
		t.Errorf("a received (-got +want):\n%s", diff)
	}

	if err := b.RemoveAddr(second); err != nil {
		t.Fatal(err)
	}
	if got := b.Addrs(); len(got) != 1 || got[0] != addrB.Addr() {
		t.Errorf("Addrs after RemoveAddr = %v", got)
	}
	if sent, err := b.Send(datagrams("x"), addrA, second); sent != 0 || !errors.Is(err, syscall.EINVAL) {
		t.Errorf("Send from a removed address = %d, %v; want 0 and EINVAL", sent, err)
	}
	a.Send(datagrams("lost"), b2, netip.Addr{})
	if got := drain(t, b); len(got) != 0 {
		t.Errorf("b received %v at a removed address", got)
	}
	if s := n.Stats(); s.NoRoute != 1 {
		t.Errorf("NoRoute = %d, want 1", s.NoRoute)
	}
}
