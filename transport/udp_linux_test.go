//go:build linux

package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listenTB opens a transport on a random port and closes it at cleanup.
func listenTB(tb testing.TB, opts Options) *UDP {
	tb.Helper()
	u, err := Listen(opts)
	if err != nil {
		tb.Fatalf("Listen(%+v) = %v", opts, err)
	}
	tb.Cleanup(func() { u.Close() })
	return u
}

// receiveBufs makes n receive buffers of BufferSize bytes.
func receiveBufs(n int) ([][]byte, []int, []netip.AddrPort, []netip.Addr) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, BufferSize)
	}
	return bufs, make([]int, n), make([]netip.AddrPort, n), make([]netip.Addr, n)
}

// receiveAll receives until want datagrams arrived and checks their order,
// sizes, contents and source.
func receiveAll(tb testing.TB, u *UDP, want [][]byte, from netip.AddrPort, batch int) {
	tb.Helper()
	// A safety net, not a timed assertion: a datagram lost (say to a small
	// net.core.rmem_max without root) fails the test instead of hanging it.
	u.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer u.conn.SetReadDeadline(time.Time{})
	bufs, sizes, eps, locals := receiveBufs(batch)
	got := 0
	for got < len(want) {
		n, err := u.Receive(bufs, sizes, eps, locals)
		if err != nil {
			tb.Fatalf("Receive after %d of %d datagrams: %v", got, len(want), err)
		}
		for i := range n {
			if got >= len(want) {
				tb.Fatalf("received more than the %d datagrams sent", len(want))
			}
			if eps[i] != from {
				tb.Errorf("datagram %d from %v, want %v", got, eps[i], from)
			}
			if !bytes.Equal(bufs[i][:sizes[i]], want[got]) {
				tb.Errorf("datagram %d: %d bytes, want %d bytes %x...", got, sizes[i], len(want[got]), want[got][:min(8, len(want[got]))])
			}
			got++
		}
	}
}

func loopback(tb testing.TB, u *UDP, family string) netip.AddrPort {
	tb.Helper()
	if family == "ipv6" {
		return netip.AddrPortFrom(netip.IPv6Loopback(), u.Port())
	}
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), u.Port())
}

func TestRoundTrip(t *testing.T) {
	mixed := []int{100, 1200, 1200, 1200, 1200, 500, 1400, 1400, 1400, 1, 0, 1400, 1300, 1300, 1300, 1300, 1300, 1300}
	tests := []struct {
		name    string
		family  string
		offload bool
		sizes   []int
		batch   int
	}{
		{"ipv4 offload mixed", "ipv4", true, mixed, 64},
		{"ipv4 plain mixed", "ipv4", false, mixed, 64},
		{"ipv6 offload mixed", "ipv6", true, mixed, 64},
		{"ipv6 plain mixed", "ipv6", false, mixed, 64},
		{"ipv4 offload 200x1400", "ipv4", true, repeat(200, 1400), 64},
		{"ipv6 offload 200x1400 batch 7", "ipv6", true, repeat(200, 1400), 7},
		{"ipv4 plain 200x1400 batch 7", "ipv4", false, repeat(200, 1400), 7},
		{"ipv4 offload jumbo", "ipv4", true, []int{9000, 9000, 9000, 60000, 65507}, 64},
		// The largest IPv6 one fits loopback's MTU of 65536: with DF set
		// the kernel no longer fragments it (pmtu_linux.go).
		{"ipv6 offload jumbo", "ipv6", true, []int{9000, 9000, 9000, 60000, 65536 - 48}, 64},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{DisableOffload: !tc.offload, BatchSize: tc.batch}
			a, b := listenTB(t, opts), listenTB(t, opts)
			var want [][]byte
			for i, n := range tc.sizes {
				want = append(want, datagram(i, n))
			}
			sendAll(t, a, want, loopback(t, b, tc.family))
			receiveAll(t, b, want, loopback(t, a, tc.family), tc.batch)
			gso, gro := a.Offload()
			t.Logf("gso %v, gro %v", gso, gro)
			if tc.offload && !gso {
				t.Errorf("GSO off after sending over loopback")
			}
		})
	}
}

