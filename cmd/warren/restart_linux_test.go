package main

import (
	"context"
	"testing"
	"time"
)

// TestL13Restart (L13): after warren up on one side is stopped and started
// again with the same config, its first packet to the peer, which still
// holds the old session, starts a new handshake and gets through, without
// waiting for a retry (5 s); then the peer's traffic gets through too.
func TestL13Restart(t *testing.T) {
	p := newTestPair(t)
	conf := func(i int) string { return demoConfig(p.keys[i], p.keys[1-i].PublicKey(), i, p.underlay(1-i)) }
	first := p.up(t, 0, conf(0))
	p.up(t, 1, conf(1))
	p.ping(t, 0, demoOverlay[1].v4.Addr(), 1)
	stopProc(t, first)
	p.up(t, 0, conf(0))
	rtts, err := demoPing(context.Background(), p.ns(0), demoOverlay[1].v4.Addr(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(rtts) != 1 || rtts[0] >= 4*time.Second {
		t.Fatalf("first ping after the restart: %v, want an answer before the 5 s retry", rtts)
	}
	t.Logf("first ping after the restart answered in %v", rtts[0].Round(time.Millisecond))
	p.ping(t, 1, demoOverlay[0].v6.Addr(), 3)
}
