// Package tuntest provides test doubles for package device/tun: an
// in-memory adapter and packet builders. It is imported only by tests.
package tuntest

import (
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// Memory defaults.
const (
	DefaultName      = "mem0"
	DefaultMTU       = 1420 // bytes
	DefaultBatchSize = 128  // packets
	DefaultQueue     = 1024 // packets, each way
)

// MemoryOptions configures a Memory adapter. Zero fields take the defaults.
type MemoryOptions struct {
	Name      string
	MTU       int // bytes
	BatchSize int // packets per Read or Write
	Queue     int // packets Inject and Write may queue before they block
}

// Memory is an in-memory tunnel.Adapter. Packets given to Inject come out of
// Read; packets passed to Write come out of Written. Both directions are
// bounded queues: Inject and Write block while theirs is full, until Close.
// All methods are safe for concurrent use.
type Memory struct {
	name  string
	batch int
	mtu   atomic.Int64

	inbound chan []byte   // Inject to Read
	written chan []byte   // Write to the test
	done    chan struct{} // closed by Close

	// mu is held for reading by senders on written and for writing by Close
	// before it closes written, so no send can hit a closed channel.
	mu        sync.RWMutex
	closeOnce sync.Once
}

// NewMemory returns an open Memory adapter.
func NewMemory(opts MemoryOptions) *Memory {
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if opts.MTU == 0 {
		opts.MTU = DefaultMTU
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.Queue <= 0 {
		opts.Queue = DefaultQueue
	}
	m := &Memory{
		name:    opts.Name,
		batch:   opts.BatchSize,
		inbound: make(chan []byte, opts.Queue),
		written: make(chan []byte, opts.Queue),
		done:    make(chan struct{}),
	}
	m.mtu.Store(int64(opts.MTU))
	return m
}

// Inject queues copies of pkts for Read, in order. It blocks while the queue
// is full and returns net.ErrClosed once the adapter is closed.
func (m *Memory) Inject(pkts ...[]byte) error {
	for _, p := range pkts {
		p = append([]byte(nil), p...)
		select {
		case <-m.done:
			return net.ErrClosed
		default:
		}
		select {
		case m.inbound <- p:
		case <-m.done:
			return net.ErrClosed
		}
	}
	return nil
}

// Written delivers a copy of every packet passed to Write, in order. It is
// closed by Close.
func (m *Memory) Written() <-chan []byte { return m.written }

// Read blocks until at least one injected packet is ready, then copies up to
// min(len(bufs), BatchSize) of them into bufs[i][offset:]. A packet that does
// not fit its buffer is dropped and reported as io.ErrShortBuffer, after the
// packets before it.
func (m *Memory) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(sizes) < len(bufs) {
		return 0, fmt.Errorf("read %s: %d sizes for %d buffers", m.name, len(sizes), len(bufs))
	}
	limit := min(len(bufs), m.batch)
	if limit == 0 {
		return 0, nil
	}
	var p []byte
	select {
	case <-m.done:
		return 0, net.ErrClosed
	case p = <-m.inbound:
	}
	n := 0
	for {
		if len(p) > len(bufs[n])-offset {
			return n, fmt.Errorf("read %s: packet of %d bytes in a buffer of %d: %w", m.name, len(p), len(bufs[n])-offset, io.ErrShortBuffer)
		}
		sizes[n] = copy(bufs[n][offset:], p)
		n++
		if n == limit {
			return n, nil
		}
		select {
		case p = <-m.inbound:
		default:
			return n, nil
		}
	}
}

// Write queues a copy of each bufs[i][offset:] on Written, blocking while the
// queue is full. It takes at most BatchSize packets.
func (m *Memory) Write(bufs [][]byte, offset int) (int, error) {
	if len(bufs) > m.batch {
		return 0, fmt.Errorf("write %s: %d packets, batch size %d", m.name, len(bufs), m.batch)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	for i, b := range bufs {
		if offset > len(b) {
			return i, fmt.Errorf("write %s: offset %d beyond buffer of %d", m.name, offset, len(b))
		}
		p := append([]byte(nil), b[offset:]...)
		select {
		case <-m.done:
			return i, net.ErrClosed
		default:
		}
		select {
		case m.written <- p:
		case <-m.done:
			return i, net.ErrClosed
		}
	}
	return len(bufs), nil
}

// BatchSize is the configured batch size.
func (m *Memory) BatchSize() int { return m.batch }

// MTU is the current MTU.
func (m *Memory) MTU() int { return int(m.mtu.Load()) }

// SetMTU changes the MTU, as the host would, for tests of MTU changes at run
// time.
func (m *Memory) SetMTU(mtu int) { m.mtu.Store(int64(mtu)) }

// Name is the configured name.
func (m *Memory) Name() string { return m.name }

// Close wakes blocked calls, which return net.ErrClosed, drops queued
// packets, and closes Written. It is idempotent.
func (m *Memory) Close() error {
	m.closeOnce.Do(func() {
		close(m.done)
		m.mu.Lock()
		close(m.written)
		m.mu.Unlock()
	})
	return nil
}