// TestGROSplit sends 64 datagrams of 1200 bytes as GSO super-datagrams and
// checks that the GRO receiver splits them back with the right sizes,
// contents and source, also when its batch is smaller than what one read
// returns (the spill path).
func TestGROSplit(t *testing.T) {
	for _, tc := range []struct {
		family string
		batch  int
	}{{"ipv4", 64}, {"ipv4", 16}, {"ipv4", 1}, {"ipv6", 64}, {"ipv6", 5}} {
		family, batch := tc.family, tc.batch
		t.Run(fmt.Sprint(family, " batch ", batch), func(t *testing.T) {
			a, b := listenTB(t, Options{}), listenTB(t, Options{BatchSize: batch})
			if gso, gro := b.Offload(); !gso || !gro {
				skipOrFail(t, "kernel without UDP GSO/GRO")
			}
			var want [][]byte
			for i := range 64 {
				want = append(want, datagram(i, 1200))
			}
			sendAll(t, a, want, loopback(t, b, family))
			receiveAll(t, b, want, loopback(t, a, family), batch)
			// 64 x 1200 bytes leave as 54 + 10 segments (64 KB limit).
			if h := b.segHint.Load(); h <= 1 {
				t.Errorf("last GRO message had %d segments, want > 1 (not coalesced?)", h)
			}
			if p := b.spill.pending.Load(); p != 0 {
				t.Errorf("spill holds %d after receiving everything", p)
			}
		})
	}
}

func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

func TestCloseUnblocksReceive(t *testing.T) {
	u, err := Listen(Options{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		bufs, sizes, eps, locals := receiveBufs(4)
		_, err := u.Receive(bufs, sizes, eps, locals)
		done <- err
	}()
	if err := u.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("blocked Receive after Close = %v, want net.ErrClosed", err)
	}
	bufs, sizes, eps, locals := receiveBufs(1)
	if _, err := u.Receive(bufs, sizes, eps, locals); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Receive after Close = %v, want net.ErrClosed", err)
	}
	if _, err := u.Send([][]byte{{1}}, netip.MustParseAddrPort("127.0.0.1:9"), netip.Addr{}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Send after Close = %v, want net.ErrClosed", err)
	}
	if err := u.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

func TestListenErrors(t *testing.T) {
	a := listenTB(t, Options{})
	_, err := Listen(Options{Port: a.Port()})
	want := fmt.Sprintf("listen UDP port %d: address already in use", a.Port())
	if err == nil || err.Error() != want || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Listen on a used port = %v, want %q wrapping EADDRINUSE", err, want)
	}
}

func TestReceiveShortBuffer(t *testing.T) {
	u := listenTB(t, Options{})
	if _, err := u.Receive([][]byte{make([]byte, 1500)}, make([]int, 1), make([]netip.AddrPort, 1), make([]netip.Addr, 1)); err == nil {
		t.Errorf("Receive with a 1500-byte buffer = nil error, want one")
	}
}

func TestIPv4Only(t *testing.T) {
	a, err := listen(Options{}, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b := listenTB(t, Options{})
	if a.is6 {
		t.Fatalf("listen(ipv4 only) made an IPv6 socket")
	}
	want := [][]byte{datagram(1, 1000), datagram(2, 1000), datagram(3, 10)}
	sendAll(t, a, want, loopback(t, b, "ipv4"))
	receiveAll(t, b, want, loopback(t, a, "ipv4"), 8)
	sendAll(t, b, want, loopback(t, a, "ipv4"))
	receiveAll(t, a, want, loopback(t, b, "ipv4"), 8)
	if n, err := a.Send(want, loopback(t, b, "ipv6"), netip.Addr{}); n != 0 || !errors.Is(err, unix.EAFNOSUPPORT) {
		t.Errorf("Send to IPv6 from an IPv4 socket = %d, %v, want 0, EAFNOSUPPORT", n, err)
	}
}

func TestFwMark(t *testing.T) {
	u, err := Listen(Options{FwMark: 51820})
	if os.Geteuid() != 0 {
		if err == nil {
			u.Close()
			t.Skip("SO_MARK allowed without root")
		}
		t.Skipf("not root: %v", err)
	}
	if err != nil {
		t.Fatalf("Listen(FwMark 51820) = %v", err)
	}
	t.Cleanup(func() { u.Close() })
	var mark int
	if err := u.raw.Control(func(fd uintptr) {
		mark, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK)
	}); err != nil {
		t.Fatal(err)
	}
	if err != nil || mark != 51820 {
		t.Errorf("SO_MARK = %d, %v, want 51820", mark, err)
	}
}

