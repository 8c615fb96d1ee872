package bench

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/warrenvpn/warren/internal/leakcheck"
)

// loopback is a Path over the loopback interface of the test's own namespace.
var loopback = Path{Client: Here{}, Server: Here{}, ServerAddr: netip.MustParseAddr("127.0.0.1")}

func TestTCPBulk(t *testing.T) {
	leakcheck.Check(t)
	for _, streams := range []int{1, 3} {
		calls := 0
		meter := func() (time.Duration, error) {
			calls++
			return time.Duration(calls) * time.Second, nil
		}
		res, err := TCPBulk(context.Background(), loopback, streams, 200*time.Millisecond, meter)
		if err != nil {
			t.Fatalf("TCPBulk(%d streams): %v", streams, err)
		}
		if res.Bytes <= 0 || res.Gbps() <= 0 {
			t.Errorf("TCPBulk(%d streams) = %+v, want bytes moved", streams, res)
		}
		if res.Elapsed < 200*time.Millisecond {
			t.Errorf("TCPBulk(%d streams).Elapsed = %v, want >= 200ms", streams, res.Elapsed)
		}
		if calls != 2 || res.CPU != time.Second {
			t.Errorf("TCPBulk(%d streams): meter read %d times, CPU %v; want 2 reads, 1s", streams, calls, res.CPU)
		}
	}
}

func TestUDPRate(t *testing.T) {
	leakcheck.Check(t)
	for _, size := range UDPPayloads {
		res, err := UDPRate(context.Background(), loopback, size, 100*time.Millisecond)
		if err != nil {
			t.Fatalf("UDPRate(%d): %v", size, err)
		}
		if res.Received == 0 || res.Sent < res.Received || res.PPS() <= 0 {
			t.Errorf("UDPRate(%d) = %+v, want datagrams delivered", size, res)
		}
		if l := res.Loss(); l < 0 || l > 1 {
			t.Errorf("UDPRate(%d).Loss() = %v, want within [0, 1]", size, l)
		}
	}
}

func TestLatency(t *testing.T) {
	leakcheck.Check(t)
	res, err := Latency(context.Background(), loopback, 200, 100*time.Millisecond)
	if err != nil {
		t.Fatalf("Latency: %v", err)
	}
	if res.Sent == 0 || len(res.RTTs) == 0 || len(res.RTTs) > res.Sent {
		t.Fatalf("Latency = sent %d, %d echoes; want some echoes, at most one per request", res.Sent, len(res.RTTs))
	}
	for _, rtt := range res.RTTs {
		if rtt <= 0 || rtt > echoGrace {
			t.Errorf("RTT %v out of range", rtt)
		}
	}
}

func TestProbe(t *testing.T) {
	leakcheck.Check(t)
	if err := Probe(context.Background(), loopback, time.Second); err != nil {
		t.Errorf("Probe(loopback) = %v, want nil", err)
	}
}

func TestGeneratorsCancel(t *testing.T) {
	leakcheck.Check(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := TCPBulk(ctx, loopback, 1, time.Minute, nil); err == nil {
		t.Errorf("TCPBulk(canceled) = nil error")
	}
	if _, err := UDPRate(ctx, loopback, 64, time.Minute); err == nil {
		t.Errorf("UDPRate(canceled) = nil error")
	}
	if _, err := Latency(ctx, loopback, 100, time.Minute); err == nil {
		t.Errorf("Latency(canceled) = nil error")
	}
}

func TestResultRates(t *testing.T) {
	tcp := TCPResult{Bytes: 125_000_000, Elapsed: time.Second}
	if got := tcp.Gbps(); got != 1 {
		t.Errorf("Gbps() = %v, want 1", got)
	}
	udp := UDPResult{Sent: 1000, Received: 750, Elapsed: 500 * time.Millisecond}
	if got := udp.PPS(); got != 1500 {
		t.Errorf("PPS() = %v, want 1500", got)
	}
	if got := udp.Loss(); got != 0.25 {
		t.Errorf("Loss() = %v, want 0.25", got)
	}
	if got := (UDPResult{}).Loss(); got != 0 {
		t.Errorf("Loss() of nothing = %v, want 0", got)
	}
}
