//go:build linux

package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// UDP is a batched UDP socket: one dual-stack AF_INET6 socket bound to
// [::]:port, or an AF_INET socket where IPv6 is unavailable.
//
// Receive and Send may be called from several goroutines at once; each call
// borrows a preallocated scratch area (message headers, iovecs, control
// buffers), so the steady state allocates nothing per packet. After Close,
// every call returns net.ErrClosed.
type UDP struct {
	conn  *net.UDPConn
	raw   syscall.RawConn
	port  uint16
	is6   bool // dual-stack AF_INET6 socket; IPv4 peers are v4-mapped
	batch int
	gro   bool // UDP_GRO is on; fixed at Listen
	log   *slog.Logger

	closed    atomic.Bool
	gso       atomic.Bool  // UDP_SEGMENT is used; turned off on EIO and repeated EINVAL
	gsoEINVAL atomic.Int32 // GSO sends in a row that failed with EINVAL
	segHint   atomic.Int32 // largest GRO segment count of the last read

	spill  spill
	rxFree freeList[rxScratch]
	txFree freeList[txScratch]
	pmtu   pmtuProbe  // reads the kernel's path MTU (pmtu_linux.go)
	route  routeProbe // reads the kernel's source address choice (source_linux.go)
}

// Listen opens the socket described by opts. A port already in use gives an
// error like "listen UDP port 51820: address already in use" that wraps the
// errno.
func Listen(opts Options) (*UDP, error) {
	return listen(opts, true)
}

// listen opens the socket, trying the dual-stack one first when tryIPv6.
func listen(opts Options, tryIPv6 bool) (*UDP, error) {
	var (
		conn *net.UDPConn
		err  error
	)
	if tryIPv6 {
		conn, err = listenDualStack(opts.Port)
	}
	if !tryIPv6 || errors.Is(err, unix.EAFNOSUPPORT) {
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{Port: int(opts.Port)})
	}
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			err = errno
		}
		return nil, fmt.Errorf("listen UDP port %d: %w", opts.Port, err)
	}
	return newUDP(conn, opts)
}

// newUDP makes the bound socket conn a UDP: fwmark, buffers, offloads.
// On failure it closes conn.
func newUDP(conn *net.UDPConn, opts Options) (*UDP, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("listen UDP port %d: %w", opts.Port, err)
	}
	la := conn.LocalAddr().(*net.UDPAddr)
	u := &UDP{
		conn:  conn,
		raw:   raw,
		port:  uint16(la.Port),
		is6:   la.IP.To4() == nil,
		batch: opts.batchSize(),
		log:   opts.logger(),
	}
	u.rxFree = newFreeList(func() *rxScratch { return newRxScratch(u.batch) })
	u.txFree = newFreeList(func() *txScratch { return newTxScratch(u.batch, u.is6) })
	if err := u.configure(opts); err != nil {
		u.route.close()
		conn.Close()
		return nil, err
	}
	u.log.Debug("UDP listening", "port", u.port, "dual_stack", u.is6, "gso", u.gso.Load(), "gro", u.gro)
	return u, nil
}

// listenDualStack binds [::]:port with IPV6_V6ONLY off.
func listenDualStack(port uint16) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) {
			err = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
		}); cerr != nil {
			return cerr
		}
		if err != nil {
			return fmt.Errorf("clear IPV6_V6ONLY: %w", err)
		}
		return nil
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp6", net.JoinHostPort("::", strconv.Itoa(int(port))))
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// configure sets the fwmark, the buffer sizes and the offloads.
func (u *UDP) configure(opts Options) error {
	var err error
	cerr := u.raw.Control(func(fd uintptr) {
		s := int(fd)
		if opts.FwMark != 0 {
			if e := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_MARK, int(opts.FwMark)); e != nil {
				err = fmt.Errorf("set fwmark %d on UDP port %d: %w", opts.FwMark, u.port, e)
				return
			}
		}
		// Best effort: the FORCE variants need CAP_NET_ADMIN, the plain ones
		// are capped at net.core.[rw]mem_max. Less only costs throughput.
		if unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketBufferSize) != nil {
			_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF, socketBufferSize)
		}
		if unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, socketBufferSize) != nil {
			_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUF, socketBufferSize)
		}
		// The local address of each datagram, which replies leave from
		// (RO6, RO7). On the dual-stack socket IPV6_PKTINFO also reports
		// IPv4 datagrams, v4-mapped.
		if e := u.setPktinfo(s); e != nil {
			err = fmt.Errorf("receive local addresses on UDP port %d: %w", u.port, e)
			return
		}
		if e := u.route.open(u.is6, opts.FwMark); e != nil {
			err = fmt.Errorf("UDP port %d: %w", u.port, e)
			return
		}
		// DF on every datagram; EMSGSIZE past the path MTU (pmtu_linux.go).
		if e := u.setPathMTUDiscovery(s, opts.FwMark); e != nil {
			err = fmt.Errorf("path MTU discovery on UDP port %d: %w", u.port, e)
			return
		}
		if opts.WireGuardOnly {
			if e := attachFilter(s, wireGuardFilter()); e != nil {
				u.log.Warn("datagrams that cannot be WireGuard messages reach warren: the kernel refused the socket filter", "port", u.port, "err", e)
			}
		}
		if opts.DisableOffload {
			return
		}
		// A kernel that knows UDP_SEGMENT answers the getsockopt; whether
		// the route can checksum the segments shows only on the first send.
		if _, e := unix.GetsockoptInt(s, unix.IPPROTO_UDP, unix.UDP_SEGMENT); e == nil {
			u.gso.Store(true)
		}
		if unix.SetsockoptInt(s, unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil {
			v, e := unix.GetsockoptInt(s, unix.IPPROTO_UDP, unix.UDP_GRO)
			u.gro = e == nil && v == 1
			// Until the first read shows otherwise, expect full
			// super-datagrams: reading one message spills nothing.
			u.segHint.Store(maxSegments)
		}
	})
	if cerr != nil {
		return fmt.Errorf("configure UDP port %d: %w", u.port, cerr)
	}
	return err
}