// TestPartialSend puts datagrams the kernel refuses (EMSGSIZE: larger than
// any UDP payload) between good ones and checks that Send counts exactly the
// ones that left, with and without GSO, and that the good ones arrive.
func TestPartialSend(t *testing.T) {
	const tooBig = maxPayloadIPv4 + 1
	tests := []struct {
		name    string
		offload bool
		sizes   []int
		want    int // datagrams sent
	}{
		{"plain bad in the middle", false, []int{100, tooBig, 100}, 2},
		{"plain all bad", false, []int{tooBig, tooBig}, 0},
		{"offload bad between groups", true, []int{1000, 1000, 1000, tooBig, 1000, 1000}, 5},
		{"offload bad first", true, []int{tooBig, 500, 500, 500}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := listenTB(t, Options{DisableOffload: !tc.offload}), listenTB(t, Options{})
			var bufs, good [][]byte
			for i, n := range tc.sizes {
				bufs = append(bufs, datagram(i, n))
				if n != tooBig {
					good = append(good, bufs[i])
				}
			}
			n, err := a.Send(bufs, loopback(t, b, "ipv4"), netip.Addr{})
			if n != tc.want || !errors.Is(err, unix.EMSGSIZE) {
				t.Fatalf("Send = %d, %v; want %d, EMSGSIZE", n, err, tc.want)
			}
			if len(good) > 0 {
				receiveAll(t, b, good, loopback(t, a, "ipv4"), 64)
			}
		})
	}
}

func TestSendErrors(t *testing.T) {
	u := listenTB(t, Options{})
	if n, err := u.Send([][]byte{{1}}, netip.AddrPort{}, netip.Addr{}); n != 0 || err == nil {
		t.Errorf("Send to the zero endpoint = %d, %v, want 0 and an error", n, err)
	}
	if n, err := u.Send(nil, netip.AddrPort{}, netip.Addr{}); n != 0 || err != nil {
		t.Errorf("Send of nothing = %d, %v, want 0, nil", n, err)
	}
}

// sendAll sends bufs from u to dst and fails t unless all of them left.
func sendAll(t testing.TB, u *UDP, bufs [][]byte, dst netip.AddrPort) {
	t.Helper()
	if n, err := u.Send(bufs, dst, netip.Addr{}); n != len(bufs) || err != nil {
		t.Fatalf("Send of %d datagrams = %d, %v", len(bufs), n, err)
	}
}

func TestAllocs(t *testing.T) {
	for _, offload := range []bool{true, false} {
		t.Run(fmt.Sprint("offload ", offload), func(t *testing.T) {
			opts := Options{DisableOffload: !offload}
			a, b := listenTB(t, opts), listenTB(t, opts)
			dst := loopback(t, b, "ipv6")
			batch := make([][]byte, 64)
			for i := range batch {
				batch[i] = datagram(i, 1000+i%2*400) // mixed sizes
			}
			rbufs, sizes, eps, locals := receiveBufs(64)
			roundTrip := func() {
				if _, err := a.Send(batch, dst, netip.Addr{}); err != nil {
					t.Fatal(err)
				}
				for got := 0; got < len(batch); {
					n, err := b.Receive(rbufs, sizes, eps, locals)
					if err != nil {
						t.Fatal(err)
					}
					got += n
				}
			}
			if n := testing.AllocsPerRun(50, roundTrip); n != 0 {
				t.Errorf("Send+Receive of 64 datagrams: %v allocations, want 0", n)
			}
			discard := netip.AddrPortFrom(netip.IPv6Loopback(), 9)
			if n := testing.AllocsPerRun(50, func() {
				if _, err := a.Send(batch, discard, netip.Addr{}); err != nil {
					t.Fatal(err)
				}
			}); n != 0 {
				t.Errorf("Send of 64 datagrams: %v allocations, want 0", n)
			}
		})
	}
}

