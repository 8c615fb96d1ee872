package lifecycle_test

// Test doubles for every opener of lifecycle.Options. Each records its calls
// as events in one shared recorder, which can make one chosen call fail.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"

	"github.com/warrenvpn/warren/device/firewall"
	"github.com/warrenvpn/warren/device/host/hosttest"
	"github.com/warrenvpn/warren/device/tun/tuntest"
	"github.com/warrenvpn/warren/lifecycle"
	"github.com/warrenvpn/warren/transport/transporttest"
	"github.com/warrenvpn/warren/tunnel"
	"github.com/warrenvpn/warren/uapi"
)

var errInjected = errors.New("injected failure")

// recorder is the shared log of the fakes' calls. Calls that may fail are
// counted, and the one numbered failAt (from 0) fails with errInjected.
type recorder struct {
	mu     sync.Mutex
	events []string
	calls  int // failable calls so far
	failAt int // -1: none fails
}

// call records a failable call and returns errInjected if it is the one
// chosen to fail.
func (r *recorder) call(format string, args ...any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf(format, args...))
	n := r.calls
	r.calls++
	if n == r.failAt {
		return errInjected
	}
	return nil
}

// note records a call that cannot fail (an undo).
func (r *recorder) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf(format, args...))
}

func (r *recorder) log() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

// fakes are the injected openers of one lifecycle run.
type fakes struct {
	rec     *recorder
	nl      *hosttest.FakeNetlink // the host's kernel
	net     *transporttest.Network
	adapter atomic.Pointer[fakeAdapter]   // the last one opened
	tr      atomic.Pointer[fakeTransport] // the last one opened
	ctl     atomic.Pointer[fakeListener]  // the last one opened
	fw      fakeFirewall
	linkUp  func() // called after each LinkSetUp that succeeded, when set
}

func newFakes(failAt int) *fakes {
	rec := &recorder{failAt: failAt}
	return &fakes{
		fw:  fakeFirewall{rec: rec},
		rec: rec,
		nl:  hosttest.NewFakeNetlink(),
		net: transporttest.NewNetwork(transporttest.Config{}),
	}
}

// options returns lifecycle options that open only fakes, with runDir as
// the run directory.
func (f *fakes) options(runDir string) lifecycle.Options {
	return lifecycle.Options{
		OpenAdapter: func(name string, mtu int) (tunnel.Adapter, error) {
			if err := f.rec.call("adapter open %s mtu %d", name, mtu); err != nil {
				return nil, err
			}
			f.nl.AddLink(name, mtu)
			a := &fakeAdapter{Memory: tuntest.NewMemory(tuntest.MemoryOptions{Name: name, MTU: mtu}), f: f}
			f.adapter.Store(a)
			return a, nil
		},
		Listen: func(port uint16, mark uint32) (tunnel.Transport, error) {
			if err := f.rec.call("transport listen %d mark %#x", port, mark); err != nil {
				return nil, err
			}
			tr, err := f.net.NewTransport(netip.AddrPortFrom(netip.MustParseAddr("198.18.0.1"), port))
			if err != nil {
				return nil, err
			}
			t := &fakeTransport{Transport: tr, f: f}
			f.tr.Store(t)
			return t, nil
		},
		OpenNetlink: func() (lifecycle.Netlink, error) {
			if err := f.rec.call("netlink open"); err != nil {
				return nil, err
			}
			return &fakeNetlink{f.nl, f.rec, f.linkUp}, nil
		},
		ListenControl: func(name string) (net.Listener, error) {
			if err := f.rec.call("control listen %s", name); err != nil {
				return nil, err
			}
			l := &fakeListener{rec: f.rec, stop: make(chan struct{}), conns: make(chan net.Conn)}
			f.ctl.Store(l)
			return l, nil
		},
		RunDir: runDir,
		RunHook: func(ctx context.Context, hook, cmd string) error {
			if hook == "PreDown" || hook == "PostDown" {
				f.rec.note("hook %s: %s", hook, cmd)
				return nil
			}
			return f.rec.call("hook %s: %s", hook, cmd)
		},
		Sysctl:   &fakeNetlink{FakeNetlink: f.nl, rec: f.rec},
		DNS:      fakeDNS{f.rec},
		Resolver: fakeResolver{f.rec},
		Firewall: &f.fw,
	}
}

