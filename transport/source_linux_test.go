package transport

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// receiveFrom receives until want datagrams arrived at u and returns their
// senders and local addresses.
func receiveFrom(tb testing.TB, u *UDP, want int) (eps []netip.AddrPort, locals []netip.Addr) {
	tb.Helper()
	bufs, sizes, e, l := receiveBufs(64)
	for len(eps) < want {
		n, err := u.Receive(bufs, sizes, e, l)
		if err != nil {
			tb.Fatalf("Receive: %v", err)
		}
		eps = append(eps, e[:n]...)
		locals = append(locals, l[:n]...)
	}
	return eps, locals
}

// TestSourceAddress covers RO6 on the loopback, which has every address of
// 127.0.0.0/8: a datagram to 127.0.0.2 reports that local address, and
// replies sent from it arrive from it, whether they leave one by one or as a
// GSO super-datagram; without a source they arrive from the kernel's choice,
// 127.0.0.1. The same over IPv6 with ::1, and on an IPv4-only socket
// (IP_PKTINFO rather than IPV6_PKTINFO).
func TestSourceAddress(t *testing.T) {
	for _, tc := range []struct {
		offload, dualStack bool
	}{{true, true}, {false, true}, {true, false}} {
		t.Run(fmt.Sprintf("offload %v dual-stack %v", tc.offload, tc.dualStack), func(t *testing.T) {
			opts := Options{DisableOffload: !tc.offload}
			client := listenTB(t, opts)
			server, err := listen(opts, tc.dualStack)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { server.Close() })
			if server.is6 != tc.dualStack {
				t.Fatalf("dual-stack socket %v, want %v", server.is6, tc.dualStack)
			}
			second := netip.MustParseAddr("127.0.0.2")
			sendAll(t, client, [][]byte{datagram(0, 100)}, netip.AddrPortFrom(second, server.Port()))
			eps, locals := receiveFrom(t, server, 1)
			if locals[0] != second {
				t.Fatalf("datagram to %v: local address %v", second, locals[0])
			}
			peer := eps[0]

			// Equal sizes form GSO groups; the odd one leaves alone.
			var replies [][]byte
			for i := range 9 {
				replies = append(replies, datagram(i, 1200))
			}
			replies = append(replies, datagram(9, 300))
			for _, tc := range []struct {
				local, want netip.Addr
			}{
				{locals[0], second},
				{netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("127.0.0.3")},
				{netip.Addr{}, netip.MustParseAddr("127.0.0.1")},
			} {
				if n, err := server.Send(replies, peer, tc.local); n != len(replies) || err != nil {
					t.Fatalf("Send from %v = %d, %v", tc.local, n, err)
				}
				eps, _ := receiveFrom(t, client, len(replies))
				for i, ep := range eps {
					if ep != netip.AddrPortFrom(tc.want, server.Port()) {
						t.Errorf("reply %d sent from %v arrived from %v, want %v", i, tc.local, ep, tc.want)
					}
				}
			}

			if !tc.dualStack {
				return
			}
			v6 := listenTB(t, opts)
			sendAll(t, v6, [][]byte{datagram(0, 100)}, loopback(t, server, "ipv6"))
			eps, locals = receiveFrom(t, server, 1)
			if locals[0] != netip.IPv6Loopback() {
				t.Fatalf("datagram to ::1: local address %v", locals[0])
			}
			if n, err := server.Send(replies, eps[0], locals[0]); n != len(replies) || err != nil {
				t.Fatalf("Send from ::1 = %d, %v", n, err)
			}
			if eps, _ := receiveFrom(t, v6, len(replies)); eps[0] != loopback(t, server, "ipv6") {
				t.Errorf("reply from ::1 arrived from %v", eps[0])
			}
		})
	}
}