// TestGSOFallback makes the kernel refuse GSO (SO_NO_CHECK: segments without
// checksums give EINVAL) and checks that every datagram still arrives and
// that GSO turns off after gsoEINVALLimit refusals in a row.
func TestGSOFallback(t *testing.T) {
	a, b := listenTB(t, Options{}), listenTB(t, Options{})
	if gso, _ := a.Offload(); !gso {
		skipOrFail(t, "kernel without UDP GSO")
	}
	var serr error
	if err := a.raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_NO_CHECK, 1)
	}); err != nil || serr != nil {
		t.Fatalf("set SO_NO_CHECK: %v, %v", err, serr)
	}
	var want [][]byte
	for i := range 10 {
		want = append(want, datagram(i, 1200))
	}
	for i := range gsoEINVALLimit {
		if gso, _ := a.Offload(); !gso {
			t.Fatalf("GSO off after %d refusals, want on until %d", i, gsoEINVALLimit)
		}
		sendAll(t, a, want, loopback(t, b, "ipv4"))
		receiveAll(t, b, want, loopback(t, a, "ipv4"), 64)
	}
	if gso, _ := a.Offload(); gso {
		t.Errorf("GSO still on after %d refusals", gsoEINVALLimit)
	}
}

func TestGSORefused(t *testing.T) {
	tests := []struct {
		errs    []unix.Errno
		want    []bool // gsoRefused results
		wantGSO bool   // still on afterwards
	}{
		{[]unix.Errno{unix.EIO}, []bool{true}, false},
		{[]unix.Errno{unix.ENETUNREACH, unix.EPERM}, []bool{false, false}, true},
		{[]unix.Errno{unix.EINVAL, unix.EINVAL}, []bool{true, true}, true},
		{[]unix.Errno{unix.EINVAL, unix.EINVAL, unix.EINVAL}, []bool{true, true, true}, false},
	}
	for _, tc := range tests {
		u := &UDP{log: Options{}.logger()}
		u.gso.Store(true)
		var got []bool
		for _, e := range tc.errs {
			got = append(got, u.gsoRefused(e, false))
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) || u.gso.Load() != tc.wantGSO {
			t.Errorf("gsoRefused(%v) = %v, GSO %v; want %v, GSO %v", tc.errs, got, u.gso.Load(), tc.want, tc.wantGSO)
		}
	}
}

// TestConcurrentReceive reads one socket from several goroutines (the
// spill is shared) and checks that every datagram arrives exactly once.
func TestConcurrentReceive(t *testing.T) {
	const total, receivers = 128, 3
	a, b := listenTB(t, Options{}), listenTB(t, Options{BatchSize: 8})
	seen := make(chan int, total)
	var wg sync.WaitGroup
	for range receivers {
		wg.Go(func() {
			bufs, sizes, eps, locals := receiveBufs(8)
			for {
				n, err := b.Receive(bufs, sizes, eps, locals)
				if err != nil {
					return
				}
				for i := range n {
					seen <- int(binary.BigEndian.Uint16(bufs[i]))
				}
			}
		})
	}
	var batch [][]byte
	for i := range total {
		d := make([]byte, 1200)
		binary.BigEndian.PutUint16(d, uint16(i))
		batch = append(batch, d)
	}
	sendAll(t, a, batch, loopback(t, b, "ipv6"))
	count := make([]int, total)
	for range total {
		count[<-seen]++
	}
	b.Close()
	wg.Wait()
	for i, c := range count {
		if c != 1 {
			t.Errorf("datagram %d received %d times", i, c)
		}
	}
}
