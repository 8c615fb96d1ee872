package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestThreads: two warren up with Threads = 2 and 3 (queues of a
// multi-queue TUN and SO_REUSEPORT sockets) ping each other over IPv4 and
// IPv6 and carry 16 MiB of TCP each way with matching SHA-256; warren show
// says "threads: N"; every socket listens on the port, and a new listen
// port set with wg moves all of them, traffic going on; deleting the link
// stops warren up cleanly, with one log line.
func TestThreads(t *testing.T) {
	p := newTestPair(t)
	threads := []int{2, 3}
	for i := range 2 {
		conf := demoConfig(p.keys[i], p.keys[1-i].PublicKey(), i, p.underlay(1-i))
		conf = strings.Replace(conf, "[Interface]\n", fmt.Sprintf("[Interface]\nThreads = %d\n", threads[i]), 1)
		p.up(t, i, conf)
	}
	p.ping(t, 0, demoOverlay[1].v4.Addr(), 3)
	p.ping(t, 1, demoOverlay[0].v6.Addr(), 3)
	for _, d := range []struct{ from, to int }{{0, 1}, {1, 0}} {
		if _, _, err := demoTransfer(context.Background(), p.ns(d.from), p.ns(d.to), demoOverlay[d.to].v4.Addr(), 16<<20); err != nil {
			t.Fatalf("TCP from side %d: %v", d.from, err)
		}
	}
	for i := range 2 {
		if out := p.show(t, i); !strings.Contains(out, fmt.Sprintf("threads: %d", threads[i])) {
			t.Errorf("warren show on side %d has no threads: %d:\n%s", i, threads[i], out)
		}
		if n := udpSockets(t, p, i, demoPort); n != threads[i] {
			t.Errorf("side %d has %d UDP sockets on port %d, want %d", i, n, demoPort, threads[i])
		}
	}

	wg := requireTool(t, "wg")
	const newPort = demoPort + 7
	if out, err := p.ns(1).Command(context.Background(), wg, "set", p.names[1], "listen-port", fmt.Sprint(newPort)).CombinedOutput(); err != nil {
		t.Fatalf("wg set listen-port: %v\n%s", err, out)
	}
	if n := udpSockets(t, p, 1, demoPort); n != 0 {
		t.Errorf("%d sockets left on the old port", n)
	}
	if n := udpSockets(t, p, 1, newPort); n != threads[1] {
		t.Errorf("%d sockets on the new port, want %d", n, threads[1])
	}
	p.ping(t, 1, demoOverlay[0].v4.Addr(), 3) // side 0 learns the new port from side 1
	p.ping(t, 0, demoOverlay[1].v4.Addr(), 3)

	// Deleting the link ends every queue: warren up logs it once and
	// exits 0 within 1 s, as with one queue (L4).
	pr := p.procs[1]
	p.run(t, 1, "ip", "link", "del", p.names[1])
	select {
	case err := <-pr.done:
		pr.done <- err
		if err != nil {
			t.Errorf("warren up exited with %v after its link was deleted, want 0", err)
		}
	case <-time.After(time.Second):
		t.Fatalf("warren up still running 1 s after its link was deleted\n%s", pr.log)
	}
	if n := strings.Count(pr.log.String(), "interface removed"); n != 1 {
		t.Errorf("warren up logged the removal %d times, want once:\n%s", n, pr.log)
	}
}

// udpSockets counts the UDP sockets bound to port in side i's namespace
// (/proc/thread-self/net/udp6; warren's sockets are dual-stack).
func udpSockets(t *testing.T, p *testPair, i int, port int) int {
	t.Helper()
	n := 0
	err := p.ns(i).Do(func() error {
		for _, f := range []string{"/proc/thread-self/net/udp6", "/proc/thread-self/net/udp"} {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			for _, l := range strings.Split(string(b), "\n")[1:] {
				fs := strings.Fields(l)
				if len(fs) > 1 && strings.HasSuffix(fs[1], fmt.Sprintf(":%04X", port)) {
					n++
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