// TestSourceAddressGone covers what the engine relies on for RO5 and RO8: a
// source address the host does not have fails every datagram, with EINVAL
// (IPv6, a family mismatch) or ENETUNREACH (Linux's IPv4 route lookup),
// which the engine answers by sending from the kernel's choice. A gone
// source in GSO batches does not turn GSO off, and a source of the other
// family than the destination fails the same way.
func TestSourceAddressGone(t *testing.T) {
	client, server := listenTB(t, Options{}), listenTB(t, Options{})
	var batch [][]byte
	for i := range 8 {
		batch = append(batch, datagram(i, 1000))
	}
	for _, tc := range []struct {
		local netip.Addr
		dst   netip.AddrPort
	}{
		{netip.MustParseAddr("198.18.255.254"), loopback(t, client, "ipv4")},
		{netip.MustParseAddr("fd00:7761:ffff::1"), loopback(t, client, "ipv6")},
		{netip.MustParseAddr("127.0.0.1"), loopback(t, client, "ipv6")},
		{netip.IPv6Loopback(), loopback(t, client, "ipv4")},
	} {
		for range gsoEINVALLimit + 1 {
			n, err := server.Send(batch, tc.dst, tc.local)
			if n != 0 || !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENETUNREACH) {
				t.Fatalf("Send to %v from %v = %d, %v; want 0 and EINVAL or ENETUNREACH", tc.dst, tc.local, n, err)
			}
		}
	}
	if gso, _ := server.Offload(); !gso {
		if gso, _ := client.Offload(); gso {
			t.Errorf("GSO turned off by sends from a gone source")
		}
	}
	// The kernel's choice still works, and the refused sends sent nothing.
	sendAll(t, server, batch, loopback(t, client, "ipv4"))
	if eps, _ := receiveFrom(t, client, len(batch)); len(eps) != len(batch) {
		t.Errorf("received %d datagrams, want %d", len(eps), len(batch))
	}
}

// TestSourceAddressAllocs pins that a source address and the local
// addresses cost no allocation per call.
func TestSourceAddressAllocs(t *testing.T) {
	a, b := listenTB(t, Options{}), listenTB(t, Options{})
	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), b.Port())
	local := netip.MustParseAddr("127.0.0.1")
	batch := make([][]byte, 64)
	for i := range batch {
		batch[i] = datagram(i, 1000+i%2*400)
	}
	rbufs, sizes, eps, locals := receiveBufs(64)
	if n := testing.AllocsPerRun(50, func() {
		if _, err := a.Send(batch, dst, local); err != nil {
			t.Fatal(err)
		}
		for got := 0; got < len(batch); {
			n, err := b.Receive(rbufs, sizes, eps, locals)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	}); n != 0 {
		t.Errorf("Send from a source and Receive of 64 datagrams: %v allocations, want 0", n)
	}
	if locals[0] != dst.Addr() {
		t.Errorf("local address %v, want %v", locals[0], dst.Addr())
	}
}

// TestParseControl decodes the control messages the kernel writes:
// UDP_GRO, IPV6_PKTINFO (an IPv4 one v4-mapped) and IP_PKTINFO.
func TestParseControl(t *testing.T) {
	cmsg := func(level, typ int32, data []byte) []byte {
		b := make([]byte, unix.CmsgSpace(len(data)))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level, h.Type = level, typ
		h.SetLen(unix.CmsgLen(len(data)))
		copy(b[unix.CmsgLen(0):], data)
		return b
	}
	gro := cmsg(unix.SOL_UDP, unix.UDP_GRO, []byte{0xb0, 0x04, 0, 0}) // 1200, little endian
	info6 := func(a netip.Addr) []byte {
		b := a.As16()
		return cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, append(b[:], 2, 0, 0, 0))
	}
	info4 := cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, []byte{2, 0, 0, 0, 198, 18, 0, 9, 198, 18, 0, 12})
	for _, tc := range []struct {
		name    string
		ctrl    []byte
		segment int
		local   string
	}{
		{"none", nil, 0, "invalid IP"},
		{"gro", gro, 1200, "invalid IP"},
		{"v6", info6(netip.MustParseAddr("fd00:7761::12")), 0, "fd00:7761::12"},
		{"v4-mapped then gro", append(info6(netip.MustParseAddr("::ffff:198.18.0.12")), gro...), 1200, "198.18.0.12"},
		{"v4", append(gro, info4...), 1200, "198.18.0.12"},
		{"link-local", info6(netip.MustParseAddr("fe80::1")), 0, "invalid IP"},
		{"truncated", info6(netip.MustParseAddr("fd00:7761::12"))[:20], 0, "invalid IP"},
	} {
		segment, local := parseControl(tc.ctrl)
		if segment != tc.segment || local.String() != tc.local {
			t.Errorf("%s: parseControl = %d, %v; want %d, %s", tc.name, segment, local, tc.segment, tc.local)
		}
	}
}

