package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Latency and probe tuning.
const (
	echoGrace     = time.Second           // how long late echoes are awaited
	probeInterval = 50 * time.Millisecond // between reachability probes
	echoPoll      = 10 * time.Millisecond // how often the client checks for late echoes
	echoPayload   = minUDPPayload         // bytes: token, send time
)

// LatencyResult is the outcome of a latency test.
type LatencyResult struct {
	Sent int
	RTTs []time.Duration // one per echo received, in arrival order
}

// echoServer answers every datagram with a copy of itself.
type echoServer struct {
	conn *net.UDPConn
	wg   sync.WaitGroup
}

// startEcho starts an echo server on addr port 0 in place.
func startEcho(place Place, addr netip.Addr) (*echoServer, error) {
	c, err := listenUDP(place, addr)
	if err != nil {
		return nil, err
	}
	s := &echoServer{conn: c}
	s.wg.Go(s.serve)
	return s, nil
}

// AddrPort is where the server listens.
func (s *echoServer) AddrPort() netip.AddrPort {
	return s.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// serve echoes datagrams until the socket closes.
func (s *echoServer) serve() {
	buf := make([]byte, 2048)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if isTransient(err) {
				continue
			}
			return
		}
		s.conn.WriteToUDPAddrPort(buf[:n], from)
	}
}

// Close stops the server and waits for it.
func (s *echoServer) Close() error {
	err := s.conn.Close()
	s.wg.Wait()
	return err
}

// echoClient sends stamped datagrams to an echo server and collects the
// round-trip times of the echoes.
type echoClient struct {
	conn     *net.UDPConn
	token    uint64
	base     time.Time    // send stamps count from here (monotonic)
	received atomic.Int64 // echoes of this client's datagrams
	rtts     chan []time.Duration
}

// dialEcho connects a client in place to the server at to.
func dialEcho(place Place, to netip.AddrPort) (*echoClient, error) {
	c, err := dialUDP(place, to)
	if err != nil {
		return nil, err
	}
	e := &echoClient{conn: c, token: newToken(), base: time.Now(), rtts: make(chan []time.Duration, 1)}
	go e.receiveLoop()
	return e, nil
}

// send sends one stamped datagram.
func (e *echoClient) send() error {
	var b [echoPayload]byte
	binary.LittleEndian.PutUint64(b[:8], e.token)
	binary.LittleEndian.PutUint64(b[8:], uint64(time.Since(e.base)))
	_, err := e.conn.Write(b[:])
	if err != nil && isTransient(err) {
		return nil
	}
	return err
}

// receiveLoop records the round-trip time of each echo until the socket
// closes, then hands the times to close.
func (e *echoClient) receiveLoop() {
	var rtts []time.Duration
	buf := make([]byte, 2048)
	for {
		n, err := e.conn.Read(buf)
		if err != nil {
			if isTransient(err) {
				continue
			}
			break
		}
		if n != echoPayload || binary.LittleEndian.Uint64(buf) != e.token {
			continue
		}
		sent := time.Duration(binary.LittleEndian.Uint64(buf[8:]))
		rtts = append(rtts, time.Since(e.base)-sent)
		e.received.Add(1)
	}
	e.rtts <- rtts
}

// close closes the socket and returns the round-trip times collected.
func (e *echoClient) close() []time.Duration {
	e.conn.Close()
	return <-e.rtts
}

// Latency sends pps echo requests per second from p.Client to an echo server
// in p.Server for d and returns the round-trip time of every echo.
func Latency(ctx context.Context, p Path, pps int, d time.Duration) (LatencyResult, error) {
	if pps < 1 {
		return LatencyResult{}, fmt.Errorf("latency: rate %d per second", pps)
	}
	srv, err := startEcho(p.Server, p.ServerAddr)
	if err != nil {
		return LatencyResult{}, err
	}
	defer srv.Close()
	cli, err := dialEcho(p.Client, srv.AddrPort())
	if err != nil {
		return LatencyResult{}, err
	}
	sent, err := cli.run(ctx, pps, d)
	return LatencyResult{Sent: sent, RTTs: cli.close()}, err
}

// run sends pps stamped datagrams per second for d, then waits a little for
// late echoes, and returns how many it sent.
func (e *echoClient) run(ctx context.Context, pps int, d time.Duration) (int, error) {
	tick := time.NewTicker(time.Second / time.Duration(pps))
	defer tick.Stop()
	sent := 0
	for end := time.Now().Add(d); time.Now().Before(end); {
		select {
		case <-ctx.Done():
			return sent, ctx.Err()
		case <-tick.C:
		}
		if err := e.send(); err != nil {
			return sent, fmt.Errorf("latency send: %w", err)
		}
		sent++
	}
	for end := time.Now().Add(echoGrace); e.received.Load() < int64(sent) && time.Now().Before(end); {
		if err := sleep(ctx, echoPoll); err != nil {
			return sent, err
		}
	}
	return sent, nil
}

// ErrUnreachable means a probe got no answer in time.
var ErrUnreachable = errors.New("no answer")

// Probe sends echo requests from p.Client to an echo server in p.Server
// until one comes back, for at most timeout. It proves a path works end to
// end (for a tunnel: the handshake is done) before any test runs.
func Probe(ctx context.Context, p Path, timeout time.Duration) error {
	srv, err := startEcho(p.Server, p.ServerAddr)
	if err != nil {
		return err
	}
	defer srv.Close()
	cli, err := dialEcho(p.Client, srv.AddrPort())
	if err != nil {
		return err
	}
	defer cli.close()

	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for cli.received.Load() == 0 {
		if err := cli.send(); err != nil {
			return fmt.Errorf("probe %s: %w", srv.AddrPort(), err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("probe %s after %v: %w", srv.AddrPort(), timeout, ErrUnreachable)
		case <-tick.C:
		}
	}
	return nil
}
