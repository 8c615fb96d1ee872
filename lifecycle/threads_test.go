package lifecycle_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/warrenvpn/warren/device/tun/tuntest"
	"github.com/warrenvpn/warren/lifecycle"
	"github.com/warrenvpn/warren/tunnel"
	"github.com/warrenvpn/warren/uapi"
)

// TestUpThreads: Threads = 3 opens three queues of the TUN and three
// sockets on one port, the engine runs three pipelines (warren show's
// "threads: 3"), a reload cannot change Threads, and Close closes every
// queue and socket.
func TestUpThreads(t *testing.T) {
	f := newFakes(-1)
	opts := f.options(t.TempDir())
	var (
		queues []*tuntest.Memory
		socks  []tunnel.Transport
	)
	open, listen := opts.OpenAdapter, opts.Listen
	opts.OpenAdapterQueues = func(name string, mtu, n int) ([]tunnel.Adapter, error) {
		f.rec.note("adapter queues %s mtu %d: %d", name, mtu, n)
		first, err := open(name, mtu)
		if err != nil {
			return nil, err
		}
		qs := []tunnel.Adapter{first}
		for range n - 1 {
			q := tuntest.NewMemory(tuntest.MemoryOptions{Name: name, MTU: mtu})
			queues = append(queues, q)
			qs = append(qs, q)
		}
		return qs, nil
	}
	opts.ListenGroup = func(port uint16, mark uint32, n int) ([]tunnel.Transport, error) {
		f.rec.note("transport group %d: %d", port, n)
		first, err := listen(port, mark)
		if err != nil {
			return nil, err
		}
		trs := []tunnel.Transport{first}
		for i := range n - 1 {
			tr, err := f.net.NewTransport(netip.AddrPortFrom(netip.MustParseAddr("198.18.0.1"), port+1+uint16(i)))
			if err != nil {
				return nil, err
			}
			socks = append(socks, tr)
			trs = append(trs, tr)
		}
		return trs, nil
	}
	cfg := testConfig(t)
	cfg.Interface.Threads = 3
	tun, err := lifecycle.Up(t.Context(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	log := strings.Join(f.rec.log(), "\n")
	for _, want := range []string{"adapter queues " + testName + " mtu 1420: 3", "transport group 51820: 3"} {
		if !strings.Contains(log, want) {
			t.Errorf("no %q in the log:\n%s", want, log)
		}
	}
	c, err := f.ctl.Load().dial()
	if err != nil {
		t.Fatal(err)
	}
	st, err := uapi.GetWarren(c)
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !hasExtra(st.Extras, "warren_threads", "3") {
		t.Errorf("get=warren extras %v, want warren_threads=3", st.Extras)
	}

	again := testConfig(t)
	again.Interface.PrivateKey = cfg.Interface.PrivateKey
	again.Interface.Threads = 2
	if err := tun.Reconfigure(t.Context(), again); err == nil || !strings.Contains(err.Error(), "Threads cannot change") {
		t.Errorf("a reload to Threads = 2: %v, want a refusal", err)
	}

	if err := tun.Close(); err != nil {
		t.Fatal(err)
	}
	for i, q := range queues {
		if _, err := q.Write([][]byte{make([]byte, 40)}, 0); err == nil {
			t.Errorf("queue %d still open", i+1)
		}
	}
	for i, s := range socks {
		if _, err := s.Send([][]byte{{1}}, netip.MustParseAddrPort("198.18.0.2:1"), netip.Addr{}); err == nil {
			t.Errorf("socket %d still open", i+1)
		}
	}
}

func hasExtra(es []uapi.Extra, key, value string) bool {
	for _, e := range es {
		if e.Key == key && e.Value == value {
			return true
		}
	}
	return false
}