// TestRouteSource covers the probe behind RO8: the kernel's choice toward
// a destination, asked again and again across families without one answer
// sticking to the next, and without allocating.
func TestRouteSource(t *testing.T) {
	u := listenTB(t, Options{})
	for range 2 {
		for _, tc := range []struct{ dst, want string }{
			{"127.0.0.1:9", "127.0.0.1"},
			{"[::1]:9", "::1"},
			{"[::ffff:127.0.0.2]:9", "127.0.0.1"},
		} {
			got, err := u.RouteSource(netip.MustParseAddrPort(tc.dst))
			if err != nil || got != netip.MustParseAddr(tc.want) {
				t.Errorf("RouteSource(%s) = %v, %v; want %s", tc.dst, got, err, tc.want)
			}
		}
	}
	u4, err := listen(Options{}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer u4.Close()
	if got, err := u4.RouteSource(netip.MustParseAddrPort("127.0.0.2:9")); err != nil || got != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("IPv4 socket: RouteSource(127.0.0.2:9) = %v, %v; want 127.0.0.1", got, err)
	}
	if got, err := u4.RouteSource(netip.MustParseAddrPort("[::1]:9")); err == nil {
		t.Errorf("IPv4 socket: RouteSource([::1]:9) = %v, want an error", got)
	}
	dst := netip.MustParseAddrPort("127.0.0.1:9")
	if n := testing.AllocsPerRun(50, func() { u.RouteSource(dst) }); n != 0 {
		t.Errorf("RouteSource: %v allocations, want 0", n)
	}
	u.Close()
	if _, err := u.RouteSource(dst); err == nil {
		t.Error("RouteSource after Close succeeded")
	}
}

// BenchmarkSendSource compares BenchmarkSend's batches of 64 x 1400 bytes
// sent with the kernel's choice and with a source address (IPV6_PKTINFO on
// every message), with and without GSO.
func BenchmarkSendSource(b *testing.B) {
	for _, offload := range []bool{true, false} {
		for _, local := range []netip.Addr{{}, netip.MustParseAddr("127.0.0.1")} {
			name := fmt.Sprintf("offload=%v/source=%v", offload, local.IsValid())
			b.Run(name, func(b *testing.B) {
				opts := Options{BatchSize: benchBatch, DisableOffload: !offload}
				a, sink := listenTB(b, opts), listenTB(b, opts)
				dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), sink.Port())
				bufs := benchBatchBufs()
				b.ReportAllocs()
				b.SetBytes(benchSize * benchBatch)
				start := time.Now()
				for b.Loop() {
					if _, err := a.Send(bufs, dst, local); err != nil {
						b.Fatal(err)
					}
				}
				reportRate(b, b.N*benchBatch, time.Since(start))
			})
		}
	}
}

// FuzzParseControl feeds parseControl arbitrary control buffers, as a
// kernel that wrote something unexpected would: it must not panic, and any
// local address it returns is a valid one other than IPv6 link-local.
func FuzzParseControl(f *testing.F) {
	f.Add([]byte{})
	ctrl := make([]byte, unix.CmsgSpace(unix.SizeofInet6Pktinfo))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&ctrl[0]))
	h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
	ctrl[unix.CmsgLen(0)] = 0xfd
	f.Add(ctrl)
	f.Fuzz(func(t *testing.T, ctrl []byte) {
		// Aligned as the kernel's buffers are.
		buf := make([]uint64, (len(ctrl)+7)/8)
		b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(buf))), len(buf)*8)[:len(ctrl)]
		copy(b, ctrl)
		_, local := parseControl(b)
		if local.IsValid() && (local.Is4In6() || local.IsLinkLocalUnicast() && local.Is6()) {
			t.Errorf("local %v", local)
		}
	})
}
