package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestL2OffloadRoot: two sites in Mode = tap move the same 16 MiB over TCP
// between hosts behind their bridges, checked with SHA-256, with the TAP's
// offloads on (GSO frames split on read, runs coalesced on write) and with
// Offload = off; no frame is dropped as malformed or oversize, and a kernel
// that refuses offloads is logged at most once.
func TestL2OffloadRoot(t *testing.T) {
	for _, c := range []struct{ name, extra string }{{"on", ""}, {"off", "Offload = off"}} {
		t.Run(c.name, func(t *testing.T) {
			l := newL2Lab(t)
			l.up(t, 0, l.tapConfig(0, c.extra))
			l.up(t, 1, l.tapConfig(1, c.extra))
			for s := range 2 {
				l.attachHosts(t, s)
			}
			pingUntil(t, l.hosts[0][0], l2HostIP(1, 0).Addr())
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			gbps, _, err := demoTransfer(ctx, l.hosts[0][0], l.hosts[1][0], l2HostIP(1, 0).Addr(), 16<<20)
			if err != nil {
				t.Fatalf("16 MiB from site A to site B, offloads %s: %v", c.name, err)
			}
			t.Logf("offloads %s: 16 MiB over TCP between sites at %.2f Gbit/s", c.name, gbps)
			drops := l.showDrops(t, 1)
			l.stopAll(t)
			if n := drops["adapter_malformed"] + drops["frame_size"]; n > 0 {
				t.Errorf("offloads %s: site B dropped %d frames as malformed or oversize: %v", c.name, n, drops)
			}
			for i := range 2 {
				if log := l.procs[i].log.String(); strings.Count(log, "TAP offloads reduced") > 1 {
					t.Errorf("site %d logs refused offloads more than once:\n%s", i, log)
				}
			}
		})
	}
}
