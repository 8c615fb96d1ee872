package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// minUDPPayload is the smallest payload the generators send: a 64-bit token
// that tells this test's datagrams from stray ones, then a 64-bit field.
const minUDPPayload = 16 // bytes

// UDPResult is the outcome of a UDP packet-rate test.
type UDPResult struct {
	Sent     uint64        // datagrams the client's socket accepted
	Received uint64        // datagrams of this test that reached the server
	Elapsed  time.Duration // how long the client sent
}

// PPS is the delivered rate in datagrams per second.
func (r UDPResult) PPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Received) / r.Elapsed.Seconds()
}

// Loss is the fraction of sent datagrams that did not arrive, from 0 to 1.
func (r UDPResult) Loss() float64 {
	if r.Sent == 0 || r.Received >= r.Sent {
		return 0
	}
	return 1 - float64(r.Received)/float64(r.Sent)
}

// batchConn is the batched I/O of ipv4.PacketConn and ipv6.PacketConn
// (recvmmsg and sendmmsg on Linux, one datagram per call elsewhere).
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// newBatchConn wraps c for batched I/O in the family of addr.
func newBatchConn(c *net.UDPConn, addr netip.Addr) batchConn {
	if addr.Is4() {
		return ipv4.NewPacketConn(c)
	}
	return ipv6.NewPacketConn(c)
}

// newMessages returns n messages, each with its own buffer of size bytes.
func newMessages(n, size int) []ipv4.Message {
	ms := make([]ipv4.Message, n)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, size)}
	}
	return ms
}

// listenUDP opens a UDP socket on addr port 0 in place.
func listenUDP(place Place, addr netip.Addr) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := place.Do(func() error {
		var err error
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("udp listen on %s: %w", addr, err)
	}
	return c, nil
}

// dialUDP opens a UDP socket in place connected to to.
func dialUDP(place Place, to netip.AddrPort) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := place.Do(func() error {
		var err error
		c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("udp dial %s: %w", to, err)
	}
	return c, nil
}

// newToken returns a random token that marks one test's datagrams.
func newToken() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}

// UDPRate sends datagrams with payload bytes each from p.Client to p.Server
// as fast as the client's socket takes them, for d, and counts what arrives.
// The server keeps counting until nothing has arrived for a moment.
func UDPRate(ctx context.Context, p Path, payload int, d time.Duration) (UDPResult, error) {
	if payload < minUDPPayload {
		return UDPResult{}, fmt.Errorf("udp payload %d below %d bytes", payload, minUDPPayload)
	}
	srv, err := listenUDP(p.Server, p.ServerAddr)
	if err != nil {
		return UDPResult{}, err
	}
	defer srv.Close()
	srv.SetReadBuffer(udpSocketBuf)
	to := srv.LocalAddr().(*net.UDPAddr).AddrPort()
	cli, err := dialUDP(p.Client, to)
	if err != nil {
		return UDPResult{}, err
	}
	defer cli.Close()
	cli.SetWriteBuffer(udpSocketBuf)

	token := newToken()
	var received atomic.Uint64
	var wg sync.WaitGroup
	defer wg.Wait()
	defer srv.Close() // before wg.Wait: ends countLoop
	wg.Go(func() { countLoop(newBatchConn(srv, p.ServerAddr), payload, token, &received) })

	sent, elapsed, err := blast(ctx, newBatchConn(cli, p.ServerAddr), payload, token, d)
	if err != nil {
		return UDPResult{}, err
	}
	if err := drain(ctx, received.Load); err != nil {
		return UDPResult{}, err
	}
	return UDPResult{Sent: sent, Received: received.Load(), Elapsed: elapsed}, nil
}

// blast sends batches of identical datagrams on c until d has passed, and
// returns how many the socket accepted.
func blast(ctx context.Context, c batchConn, payload int, token uint64, d time.Duration) (uint64, time.Duration, error) {
	ms := newMessages(udpBatch, payload)
	for i := range ms {
		binary.LittleEndian.PutUint64(ms[i].Buffers[0], token)
	}
	var sent uint64
	start := time.Now()
	deadline := start.Add(d)
	for i := 0; ; i++ {
		// Reading the clock every few batches keeps it off the profile.
		if i%8 == 0 {
			if time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
		}
		n, err := c.WriteBatch(ms, 0)
		sent += uint64(max(n, 0)) // x/net returns -1 with an error
		if err != nil && !isTransient(err) {
			return sent, time.Since(start), fmt.Errorf("udp send: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return sent, time.Since(start), err
	}
	return sent, time.Since(start), nil
}

// countLoop counts datagrams of the given size and token on c until c closes.
func countLoop(c batchConn, payload int, token uint64, received *atomic.Uint64) {
	ms := newMessages(udpBatch, payload+1) // one spare byte shows oversized datagrams
	for {
		n, err := c.ReadBatch(ms, 0)
		n = max(n, 0) // x/net returns -1 with an error
		var got uint64
		for _, m := range ms[:n] {
			if m.N == payload && binary.LittleEndian.Uint64(m.Buffers[0]) == token {
				got++
			}
		}
		received.Add(got)
		if err != nil && !isTransient(err) {
			return
		}
	}
}

// drain waits until counter has not moved for drainIdle, at most drainMax.
func drain(ctx context.Context, counter func() uint64) error {
	last := counter()
	for end := time.Now().Add(drainMax); time.Now().Before(end); {
		if err := sleep(ctx, drainIdle); err != nil {
			return err
		}
		n := counter()
		if n == last {
			return nil
		}
		last = n
	}
	return nil
}

// isTransient reports whether a socket error is worth retrying: a full
// device queue (ENOBUFS) or an ICMP error reported on a later call.
func isTransient(err error) bool {
	return errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EINTR)
}
