package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Place is where a generator opens its sockets. *netlab.Namespace satisfies
// it: a socket opened on a thread inside a namespace belongs to that
// namespace for its whole life, whichever goroutine uses it afterwards.
type Place interface {
	Do(f func() error) error
}

// Here is the Place of the calling process's own network namespace.
type Here struct{}

// Do runs f.
func (Here) Do(f func() error) error { return f() }

// Path is the way test traffic goes: clients open their sockets in Client
// and send to servers that listen on ServerAddr in Server.
type Path struct {
	Client, Server Place
	ServerAddr     netip.Addr
}

// Meter returns the CPU time consumed so far by whatever a test charges CPU
// to (the tunnel endpoints). Generators read it at the start and the end of
// their measured window.
type Meter func() (time.Duration, error)

// Generator tuning.
const (
	tcpChunk      = 128 << 10 // bytes per TCP write
	tcpReadBuffer = 256 << 10 // bytes per TCP read
	maxWarmUp     = 500 * time.Millisecond
	dialTimeout   = 5 * time.Second
	udpBatch      = 64      // datagrams per sendmmsg/recvmmsg
	udpSocketBuf  = 4 << 20 // bytes of SO_RCVBUF/SO_SNDBUF asked for
	drainIdle     = 100 * time.Millisecond
	drainMax      = time.Second
)

// warmUp is how long a throughput test runs before its measured window of
// length d opens, so that TCP slow start and first-packet costs stay out.
func warmUp(d time.Duration) time.Duration { return min(d/10, maxWarmUp) }

// TCPResult is the outcome of a TCP bulk test: Bytes of payload received by
// the server in the measured window of length Elapsed, and the CPU time the
// meter recorded in the same window.
type TCPResult struct {
	Bytes   int64
	Elapsed time.Duration
	CPU     time.Duration
}

// Gbps is the received payload rate in 10^9 bits per second.
func (r TCPResult) Gbps() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Bytes) * 8 / r.Elapsed.Seconds() / 1e9
}

// TCPBulk sends as fast as possible over streams parallel TCP connections
// from p.Client to p.Server for a warm-up and then a measured window of d,
// and reports what the server received in the window. meter may be nil.
func TCPBulk(ctx context.Context, p Path, streams int, d time.Duration, meter Meter) (TCPResult, error) {
	if streams < 1 {
		return TCPResult{}, fmt.Errorf("tcp: %d streams", streams)
	}
	var ln *net.TCPListener
	err := p.Server.Do(func() error {
		var err error
		ln, err = net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(p.ServerAddr, 0)))
		return err
	})
	if err != nil {
		return TCPResult{}, fmt.Errorf("tcp listen: %w", err)
	}
	t := &tcpTest{}
	t.track(ln)
	defer t.stop()

	var received atomic.Int64
	t.wg.Go(func() { t.acceptLoop(ln, streams, &received) })

	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	err = p.Client.Do(func() error {
		dialer := net.Dialer{Timeout: dialTimeout}
		for range streams {
			c, err := dialer.DialContext(ctx, "tcp", addr.String())
			if err != nil {
				return err
			}
			t.track(c)
			t.wg.Go(func() { t.sendLoop(c) })
		}
		return nil
	})
	if err != nil {
		return TCPResult{}, fmt.Errorf("tcp dial %s: %w", addr, err)
	}

	w := window{meter: meter}
	res, err := w.measure(ctx, d, func() int64 { return received.Load() })
	if err != nil {
		return TCPResult{}, err
	}
	if err := t.failure(); err != nil {
		return TCPResult{}, err
	}
	return TCPResult{Bytes: res.count, Elapsed: res.elapsed, CPU: res.cpu}, nil
}

// tcpTest owns the sockets and goroutines of one TCP bulk test.
type tcpTest struct {
	wg sync.WaitGroup
	mu struct {
		sync.Mutex
		closers []interface{ Close() error } // every socket, closed by stop
		stopped bool
		err     error // first failure before stop
	}
}

// track registers c to be closed by stop; after stop it closes c at once.
func (t *tcpTest) track(c interface{ Close() error }) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.stopped {
		c.Close()
		return
	}
	t.mu.closers = append(t.mu.closers, c)
}

// fail records err unless the test is already stopping.
func (t *tcpTest) fail(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.mu.stopped && t.mu.err == nil {
		t.mu.err = err
	}
}

// failure returns the first failure recorded before stop.
func (t *tcpTest) failure() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.mu.err
}

// stop closes every socket and waits for the goroutines.
func (t *tcpTest) stop() {
	t.mu.Lock()
	t.mu.stopped = true
	closers := t.mu.closers
	t.mu.closers = nil
	t.mu.Unlock()
	for _, c := range closers {
		c.Close()
	}
	t.wg.Wait()
}

// acceptLoop accepts n connections and counts what each one receives.
func (t *tcpTest) acceptLoop(ln *net.TCPListener, n int, received *atomic.Int64) {
	for range n {
		c, err := ln.AcceptTCP()
		if err != nil {
			t.fail(fmt.Errorf("tcp accept: %w", err))
			return
		}
		t.track(c)
		t.wg.Go(func() { t.receiveLoop(c, received) })
	}
}

// receiveLoop counts the bytes arriving on c until it closes.
func (t *tcpTest) receiveLoop(c *net.TCPConn, received *atomic.Int64) {
	buf := make([]byte, tcpReadBuffer)
	for {
		n, err := c.Read(buf)
		received.Add(int64(n))
		if err != nil {
			return // EOF or closed by stop
		}
	}
}

// sendLoop writes to c until stop closes it.
func (t *tcpTest) sendLoop(c net.Conn) {
	buf := make([]byte, tcpChunk)
	for {
		if _, err := c.Write(buf); err != nil {
			if !errors.Is(err, net.ErrClosed) {
				t.fail(fmt.Errorf("tcp send: %w", err))
			}
			return
		}
	}
}

// window times a measurement: a warm-up, then a window of length d during
// which a counter and the CPU meter are read at both ends.
type window struct {
	meter Meter
}

// windowResult is the change of the counter and of the CPU meter across the
// measured window.
type windowResult struct {
	count   int64
	elapsed time.Duration
	cpu     time.Duration
}

// measure waits out the warm-up and the window, reading counter at both ends.
func (w window) measure(ctx context.Context, d time.Duration, counter func() int64) (windowResult, error) {
	if err := sleep(ctx, warmUp(d)); err != nil {
		return windowResult{}, err
	}
	c0, err := w.cpu()
	if err != nil {
		return windowResult{}, err
	}
	n0, t0 := counter(), time.Now()
	if err := sleep(ctx, d); err != nil {
		return windowResult{}, err
	}
	n1, t1 := counter(), time.Now()
	c1, err := w.cpu()
	if err != nil {
		return windowResult{}, err
	}
	return windowResult{count: n1 - n0, elapsed: t1.Sub(t0), cpu: c1 - c0}, nil
}

// cpu reads the meter, or returns 0 without one.
func (w window) cpu() (time.Duration, error) {
	if w.meter == nil {
		return 0, nil
	}
	c, err := w.meter()
	if err != nil {
		return 0, fmt.Errorf("read CPU time: %w", err)
	}
	return c, nil
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
