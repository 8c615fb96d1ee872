//go:build linux

package transport

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestListenGroup checks the SO_REUSEPORT group of the pipelines: every
// socket has the first one's port (a random one here), datagrams from many
// source ports spread over more than one socket while each source stays on
// one, a port in use fails as with Listen, and neither Listen nor another
// group can take the group's port.
func TestListenGroup(t *testing.T) {
	const n = 4
	group, err := ListenGroup(Options{}, n)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, u := range group {
			u.Close()
		}
	}()
	port := group[0].Port()
	for i, u := range group {
		if u.Port() != port {
			t.Fatalf("socket %d on port %d, want %d", i, u.Port(), port)
		}
	}
	if u, err := Listen(Options{Port: port}); !errors.Is(err, unix.EADDRINUSE) {
		if u != nil {
			u.Close()
		}
		t.Errorf("Listen on the group's port: %v, want EADDRINUSE", err)
	}
	if g, err := ListenGroup(Options{Port: port}, 2); !errors.Is(err, unix.EADDRINUSE) {
		for _, u := range g {
			u.Close()
		}
		t.Errorf("a second group on the port: %v, want EADDRINUSE", err)
	}

	// 32 senders, 3 datagrams each; record which socket got which sender.
	const senders, each = 32, 3
	var (
		mu    sync.Mutex
		where = make(map[netip.AddrPort]map[int]int)
		wg    sync.WaitGroup
	)
	for i, u := range group {
		wg.Go(func() {
			u.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			bufs, sizes, eps, locals := receiveBufs(8)
			for {
				k, err := u.Receive(bufs, sizes, eps, locals)
				if err != nil {
					return // the deadline: all arrived long before
				}
				mu.Lock()
				for j := range k {
					if where[eps[j]] == nil {
						where[eps[j]] = make(map[int]int)
					}
					where[eps[j]][i]++
				}
				mu.Unlock()
			}
		})
	}
	dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)}
	for range senders {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		for range each {
			if _, err := c.WriteToUDP([]byte("ping"), dst); err != nil {
				t.Fatal(err)
			}
		}
		c.Close()
	}
	// Wait until every datagram arrived (or the receivers' deadline
	// passed), then wake the receivers.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		got := 0
		for _, socks := range where {
			for _, c := range socks {
				got += c
			}
		}
		mu.Unlock()
		if got == senders*each {
			break
		}
	}
	for _, u := range group {
		u.conn.SetReadDeadline(time.Now())
	}
	wg.Wait()
	used := map[int]bool{}
	total := 0
	for src, socks := range where {
		if len(socks) != 1 {
			t.Errorf("sender %v reached sockets %v, want one", src, socks)
		}
		for s, c := range socks {
			used[s] = true
			total += c
		}
	}
	if total != senders*each {
		t.Errorf("received %d datagrams, want %d", total, senders*each)
	}
	if len(used) < 2 {
		t.Errorf("%d senders all reached one socket of %d", senders, n)
	}
}
