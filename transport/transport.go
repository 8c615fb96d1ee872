// Package transport owns warren's UDP socket: batched sending and receiving of
// WireGuard datagrams for the engine.
//
// On Linux one dual-stack socket ([::]:port with IPV6_V6ONLY off, IPv4 peers as
// v4-mapped addresses) moves a whole batch per system call: recvmmsg with UDP
// GRO on the way in, sendmmsg with UDP GSO on the way out. When the kernel or
// the route refuses the offloads, the transport notices at run time and falls
// back to plain recvmmsg/sendmmsg. Elsewhere a portable fallback moves one
// datagram per call through net.UDPConn.
//
// For tests of the engine without sockets, package transport/transporttest
// provides an in-memory network of transports with the same methods.
package transport

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
)

// Sizes and limits.
const (
	// BufferSize is the smallest receive buffer Receive accepts: one GRO read
	// may return a coalesced super-datagram of up to 64 KB in a single buffer
	// before it is split into the following ones.
	BufferSize = 65535 // bytes

	// DefaultBatchSize is the batch size when Options.BatchSize is 0.
	DefaultBatchSize = 64 // datagrams

	// MaxBatchSize is the largest batch size (UIO_MAXIOV bounds recvmmsg and
	// sendmmsg).
	MaxBatchSize = 1024 // datagrams

	// maxSegments is the kernel's UDP_MAX_SEGMENTS on older kernels: the most
	// segments one GSO super-datagram may carry.
	maxSegments = 64

	// maxPayloadIPv4 and maxPayloadIPv6 bound the UDP payload of one
	// super-datagram (the IPv6 payload length excludes the IPv6 header).
	maxPayloadIPv4 = 1<<16 - 1 - 20 - 8 // bytes
	maxPayloadIPv6 = 1<<16 - 1 - 8      // bytes
)

// Tuning.
const (
	// socketBufferSize is what SO_RCVBUF and SO_SNDBUF are raised to (with the
	// FORCE variants when we hold CAP_NET_ADMIN).
	socketBufferSize = 4 << 20 // bytes

	// scratchPoolSize is how many per-call scratch areas each direction keeps
	// for reuse; more concurrent callers than this allocate and drop theirs.
	scratchPoolSize = 8

	// spillFreeMax is how many spill buffers (BufferSize each) stay allocated
	// for reuse after a burst that spilled more.
	spillFreeMax = 8

	// gsoEINVALLimit is how many GSO sends in a row may fail with EINVAL (which
	// a single over-MTU segment size also causes) before GSO is turned off.
	gsoEINVALLimit = 3
)

// Options configures Listen.
type Options struct {
	// Port is the UDP port to bind; 0 picks a random free port.
	Port uint16
	// FwMark is set as SO_MARK on the socket so that policy routing (the
	// wg-quick default route) lets our own UDP bypass the tunnel; 0 = none.
	FwMark uint32
	// BatchSize is the most datagrams one Receive returns and one sendmmsg
	// takes; 0 means DefaultBatchSize, larger values are capped at
	// MaxBatchSize.
	BatchSize int
	// Logger receives rare events (offloads turned off); nil discards them.
	Logger *slog.Logger
	// DisableOffload turns UDP GSO and GRO off from the start (benchmarks,
	// debugging).
	DisableOffload bool
	// WireGuardOnly attaches a socket filter that drops, in the kernel,
	// every datagram that cannot be WireGuard messages (filter.go), so
	// that a flood of garbage is not queued, woken for and copied out.
	// Such datagrams are then counted by the kernel as the socket's drops
	// (ss -u -m: d; UDP.SocketDrops), not by the engine. A kernel that
	// refuses the filter is logged once and the socket goes on without it.
	WireGuardOnly bool
}

func (o Options) batchSize() int {
	switch {
	case o.BatchSize <= 0:
		return DefaultBatchSize
	case o.BatchSize > MaxBatchSize:
		return MaxBatchSize
	}
	return o.BatchSize
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// checkReceive returns how many of bufs a Receive may fill, or an error for
// a batch the caller built wrong.
func checkReceive(bufs [][]byte, sizes []int, eps []netip.AddrPort, locals []netip.Addr, batch int) (int, error) {
	nb := min(len(bufs), len(sizes), len(eps), len(locals), batch)
	if nb == 0 {
		return 0, errors.New("receive: empty batch")
	}
	for i, b := range bufs[:nb] {
		if len(b) < BufferSize {
			return 0, fmt.Errorf("receive: buffer %d has %d bytes, want at least %d", i, len(b), BufferSize)
		}
	}
	return nb, nil
}

// freeList keeps up to scratchPoolSize scratch areas for reuse. Unlike a
// sync.Pool it never drops them at a GC, so the steady state stays free of
// allocations.
type freeList[T any] struct {
	c     chan *T
	alloc func() *T
}

func newFreeList[T any](alloc func() *T) freeList[T] {
	return freeList[T]{c: make(chan *T, scratchPoolSize), alloc: alloc}
}

// get returns a free scratch area or a new one.
func (f freeList[T]) get() *T {
	select {
	case s := <-f.c:
		return s
	default:
		return f.alloc()
	}
}

// put returns s for reuse, or drops it when the list is full.
func (f freeList[T]) put(s *T) {
	select {
	case f.c <- s:
	default:
	}
}