// setPktinfo asks the kernel for the local address of every datagram.
func (u *UDP) setPktinfo(s int) error {
	if u.is6 {
		return unix.SetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
	}
	return unix.SetsockoptInt(s, unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
}

// Receive blocks until at least one datagram arrived and returns how many
// it wrote into bufs, with their lengths in sizes, their senders in eps
// (IPv4 senders as 4-byte addresses) and in locals the address of ours each
// was sent to (unmapped; the zero Addr for an IPv6 link-local one). It
// returns at most min(len(bufs), len(sizes), len(eps), len(locals),
// BatchSize()) datagrams. Each bufs[i]
// must be at least BufferSize bytes: with GRO one read may return a 64 KB
// super-datagram that is split into the following buffers; segments that do
// not fit are kept and returned first by the next Receive (from any
// goroutine), never dropped. The buffers are only borrowed for the call.
// Safe for concurrent use.
func (u *UDP) Receive(bufs [][]byte, sizes []int, eps []netip.AddrPort, locals []netip.Addr) (int, error) {
	if u.closed.Load() {
		return 0, net.ErrClosed
	}
	nb, err := checkReceive(bufs, sizes, eps, locals, u.batch)
	if err != nil {
		return 0, err
	}
	// Spilled datagrams go out alone: topping the batch up from the
	// socket would wait for its read lock, which another Receive holds
	// while it blocks for new datagrams, and so would strand these.
	if n := u.spill.deliver(bufs[:nb], sizes, eps, locals); n > 0 {
		return n, nil
	}
	s := u.rxFree.get()
	n, err := u.read(s, bufs[:nb], sizes[:nb], eps[:nb], locals[:nb], true)
	u.rxFree.put(s)
	if n > 0 {
		return n, nil
	}
	return 0, err
}

// read does one recvmmsg into bufs and splits coalesced messages. Unless
// block, it returns 0 datagrams instead of waiting.
func (u *UDP) read(s *rxScratch, bufs [][]byte, sizes []int, eps []netip.AddrPort, locals []netip.Addr, block bool) (int, error) {
	m := len(bufs)
	if h := int(u.segHint.Load()); u.gro && h > 1 {
		// Ask for about as many messages as the last read's super-datagrams
		// need to fill bufs; splitMessages spills any excess.
		m = min(m, (m+h-1)/h)
	}
	s.prepare(bufs[:m])
	s.block = block
	err := u.raw.Read(s.readFn)
	defer s.release(m)
	switch {
	case err != nil:
		if u.closed.Load() || errors.Is(err, net.ErrClosed) {
			return 0, net.ErrClosed
		}
		return 0, fmt.Errorf("receive on UDP port %d: %w", u.port, err)
	case s.errno == unix.EAGAIN:
		return 0, nil
	case s.errno != 0:
		return 0, fmt.Errorf("receive on UDP port %d: %w", u.port, s.errno)
	}
	msgs := s.messages(s.n)
	n, maxCount := splitMessages(bufs, sizes, eps, locals, msgs, &u.spill)
	if u.gro && int(u.segHint.Load()) != maxCount {
		u.segHint.Store(int32(maxCount))
	}
	return n, nil
}

// Send sends every datagram in bufs to ep with as few sendmmsg calls as the
// socket allows: runs of equal-sized datagrams (the last may be shorter)
// leave as one GSO super-datagram of up to 64 segments and 64 KB. Every
// datagram leaves from the source address local (IPV6_PKTINFO or IP_PKTINFO,
// RO6), or from the kernel's choice when local is the zero Addr; a local the
// host does not have fails with EINVAL (RO5, RO8). The buffers are only
// borrowed for the call and never written. A message that fails is skipped
// and the rest are tried. Send returns how many datagrams the kernel
// accepted (a GSO message counts its segments) and errors.Join of the
// failures, one per run of equal errors. Safe for concurrent use.
func (u *UDP) Send(bufs [][]byte, ep netip.AddrPort, local netip.Addr) (int, error) {
	if u.closed.Load() {
		return 0, net.ErrClosed
	}
	if len(bufs) == 0 {
		return 0, nil
	}
	s := u.txFree.get()
	defer u.txFree.put(s)
	if err := s.setDestination(ep, u.is6); err != nil {
		return 0, fmt.Errorf("send to %v: %w", ep, err)
	}
	if err := s.setSource(local, ep); err != nil {
		return 0, fmt.Errorf("send to %v from %v: %w", ep, local, err)
	}
	maxPayload := maxPayloadIPv4
	if ep.Addr().Unmap().Is6() {
		maxPayload = maxPayloadIPv6
	}
	gso := u.gso.Load()
	var (
		errs []error
		last unix.Errno // errno of the last failure, so that a dead route adds one error, not one per message
		n    int
	)
	for rest := bufs; len(rest) > 0; {
		chunk := rest[:min(len(rest), u.batch)]
		s.groups = planGroups(s.groups, chunk, maxPayload, gso)
		s.build(chunk)
		next := len(chunk)
		for i := 0; i < len(s.groups); {
			sent, errno, err := u.write(s, i, len(s.groups))
			n += segments(s.groups[i : i+sent])
			i += sent
			if err != nil {
				s.release()
				return n, errors.Join(append(errs, err)...)
			}
			if errno == 0 {
				break
			}
			if s.groups[i].count > 1 && u.gsoRefused(errno, local.IsValid() || u.overPathMTU(errno, ep, s.groups[i].size)) {
				// Resend from this message on without GSO.
				gso, next = false, s.groups[i].start
				break
			}
			if errno != last {
				errs = append(errs, u.sendError(ep, errno))
				last = errno
			}
			i++
		}
		if gso && u.gsoEINVAL.Load() != 0 {
			u.gsoEINVAL.Store(0)
		}
		s.release()
		rest = rest[next:]
	}
	return n, errors.Join(errs...)
}

// segments returns how many datagrams groups carry.
func segments(groups []segmentGroup) int {
	n := 0
	for _, g := range groups {
		n += g.count
	}
	return n
}

// write sends s.msgs[from:to] and returns how many went out before the
// first failing message.
func (u *UDP) write(s *txScratch, from, to int) (sent int, errno unix.Errno, err error) {
	s.next, s.to, s.errno = from, to, 0
	if err := u.raw.Write(s.writeFn); err != nil {
		if u.closed.Load() || errors.Is(err, net.ErrClosed) {
			return s.next - from, 0, net.ErrClosed
		}
		return s.next - from, 0, fmt.Errorf("send on UDP port %d: %w", u.port, err)
	}
	return s.next - from, s.errno, nil
}

// gsoRefused reports whether errno from a GSO send means the message should
// go again without GSO, and turns GSO off for good where the route or kernel
// cannot do it. EIO: the device cannot checksum the segments (udp(7)).
// EINVAL: also a segment larger than the route MTU, so only repeated ones
// turn GSO off; excused ones do not count: with a source address that
// address may be gone (RO5), and a segment over the kernel's path MTU
// (overPathMTU) is refused without GSO too. The message goes again without
// GSO, where a gone source or an oversize datagram fails alone.
func (u *UDP) gsoRefused(errno unix.Errno, excused bool) bool {
	switch errno {
	case unix.EIO, unix.ENOPROTOOPT, unix.EOPNOTSUPP:
	case unix.EINVAL:
		if excused {
			return true
		}
		if u.gsoEINVAL.Add(1) < gsoEINVALLimit {
			return true
		}
	default:
		return false
	}
	if u.gso.Swap(false) {
		u.log.Warn("UDP GSO turned off", "port", u.port, "err", errno)
	}
	return true
}

// BatchSize returns the most datagrams one Receive returns.
func (u *UDP) BatchSize() int { return u.batch }

// Port returns the bound UDP port.
func (u *UDP) Port() uint16 { return u.port }

// Offload reports whether UDP GSO (send) and GRO (receive) are in use.
func (u *UDP) Offload() (gso, gro bool) { return u.gso.Load(), u.gro }

// Close closes the socket, unblocking any Receive. It is idempotent.
func (u *UDP) Close() error {
	if !u.closed.CompareAndSwap(false, true) {
		return nil
	}
	u.pmtu.close()
	u.route.close()
	return u.conn.Close()
}

// attachFilter attaches the classic BPF program prog to the socket s.
func attachFilter(s int, prog []bpf.Instruction) error {
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return err
	}
	f := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		f[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return unix.SetsockoptSockFprog(s, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]})
}

// SocketDrops reports the datagrams the kernel dropped at the socket since
// it opened, before warren could read them: refused by the socket filter
// (Options.WireGuardOnly) or over the receive buffer. It is the socket's
// sk_drops, read with SO_MEMINFO; the kernel counts it in 32 bits.
func (u *UDP) SocketDrops() (uint64, error) {
	var info [unix.SK_MEMINFO_VARS]uint32
	var serr error
	err := u.raw.Control(func(fd uintptr) {
		n := uint32(unsafe.Sizeof(info))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&n)), 0)
		if e != 0 {
			serr = e
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return 0, fmt.Errorf("UDP port %d: read the socket's drops: %w", u.port, err)
	}
	return uint64(info[unix.SK_MEMINFO_DROPS]), nil
}