// fakeFirewall holds the nftables tables of the fake host.
type fakeFirewall struct {
	rec    *recorder
	mu     sync.Mutex
	tables map[string]string // name → the rules, rendered
}

func (w *fakeFirewall) Apply(r firewall.Rules) error {
	if err := w.rec.call("firewall apply %s", firewall.TableName(r.Interface)); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.tables == nil {
		w.tables = make(map[string]string)
	}
	w.tables[firewall.TableName(r.Interface)] = r.String()
	return nil
}

func (w *fakeFirewall) Remove(table string) error {
	w.rec.note("firewall remove %s", table)
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.tables, table)
	return nil
}

// dump renders the tables, in name order.
func (w *fakeFirewall) dump() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(w.tables)) {
		b.WriteString(w.tables[name])
	}
	return b.String()
}

// fakeAdapter is an in-memory adapter that deletes its link on Close, as the
// kernel does when a TUN closes, and reports removal when told to.
type fakeAdapter struct {
	*tuntest.Memory
	f         *fakes
	closeOnce sync.Once
	removed   atomic.Bool
}

// remove deletes the interface from outside.
func (a *fakeAdapter) remove() {
	a.removed.Store(true)
	a.f.nl.DeleteLink(a.Name())
	a.Memory.Close()
}

func (a *fakeAdapter) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := a.Memory.Read(bufs, sizes, offset)
	if err != nil && a.removed.Load() {
		return n, removedError{}
	}
	return n, err
}

func (a *fakeAdapter) Close() error {
	a.closeOnce.Do(func() {
		a.f.rec.note("adapter close %s", a.Name())
		if !a.removed.Load() {
			a.f.nl.DeleteLink(a.Name())
		}
	})
	return a.Memory.Close()
}

// removedError is what device/tun reports for a deleted interface.
type removedError struct{}

func (removedError) Error() string { return "interface removed" }
func (removedError) Removed() bool { return true }
func (removedError) Unwrap() error { return net.ErrClosed }

// fakeTransport is an in-memory transport whose Receive fails for good when
// told to.
type fakeTransport struct {
	*transporttest.Transport
	f         *fakes
	closeOnce sync.Once
	broken    atomic.Bool
}

// breakDown makes every Receive from now on fail.
func (t *fakeTransport) breakDown() {
	t.broken.Store(true)
	t.Transport.Close() // wakes a blocked Receive
}

func (t *fakeTransport) Receive(bufs [][]byte, sizes []int, eps []netip.AddrPort, locals []netip.Addr) (int, error) {
	n, err := t.Transport.Receive(bufs, sizes, eps, locals)
	if err != nil && t.broken.Load() {
		return 0, errors.New("receive: network is down (injected)")
	}
	return n, err
}

func (t *fakeTransport) Port() uint16 { return t.Addr().Port() }

func (t *fakeTransport) Close() error {
	t.closeOnce.Do(func() { t.f.rec.note("transport close %d", t.Addr().Port()) })
	return t.Transport.Close()
}

// fakeNetlink records the mutating calls of the host state.
type fakeNetlink struct {
	*hosttest.FakeNetlink
	rec    *recorder
	linkUp func()
}

func (n *fakeNetlink) Close() { n.rec.note("netlink close") }

// do records op and, unless it is the call chosen to fail, passes it on.
func (n *fakeNetlink) do(op string, f func() error) error {
	if err := n.rec.call("host %s", op); err != nil {
		return err
	}
	return f()
}

