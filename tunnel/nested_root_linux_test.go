package tunnel

import (
	"context"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// floodPingSummary matches iputils ping's summary line.
var floodPingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// TestN5TunnelInTunnelRoot (root, N5): a second pair of engines on wt1,
// MTU 1340 (1420 less an IPv6 data message's 80 bytes of headers), whose
// peers reach each other at the first tunnel's addresses. Flood pings
// each way lose nothing (N2) and a checksummed 8 MiB TCP transfer
// completes (N3) through both tunnels, and the outer engines carried it.
func TestN5TunnelInTunnelRoot(t *testing.T) {
	lab, a, b := newTUNLab(t)
	ia := openTUNSide(t, lab.A, "wt1", 1340, "198.19.10.1/24")
	ib := openTUNSide(t, lab.B, "wt1", 1340, "198.19.10.2/24")
	connectSides(t, ia, ib, a.inner.Addr(), b.inner.Addr())
	if !innerPing(ia, ib, 5*time.Second) {
		t.Fatalf("no ping through the inner tunnel (drops inner %v, outer %v)", ia.e.DropCounts(), a.e.DropCounts())
	}
	for _, d := range []struct{ from, to *tunSide }{{ia, ib}, {ib, ia}} {
		args := []string{"-q", "-n", "-f", "-c", "10", "-w", "5", d.to.inner.Addr().String()}
		out, err := d.from.ns.Command(context.Background(), "ping", args...).CombinedOutput()
		var sent, received int
		if m := floodPingSummary.FindSubmatch(out); m != nil {
			sent, _ = strconv.Atoi(string(m[1]))
			received, _ = strconv.Atoi(string(m[2]))
		}
		if err != nil || received < 10 || received != sent {
			t.Errorf("ping %v from %s: %v, want at least 10 requests, all answered\n%s", args, d.from.ns.Name(), err, out)
		}
	}
	outerTx := a.e.Stats()[0].TxBytes
	const size = 8 << 20
	took := (&pmtuLab{a: ia, b: ib}).transfer(t, size)
	if got := a.e.Stats()[0].TxBytes - outerTx; got < size {
		t.Errorf("the outer tunnel sent %d bytes during an %d-byte transfer through the inner one", got, size)
	}
	t.Logf("%d MiB through both tunnels in %v (drops inner %v, outer %v)", size>>20, took, ia.e.DropCounts(), a.e.DropCounts())
}
