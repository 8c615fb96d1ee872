package vmlab_test

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// netemTransferSize is the TCP transfer each way under netem: about 150 kB/s
// get through 5 % loss at 50 ms.
const netemTransferSize = 256 << 10 // bytes

// TestNetemKernelPeer: with netem on the guest's eth0 (5 % loss, 50 ms
// delay, 10 % of packets sent early, so reordered, and 2 % duplicated) on the
// path from the kernel peer to warren, the handshake completes, a
// checksummed TCP transfer completes both ways, warren's replay window takes
// the reordered packets (pings sent 10 ms apart, so an early packet overtakes
// about five others, are answered as often as loss alone allows) and drops the
// duplicates, counted as "replay". netem is missing from the host kernel,
// so only the guest's egress is impaired. It changes the shared guest's
// eth0, so it does not run in parallel with other tests.
func TestNetemKernelPeer(t *testing.T) {
	l := sharedLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l.run(t, ctx, "netem", "eth0", "loss", "5", "delay", "50", "reorder", "10", "duplicate", "2")
	t.Cleanup(func() {
		if out, err := l.g.Run(context.Background(), "netem", "eth0", "off"); err != nil {
			t.Errorf("remove netem: %v: %s", err, out)
		}
	})
	t.Run("cases", func(t *testing.T) {
		for _, c := range []kernelCase{{n: 40, initiate: "warren"}, {n: 41, initiate: "kernel", psk: true, ipv6: true}} {
			t.Run(c.String(), func(t *testing.T) {
				t.Parallel()
				l.netemCase(t, ctx, c)
			})
		}
	})
}

func (l *lab) netemCase(t *testing.T, ctx context.Context, c kernelCase) {
	start := time.Now()
	k := l.start(t, ctx, c)
	// The handshake, under loss on the kernel's responses or
	// initiations: the first ping may need a handshake retry 5 s later,
	// and the echo or its reply may itself be among the 5 % lost, which
	// no retry repairs. Up to four single pings, each waiting 12 s, leave
	// a chance of failure near 1e-4 instead of about 1 in 10.
	first := false
	for try := 1; try <= 4 && !first; try++ {
		if c.initiate == "warren" {
			first = l.ping(t, k.guestIn, 1) == 1
		} else {
			out, err := l.g.Run(ctx, "ping", k.warrenIn.String(), "1")
			first = err == nil
			if !first {
				t.Logf("first ping through the impaired path, try %d: %s: %v", try, out, err)
			}
		}
	}
	if !first {
		t.Fatalf("first ping through the impaired path not answered in four tries")
	}
	const pings = 200
	out, err := l.g.Run(ctx, "ping", k.warrenIn.String(), strconv.Itoa(pings), "10")
	if err != nil {
		t.Fatalf("ping: %v", err)
	}
	answered, _ := strconv.Atoi(strings.Split(out, "/")[0])
	// 5 % loss gives about 10 lost; a window that refused reordered
	// packets would lose about 50 more.
	if answered < pings*85/100 {
		t.Errorf("%s pings answered through 5 %% loss and 10 %% reordering, want at least 85 %%", out)
	}
	pinged := time.Now()
	l.sendToGuest(t, ctx, netip.AddrPortFrom(k.guestIn, 5001), netemTransferSize)
	l.receiveFromGuest(t, ctx, netip.AddrPortFrom(k.warrenIn6, 5002), netemTransferSize)
	t.Logf("handshake and pings %v, transfers %v", pinged.Sub(start).Round(time.Millisecond), time.Since(pinged).Round(time.Millisecond))
	s := l.show(t, k.warrenName).Interfaces[0]
	t.Logf("%s pings answered; warren drops %v", out, s.Drops)
	if s.Drops["replay"] == 0 {
		t.Errorf("warren counted no replay drops with 2 %% of the kernel's packets duplicated; drops %v", s.Drops)
	}
	// Outbound drops (no_route: the host's IPv6 multicast into the
	// tunnel; down: before the link was up) are not the path's.
	for _, reason := range []string{"short", "unknown_type", "unknown_index", "auth_failed", "expired"} {
		if n := s.Drops[reason]; n > 0 {
			t.Errorf("warren dropped %d received packets as %s; only duplicates should be dropped", n, reason)
		}
	}
}