func (n *fakeNetlink) LinkSetMTU(l netlink.Link, mtu int) error {
	return n.do("LinkSetMTU", func() error { return n.FakeNetlink.LinkSetMTU(l, mtu) })
}

func (n *fakeNetlink) LinkSetUp(l netlink.Link) error {
	err := n.do("LinkSetUp", func() error { return n.FakeNetlink.LinkSetUp(l) })
	if err == nil && n.linkUp != nil {
		n.linkUp()
	}
	return err
}

func (n *fakeNetlink) LinkSetDown(l netlink.Link) error {
	return n.do("LinkSetDown", func() error { return n.FakeNetlink.LinkSetDown(l) })
}

func (n *fakeNetlink) AddrAdd(l netlink.Link, a *netlink.Addr) error {
	return n.do("AddrAdd", func() error { return n.FakeNetlink.AddrAdd(l, a) })
}

func (n *fakeNetlink) AddrDel(l netlink.Link, a *netlink.Addr) error {
	return n.do("AddrDel", func() error { return n.FakeNetlink.AddrDel(l, a) })
}

func (n *fakeNetlink) RouteAdd(r *netlink.Route) error {
	return n.do("RouteAdd", func() error { return n.FakeNetlink.RouteAdd(r) })
}

func (n *fakeNetlink) RouteDel(r *netlink.Route) error {
	return n.do("RouteDel", func() error { return n.FakeNetlink.RouteDel(r) })
}

func (n *fakeNetlink) RuleAdd(r *netlink.Rule) error {
	return n.do("RuleAdd", func() error { return n.FakeNetlink.RuleAdd(r) })
}

func (n *fakeNetlink) RuleDel(r *netlink.Rule) error {
	return n.do("RuleDel", func() error { return n.FakeNetlink.RuleDel(r) })
}

func (n *fakeNetlink) WriteSysctl(k, v string) error {
	return n.do("WriteSysctl", func() error { return n.FakeNetlink.WriteSysctl(k, v) })
}

// fakeListener is a control socket only the test connects to (dial). Accept
// blocks until dial, Close (net.ErrClosed) or until the test fails it
// (remove: the socket file deleted; fail: another error).
type fakeListener struct {
	rec       *recorder
	conns     chan net.Conn // the server ends of dial's pipes
	stop      chan struct{}
	stopOnce  sync.Once
	err       error // what Accept returns once stop is closed
	closeOnce sync.Once
}

func (l *fakeListener) end(err error) {
	l.stopOnce.Do(func() {
		l.err = err
		close(l.stop)
	})
}

func (l *fakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.stop:
		return nil, l.err
	}
}

// dial connects to the control socket; the caller closes the connection.
func (l *fakeListener) dial() (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.stop:
		return nil, net.ErrClosed
	}
}

func (l *fakeListener) Close() error {
	l.closeOnce.Do(func() { l.rec.note("control close") })
	l.end(net.ErrClosed)
	return nil
}

func (l *fakeListener) Addr() net.Addr { return &net.UnixAddr{Name: "fake.sock", Net: "unix"} }

// removeSocket deletes the control socket file, as `rm` would.
func (l *fakeListener) removeSocket() { l.end(fmt.Errorf("accept: %w", uapi.ErrRemoved)) }

type fakeDNS struct{ rec *recorder }

func (d fakeDNS) Set(ctx context.Context, iface string, servers, search []string) error {
	return d.rec.call("dns set %s %s", iface, strings.Join(append(servers, search...), " "))
}

func (d fakeDNS) Unset(iface string) error {
	d.rec.note("dns unset %s", iface)
	return nil
}

type fakeResolver struct{ rec *recorder }

func (r fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if err := r.rec.call("resolve %s", host); err != nil {
		return nil, err
	}
	return []netip.Addr{netip.MustParseAddr("198.18.0.2")}, nil
}
